/**
 * Certificate parsing on node:crypto's X509Certificate: native, no dependency, and the
 * same API under Node and Bun. Kept apart from x509.ts so readers of certificates never
 * load the generator library.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { SkeinError } from '../../common/errors/index.ts';
import { parseSpiffeId, type SpiffeProblem } from '../../common/spiffe/index.ts';

export interface CertificateSummary {
  spiffeId?: string;
  subjectCN?: string;
  notAfter: Date;
  /** Lower-case hex SHA-256 of the DER encoding. */
  sha256: string;
}

export function parseCertificate(pem: string | Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_PKI', `not a PEM certificate: ${(err as Error).message}`, {}, { cause: err });
  }
}

/**
 * Splits node's `subjectAltName` / `subject` text into [key, value] entries. Node separates
 * SAN entries with ", " (subject lines with "\n") and JSON-quotes a value that contains a
 * separator or a quote, e.g. `DNS:a, URI:"spiffe://x/a, b"`.
 */
function entries(text: string, keyEnd: string, separator: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(keyEnd, i);
    if (colon < 0) break;
    const key = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      // Find the closing quote, skipping backslash escapes, then let JSON undo them.
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const quoted = text.slice(colon + 1, j + 1);
      try {
        value = JSON.parse(quoted) as string;
      } catch {
        value = quoted.slice(1, -1);
      }
      next = text.indexOf(separator, j + 1);
    } else {
      next = text.indexOf(separator, colon + 1);
      value = text.slice(colon + 1, next < 0 ? undefined : next);
    }
    out.push([key, value]);
    if (next < 0) break;
    i = next + separator.length;
  }
  return out;
}

/**
 * What a certificate's URI SANs say about its identity (X509-SVID §2: exactly one URI SAN,
 * a valid SPIFFE ID with a path). No URI SAN is not an error here: such a certificate has no
 * SPIFFE ID, and callers decide what that means (the agent falls back to the subject CN; a
 * pin never matches it). A certificate with several URI SANs identifies no one: taking the
 * first would let a CA-signed certificate for "a" and "b" speak as either.
 *
 * @example
 *   sanIdentity('URI:spiffe://skein.local/client/ops') // { spiffeId: 'spiffe://skein.local/client/ops', trustDomain: 'skein.local', uris: [...] }
 *   sanIdentity('URI:spiffe://td/a, URI:spiffe://td/b') // { error: 'multiple', message: 'has 2 URI SANs …', uris: [...] }
 */
export type SanIdentity =
  | { spiffeId: string; trustDomain: string; uris: string[]; error?: undefined }
  | { spiffeId: undefined; trustDomain?: undefined; uris: string[]; error?: undefined }
  | { spiffeId?: undefined; trustDomain?: undefined; uris: string[]; error: 'multiple' | 'invalid'; problem?: SpiffeProblem; message: string };

export function sanIdentity(san: string | undefined): SanIdentity {
  const uris = san
    ? entries(san, ':', ', ')
        .filter(([type]) => type === 'URI')
        .map(([, value]) => value)
    : [];
  if (uris.length === 0) return { spiffeId: undefined, uris };
  if (uris.length > 1)
    return { error: 'multiple', uris, message: `the client certificate has ${uris.length} URI SANs (${uris.map((u) => JSON.stringify(u)).join(', ')}); an X.509-SVID has exactly one` };
  const parsed = parseSpiffeId(uris[0]);
  if (!parsed.ok) return { error: 'invalid', uris, problem: parsed.problem, message: `the URI SAN ${JSON.stringify(uris[0])} is not a valid SPIFFE ID: ${parsed.message}` };
  return { spiffeId: parsed.id, trustDomain: parsed.trustDomain, uris };
}

/** The SPIFFE ID of node's subjectAltName text; undefined when it has none or not exactly one valid one. */
export function spiffeIdFromSan(san: string | undefined): string | undefined {
  return sanIdentity(san).spiffeId;
}

/** SAN entries as [type, value], types as node prints them ('URI', 'DNS', 'IP Address'). */
export function subjectAltNames(cert: X509Certificate): Array<[string, string]> {
  return cert.subjectAltName ? entries(cert.subjectAltName, ':', ', ') : [];
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Parses OpenSSL's "Nov 26 13:58:56 2026 GMT" without trusting the engine's Date.parse. */
export function parseOpenSslDate(text: string): Date {
  const m = /^([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4}) GMT$/.exec(text.trim());
  const month = m ? MONTHS.indexOf(m[1]!) : -1;
  if (!m || month < 0) {
    const d = new Date(text);
    if (Number.isNaN(d.getTime())) throw new SkeinError('SKEIN_ERR_PKI', `unreadable certificate date ${JSON.stringify(text)}`);
    return d;
  }
  return new Date(Date.UTC(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])));
}

export function describeCertificate(pem: string): CertificateSummary {
  return summarize(parseCertificate(pem));
}

/** The summary of a certificate already parsed (the TLS loader checks it first). */
export function summarize(cert: X509Certificate): CertificateSummary {
  const spiffeId = spiffeIdFromSan(cert.subjectAltName);
  // Node ≤ 20 escapes RFC 4514 specials in `subject` ("CN=a\, b"); undo that.
  const cn = entries(cert.subject, '=', '\n')
    .find(([type]) => type === 'CN')?.[1]
    ?.replace(/\\(.)/g, '$1');
  const summary: CertificateSummary = {
    notAfter: parseOpenSslDate(cert.validTo),
    sha256: createHash('sha256').update(cert.raw).digest('hex'),
  };
  if (spiffeId !== undefined) summary.spiffeId = spiffeId;
  if (cn !== undefined) summary.subjectCN = cn;
  return summary;
}

/**
 * The trust domains the CA certificates of a PEM bundle name: each one's URI SANs that are a
 * bare trust domain ID (spiffe://example.org, X509-SVID §4), in bundle order, without
 * repeats. A CA without such a SAN (older skein CAs, most corporate CAs) names none.
 */
export function caTrustDomains(bundle: string | Buffer): string[] {
  const out = new Set<string>();
  for (const pem of String(bundle).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      continue; // the TLS loader reports unreadable bundles; a CA it cannot read names nothing
    }
    if (!cert.ca) continue;
    for (const [type, value] of subjectAltNames(cert)) {
      const parsed = type === 'URI' ? parseSpiffeId(value, 'trust-domain') : undefined;
      if (parsed?.ok) out.add(parsed.trustDomain);
    }
  }
  return [...out];
}
