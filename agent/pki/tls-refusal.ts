/**
 * Why a TLS handshake with a client failed, as one small fixed vocabulary shared by the
 * agent (its log line and the skein_tls_handshake_failures_total{reason} metric) and the
 * client library (the reason of SKEIN_ERR_TLS). Fixed, so the metric's label set is bounded
 * whatever a scanner sends.
 */

export const TLS_FAILURE_REASONS = [
  'no-certificate',
  'unknown-ca',
  'expired',
  'not-yet-valid',
  'bad-key-usage',
  'bad-certificate',
  'protocol',
  'handshake-timeout',
  'closed',
  'other',
] as const;
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
