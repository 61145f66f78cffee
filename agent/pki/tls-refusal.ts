/**
 * TLS failures, classified once. Why a TLS handshake with a client failed, as one small
 * fixed vocabulary shared by the agent (its log line and the
 * skein_tls_handshake_failures_total{reason} metric) and the client library (the reason of
 * SKEIN_ERR_TLS); fixed, so the metric's label set is bounded whatever a scanner sends. And
 * whether an outbound connection failed in TLS or in the network (`isTlsFailure`), for the
 * client library (SKEIN_ERR_TLS / SKEIN_ERR_TRANSPORT) and the outbound HTTPS client
 * (agent/http: SKEIN_ERR_HTTP_TLS / SKEIN_ERR_HTTP_NETWORK, which routine code from URLs
 * reports as SKEIN_ERR_SOURCE_TLS / SKEIN_ERR_SOURCE_NETWORK).
 */

export const TLS_FAILURE_REASONS = ['no-certificate', 'unknown-ca', 'expired', 'not-yet-valid', 'bad-key-usage', 'bad-certificate', 'protocol', 'handshake-timeout', 'closed', 'other'] as const;
export type TlsFailureReason = (typeof TLS_FAILURE_REASONS)[number];

/** Sentence fragments for messages: "the agent refused the client certificate: <text>". */
export const TLS_FAILURE_TEXT: Record<TlsFailureReason, string> = {
  'no-certificate': 'none was presented',
  'unknown-ca': 'unknown CA (not issued by a CA the agent trusts)',
  expired: 'certificate expired',
  'not-yet-valid': 'certificate not yet valid',
  'bad-key-usage': 'key usage or extended key usage does not allow TLS client authentication',
  'bad-certificate': 'malformed certificate or bad signature',
  protocol: 'no common TLS version, cipher suite or ALPN protocol (h2)',
  'handshake-timeout': 'the handshake did not finish within http2.handshakeTimeoutMs',
  closed: 'the client closed the connection during the handshake',
  other: 'the handshake failed',
};

// OpenSSL/BoringSSL verify codes as node and Bun name them (err.code).
const BY_CODE: Record<string, TlsFailureReason> = {
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'no-certificate',
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'no-certificate',
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not-yet-valid',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown-ca',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown-ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown-ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown-ca',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown-ca',
  CERT_UNTRUSTED: 'unknown-ca',
  CERT_REJECTED: 'unknown-ca',
  INVALID_PURPOSE: 'bad-key-usage',
  ERR_SSL_KEY_USAGE_BIT_INCORRECT: 'bad-key-usage',
  CERT_SIGNATURE_FAILURE: 'bad-certificate',
  UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: 'bad-certificate',
  ERROR_IN_CERT_NOT_BEFORE_FIELD: 'bad-certificate',
  ERROR_IN_CERT_NOT_AFTER_FIELD: 'bad-certificate',
  INVALID_CA: 'bad-certificate',
  PATH_LENGTH_EXCEEDED: 'bad-certificate',
  CERT_CHAIN_TOO_LONG: 'bad-certificate',
  ERR_TLS_HANDSHAKE_TIMEOUT: 'handshake-timeout',
  ECONNRESET: 'closed',
  EPIPE: 'closed',
};

/** The reason for a server-side handshake error (tlsClientError), by its code. */
export function tlsFailureReason(err: { code?: unknown; message?: unknown } | undefined): TlsFailureReason {
  const code = typeof err?.code === 'string' ? err.code : '';
  const known = BY_CODE[code];
  if (known) return known;
  // Version, cipher, ALPN and record-layer failures all arrive as ERR_SSL_* codes.
  if (code.startsWith('ERR_SSL_') || /version|cipher|alpn|protocol/i.test(String(err?.message ?? ''))) return 'protocol';
  return 'other';
}

/** Codes OpenSSL/BoringSSL and the TLS layer of Node and Bun give a failed TLS connection. */
const TLS_ERROR_CODE = /^(ERR_TLS_|ERR_SSL_|ERR_OSSL_|CERT_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH_EXCEEDED)/;
const TLS_ERROR_TEXT = /\b(ssl|tls)\b|certificate|handshake/i;

/**
 * Whether an outbound connection failed in TLS (certificate, CA, name, version, alert)
 * rather than in the network. Decided by the error's code or its cause's; an error without
 * one, or a bare EPROTO, is TLS when its text says so. A reset or refusal (ECONNRESET,
 * ECONNREFUSED…) is the network, whatever its message mentions.
 *
 * @example
 *   isTlsFailure({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })  // true
 *   isTlsFailure({ code: 'ECONNREFUSED' })                     // false
 */
export function isTlsFailure(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } } | undefined;
  const codes = [e?.code, e?.cause?.code].filter((c): c is string => typeof c === 'string' && c !== '');
  if (codes.some((c) => TLS_ERROR_CODE.test(c))) return true;
  return codes.every((c) => c === 'EPROTO') && TLS_ERROR_TEXT.test(`${String(e?.message ?? err ?? '')} ${String(e?.cause?.message ?? '')}`);
}
