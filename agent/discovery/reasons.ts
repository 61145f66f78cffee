/**
 * Why an advertisement was dropped. Receivers never throw at senders: every datagram is either
 * accepted or counted under exactly one of these reasons (GET /v1/peers and logs show the
 * counters), listed in the order the verifier checks them, cheapest first.
 */
export const REJECT_REASONS = [
  /** The source address sent more than its token bucket allows. */
  'rate-limited',
  /** Larger than the datagram limit (1,200 bytes by default). */
  'oversize',
  /** Not the canonical CBOR frame, envelope or payload skein sends (or too deep, too many items). */
  'malformed',
  /** A frame or payload version this build does not read (a newer sender). */
  'unsupported-version',
  /** Another fleet id, outside (before any signature work) or inside the signed payload. */
  'wrong-fleet',
  /** The carried endorsement does not verify against a fleet root key, or has the wrong shape. */
  'endorsement-invalid',
  /** The carried endorsement verified but its notAfter has passed. */
  'endorsement-expired',
  /** The carried endorsement is valid but endorses another key than the one that signed. */
  'endorsement-mismatch',
  /** Signed by a key that is neither trusted nor endorsed. */
  'unknown-key',
  /** The Ed25519 signature does not verify. */
  'bad-signature',
  /** The SPIFFE ID is not the one the key may claim (endorsement, pin or trust domain). */
  'spiffe-mismatch',
  /** Issued more than maxSkewMs ago. */
  'stale',
  /** Issued more than maxSkewMs in the future. */
  'future',
  /** Sequence number not greater than the last one accepted from the same key. */
  'replay',
] as const;

export type RejectReason = (typeof REJECT_REASONS)[number];
export type CounterName = RejectReason | 'accepted';
