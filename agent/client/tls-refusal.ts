/**
 * Telling "the agent refused my client certificate" apart from a broken connection.
 *
 * Under Bun (and Node) a TLS server verifies the client certificate after the handshake, in
 * JavaScript, and then drops the connection: no TLS alert is sent, except "certificate
 * required" when none was presented (and BoringSSL's own in-handshake refusals, e.g. a key
 * usage that forbids signing). With TLS 1.3 the client has finished its side of the handshake
 * by then, so what it sees is a connection that closes after the handshake and before the
 * server's first HTTP/2 frame (SETTINGS, which an agent sends at once). Nothing else closes
 * an agent's connection at that point (connection caps and drain refuse before the
 * handshake), so that pattern is classified as a certificate refusal, and the client checks
 * its own certificate to say why: expired, not yet valid, no clientAuth usage, not issued by
 * the CA it was given (the fleet CA). The agent's log and skein_tls_handshake_failures_total
 * carry the authoritative reason (docs/threat-model.md, "Refused client certificates").
 */
import { X509Certificate } from 'node:crypto';
import { SkeinError } from '../../common/errors/index.ts';
import { parseOpenSslDate } from '../pki/describe.ts';
import { TLS_FAILURE_TEXT, type TlsFailureReason } from '../pki/tls-refusal.ts';

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EKU = '2.5.29.37.0';
const MAX_CHAIN = 8;

/** TLS alerts that refuse a client certificate, as BoringSSL/OpenSSL name them in err.code. */
const ALERTS: Array<[RegExp, TlsFailureReason | undefined]> = [
  [/ALERT_CERTIFICATE_REQUIRED/, 'no-certificate'],
  [/ALERT_UNKNOWN_CA/, 'unknown-ca'],
  [/ALERT_CERTIFICATE_EXPIRED/, 'expired'],
  [/ALERT_BAD_CERTIFICATE|ALERT_CERTIFICATE_UNKNOWN|ALERT_CERTIFICATE_REVOKED/, 'bad-certificate'],
  [/ALERT_UNSUPPORTED_CERTIFICATE/, 'bad-key-usage'],
  // Sent by BoringSSL for a certificate whose key usage forbids the signature it made, among
  // other things: the client's own diagnosis says which.
  [/ALERT_ILLEGAL_PARAMETER|ALERT_DECRYPT_ERROR/, undefined],
];

export interface ClientCredentials {
  cert?: string | Buffer;
  ca?: string | Buffer;
}

/** What is wrong with the client's own certificate, if anything it can see. */
export function diagnoseClientCertificate(creds: ClientCredentials, now = new Date()): { reason: TlsFailureReason; detail: string } | undefined {
  if (creds.cert === undefined || String(creds.cert).trim() === '') return { reason: 'no-certificate', detail: TLS_FAILURE_TEXT['no-certificate'] };
  const chain = certificates(creds.cert);
  const leaf = chain[0];
  if (!leaf) return { reason: 'bad-certificate', detail: 'the client certificate file holds no readable certificate' };
  const notBefore = parseOpenSslDate(leaf.validFrom);
  const notAfter = parseOpenSslDate(leaf.validTo);
  if (now < notBefore) return { reason: 'not-yet-valid', detail: `${TLS_FAILURE_TEXT['not-yet-valid']} (notBefore ${notBefore.toISOString()})` };
  if (now > notAfter) return { reason: 'expired', detail: `${TLS_FAILURE_TEXT.expired} (notAfter ${notAfter.toISOString()})` };
  const eku = leaf.keyUsage;
  if (Array.isArray(eku) && eku.length > 0 && !eku.includes(CLIENT_AUTH) && !eku.includes(ANY_EKU)) {
    return { reason: 'bad-key-usage', detail: "the certificate's extended key usage lacks clientAuth (TLS client authentication)" };
  }
  if (creds.ca !== undefined && !chainsTo(leaf, chain.slice(1), certificates(creds.ca))) return { reason: 'unknown-ca', detail: TLS_FAILURE_TEXT['unknown-ca'] };
  return undefined;
}

/** SKEIN_ERR_TLS for an alert that refuses the client certificate; undefined for any other error. */
export function alertRefusal(err: unknown, creds: ClientCredentials): SkeinError | undefined {
  const code = String((err as { code?: unknown })?.code ?? '');
  const hit = ALERTS.find(([pattern]) => pattern.test(code));
  if (!hit) return undefined;
  const diagnosis = diagnoseClientCertificate(creds);
  const reason = hit[1] ?? diagnosis?.reason ?? 'other';
  const detail = diagnosis?.reason === reason ? diagnosis.detail : TLS_FAILURE_TEXT[reason];
  return refusal(reason, `${detail} (TLS alert ${code.replace(/^ERR_SSL_(TLSV1\d?|SSLV3)_ALERT_/, '').toLowerCase()})`, err);
}

/** SKEIN_ERR_TLS for a connection the agent closed after the handshake, before its first frame. */
export function silentRefusal(creds: ClientCredentials, cause?: unknown): SkeinError {
  const diagnosis = diagnoseClientCertificate(creds);
  if (diagnosis) return refusal(diagnosis.reason, diagnosis.detail, cause);
  return refusal(
    'other',
    'the agent closed the connection right after the TLS handshake, without a reason (an unknown CA or a revoked certificate?): its "TLS handshake refused" log line says why',
    cause,
  );
}

/** SKEIN_ERR_TLS for a client certificate the local TLS library will not use at all. */
export function unusableCertificate(err: unknown): SkeinError {
  const code = String((err as { code?: unknown })?.code ?? '');
  const reason: TlsFailureReason = /KEY_USAGE/.test(code) ? 'bad-key-usage' : 'bad-certificate';
  return new SkeinError(
    'SKEIN_ERR_TLS',
    `the client certificate cannot be used: ${reason === 'bad-key-usage' ? TLS_FAILURE_TEXT['bad-key-usage'] : ((err as Error)?.message ?? code)}`,
    { reason, cause: code, sent: false },
    { cause: err },
  );
}

function refusal(reason: TlsFailureReason, detail: string, cause: unknown): SkeinError {
  return new SkeinError('SKEIN_ERR_TLS', `the agent refused the client certificate: ${detail}`, { reason, sent: false }, { cause });
}

function certificates(pem: string | Buffer): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const block of String(pem).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []) {
    try {
      out.push(new X509Certificate(block));
    } catch {
      // unreadable: the TLS library reports it on its own
    }
  }
  return out;
}

/** Whether `leaf`, through the intermediates sent with it, is signed by one of `roots`. */
function chainsTo(leaf: X509Certificate, intermediates: X509Certificate[], roots: X509Certificate[]): boolean {
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    if (roots.some((root) => current.checkIssued(root) && current.verify(root.publicKey))) return true;
    const next = intermediates.find((i) => current.checkIssued(i) && current.verify(i.publicKey));
    if (!next) return false;
    current = next;
  }
  return false;
}
