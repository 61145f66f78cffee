/**
 * Certificate parsing on node:crypto's X509Certificate: native, no dependency, and the
 * same API under Node and Bun. Kept apart from x509.ts so readers of certificates never
 * load the generator library.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { SkeinError } from '../errors/index.ts';

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

/** The SPIFFE ID (first `URI:spiffe://…` entry) of node's subjectAltName text. */
export function spiffeIdFromSan(san: string | undefined): string | undefined {
  return san ? entries(san, ':', ', ').find(([type, value]) => type === 'URI' && value.startsWith('spiffe://'))?.[1] : undefined;
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
  const spiffeId = subjectAltNames(cert).find(([type, value]) => type === 'URI' && value.startsWith('spiffe://'))?.[1];
  // Node ≤ 20 escapes RFC 4514 specials in `subject` ("CN=a\, b"); undo that.
  const cn = entries(cert.subject, '=', '\n').find(([type]) => type === 'CN')?.[1]?.replace(/\\(.)/g, '$1');
  const summary: CertificateSummary = {
    notAfter: parseOpenSslDate(cert.validTo),
    sha256: createHash('sha256').update(cert.raw).digest('hex'),
  };
  if (spiffeId !== undefined) summary.spiffeId = spiffeId;
  if (cn !== undefined) summary.subjectCN = cn;
  return summary;
}
