/**
 * Signed envelopes: the wire form of advertisements and other signed objects.
 *
 *   envelope = canonical CBOR [ 1, context, keyId, payloadBytes, signature ]
 *   payloadBytes = canonical CBOR of the payload (a map), carried as a byte string
 *   signature = Ed25519 over canonical CBOR [ context, keyId, payloadBytes ]
 *
 * - `context` is a domain-separation string ("skein-advert-v1", …): it is inside the signed
 *   bytes, so a signature made for one purpose can never be replayed as another.
 * - `keyId` is signed too, so an envelope cannot be relabelled to point at another key.
 * - The payload travels as bytes: the verifier checks the signature over exactly what was
 *   signed and decodes the payload only afterwards. Forged input therefore costs a bounded
 *   outer decode plus one verify, and unverified payloads are never parsed.
 * - Both layers are canonical CBOR, so every signed object has exactly one valid envelope:
 *   flipping any byte makes `open` throw.
 */
import { sign as edSign, verify as edVerify } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { decodeCanonical, encodeCanonical, type CanonicalMap, type DecodeLimits } from './canonical.ts';
import { readCborHead, scratchLen } from './canonical-fast.ts';
import { isSigningError, SigningError } from './errors.ts';
import { assertSigningKey, KEY_ID_PATTERN, trustedVerifyKey, type SigningKey, type TrustedKeys } from './keys.ts';

export const ENVELOPE_VERSION = 1;
/** Default cap on a whole envelope: one UDP datagram. */
export const DEFAULT_ENVELOPE_MAX_BYTES = 65_507;
const CONTEXT_PATTERN = /^[\x21-\x7e]{1,64}$/;

export interface OpenOptions {
  /** Keys allowed to sign: keyId → raw 32-byte public key, or a lookup function. */
  trustedKeys: TrustedKeys;
  /** The only context accepted, e.g. "skein-advert-v1". */
  context: string;
  /** Envelopes larger than this are refused before decoding (default 65,507). */
  maxBytes?: number;
  /** Limits for the payload, decoded after the signature checks (defaults: depth 16, 4096 items). */
  limits?: Pick<DecodeLimits, 'maxDepth' | 'maxItems'>;
}

export interface Opened {
  payload: CanonicalMap;
  keyId: string;
}

function checkContext(context: string): void {
  if (typeof context !== 'string' || !CONTEXT_PATTERN.test(context)) {
    throw new SigningError('SKEIN_ERR_SIG_UNENCODABLE', `context must be 1–64 printable ASCII characters without spaces, got ${JSON.stringify(context)}`);
  }
}

/** The bytes the signature covers. */
function signedBytes(context: string, keyId: string, payloadBytes: Uint8Array): Buffer {
  return encodeCanonical([context, keyId, payloadBytes]);
}

function malformed(message: string, cause?: unknown): SigningError {
  const reason = isSigningError(cause) ? cause.code : undefined;
  return new SigningError('SKEIN_ERR_SIG_MALFORMED', message, reason ? { reason } : {}, cause === undefined ? undefined : { cause });
}

/**
 * Signs `payload` (a plain object of canonical-CBOR values) for `context`.
 *
 * @example
 *   const bytes = sign({ name: 'agent-a', addr: '10.0.0.5:7443', ts: Date.now() }, pair, 'skein-advert-v1');
 */
export function sign(payload: object, key: SigningKey, context: string): Uint8Array {
  checkContext(context);
  assertSigningKey(key);
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload) || payload instanceof Uint8Array) {
    throw new SigningError('SKEIN_ERR_SIG_UNENCODABLE', 'the payload of a signed envelope must be a plain object');
  }
  const payloadBytes = encodeCanonical(payload);
  const signature = edSign(null, signedBytes(context, key.keyId, payloadBytes), key.privateKey);
  return encodeCanonical([ENVELOPE_VERSION, context, key.keyId, payloadBytes, signature]);
}

/**
 * Verifies and decodes an envelope. Throws SigningError with one of:
 * SKEIN_ERR_SIG_OVERSIZE (over maxBytes), SKEIN_ERR_SIG_MALFORMED (not canonical CBOR, wrong
 * shape or version, or a payload that is not a canonical map), SKEIN_ERR_SIG_CONTEXT,
 * SKEIN_ERR_SIG_UNKNOWN_KEY, SKEIN_ERR_SIG_INVALID.
 *
 * @example
 *   const { payload, keyId } = open(datagram, { trustedKeys, context: 'skein-advert-v1' });
 */
export function open(bytes: Uint8Array, options: OpenOptions): Opened {
  const maxBytes = options.maxBytes ?? DEFAULT_ENVELOPE_MAX_BYTES;
  if (!(bytes instanceof Uint8Array)) throw malformed('envelope is not a byte array');
  if (bytes.length > maxBytes) {
    throw new SigningError('SKEIN_ERR_SIG_OVERSIZE', `envelope of ${bytes.length} bytes exceeds the ${maxBytes}-byte limit`, { size: bytes.length, maxBytes });
  }

  // Outer layer: a flat 5-item array, nothing deeper.
  let outer: unknown;
  try {
    outer = decodeCanonical(bytes, { maxBytes: Math.max(1, bytes.length), maxDepth: 1, maxItems: 5 });
  } catch (err) {
    if (!isSigningError(err)) throw err;
    throw malformed(`envelope is not canonical CBOR: ${err.message}`, err);
  }
  if (!Array.isArray(outer) || outer.length !== 5) throw malformed('envelope must be a 5-element array');
  const [version, context, keyId, payloadBytes, signature] = outer as unknown[];
  if (version !== ENVELOPE_VERSION) throw malformed(`unsupported envelope version ${String(version)} (this build reads ${ENVELOPE_VERSION})`);
  if (typeof context !== 'string') throw malformed('envelope context must be a text string');
  if (typeof keyId !== 'string' || !KEY_ID_PATTERN.test(keyId)) throw malformed('envelope keyId must be 16 lower-case hex characters');
  if (!(payloadBytes instanceof Uint8Array)) throw malformed('envelope payload must be a byte string');
  if (!(signature instanceof Uint8Array) || signature.length !== 64) throw malformed('envelope signature must be a 64-byte string');

  if (context !== options.context) {
    throw new SigningError('SKEIN_ERR_SIG_CONTEXT', `envelope was signed for "${context}", expected "${options.context}"`, { context, expected: options.context });
  }
  const verifyKey = trustedVerifyKey(options.trustedKeys, keyId);
  if (!verifyKey) throw new SigningError('SKEIN_ERR_SIG_UNKNOWN_KEY', `envelope signed by untrusted key ${keyId}`, { keyId });
  if (!edVerify(null, signedBytes(context, keyId, payloadBytes), verifyKey, signature)) {
    throw new SigningError('SKEIN_ERR_SIG_INVALID', `envelope signature by ${keyId} does not verify`, { keyId });
  }

  // Only now is the payload parsed. A trusted signer using sign() always produces a canonical
  // map; anything else came from a different (buggy or hostile) encoder and is refused.
  let payload: unknown;
  try {
    payload = decodeCanonical(payloadBytes, { maxBytes: Math.max(1, payloadBytes.length), ...options.limits });
  } catch (err) {
    if (!isSigningError(err)) throw err;
    throw malformed(`signed payload from ${keyId} is not acceptable canonical CBOR: ${err.message}`, err);
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload) || payload instanceof Uint8Array) {
    throw malformed(`signed payload from ${keyId} is not a map`);
  }
  return { payload: payload as CanonicalMap, keyId };
}

// ── zero-copy view (hot paths) ───────────────────────────────────────────────────────────

const KEY_ID_HEX = /^[0-9a-f]{16}$/;

export interface EnvelopeView {
  keyId: string;
  payload: Uint8Array;
  signature: Uint8Array;
  /** End of the payload within the envelope: signed bytes are 0x83 ‖ envelope[2, signedEnd). */
  signedEnd: number;
}

/** The CBOR text head and bytes of a context string (ASCII), as viewEnvelope expects it. */
export function envelopeContextHead(context: string): Uint8Array {
  if (context.length > 23 || !/^[\x20-\x7e]+$/.test(context)) throw new RangeError('a context for viewEnvelope is 1-23 ASCII characters');
  return Buffer.concat([Buffer.from([0x60 + context.length]), Buffer.from(context, 'latin1')]);
}

/**
 * The envelope [1, context, keyId, payloadBytes, signature(64)] as views into `e`, for hot
 * paths: nothing is copied, and the bytes the signature covers — canonical CBOR [context,
 * keyId, payloadBytes] — are the envelope's bytes from its context to the end of its payload
 * behind a 0x83 head instead of its 0x85 0x01 (`signedEnd`), so a verifier builds them with one
 * copy instead of re-encoding. Or why not: 'malformed' (shape, version, non-canonical heads,
 * trailing bytes) or 'context' (a well-formed envelope signed for another purpose, e.g. an
 * endorsement). It mirrors `open` byte for byte (test/discovery/wire.test.ts); `contextHead`
 * comes from envelopeContextHead(context), computed once.
 */
export function viewEnvelope(e: Uint8Array, contextHead: Uint8Array): EnvelopeView | 'malformed' | 'context' {
  const CONTEXT_HEAD = contextHead;
  const end = e.length;
  if (end < 2 + CONTEXT_HEAD.length + 17 + 1 + 66 || e[0] !== 0x85 || e[1] !== 0x01) return 'malformed';
  let p = 2;
  for (let i = 0; i < CONTEXT_HEAD.length; i++) {
    if (e[p + i] !== CONTEXT_HEAD[i]) {
      const q = readCborHead(e, p, end, 3, scratchLen);
      return q >= 0 && isUtf8(e.subarray(q, q + scratchLen[0]!)) ? 'context' : 'malformed';
    }
  }
  p += CONTEXT_HEAD.length;
  if (e[p] !== 0x70) return 'malformed'; // text(16)
  const keyId = Buffer.from(e.buffer, e.byteOffset + p + 1, 16).toString('latin1');
  if (!KEY_ID_HEX.test(keyId)) return 'malformed';
  p += 17;
  p = readCborHead(e, p, end, 2, scratchLen);
  if (p < 0) return 'malformed';
  const payload = e.subarray(p, p + scratchLen[0]!);
  p += scratchLen[0]!;
  const signedEnd = p;
  if (p + 66 !== end || e[p] !== 0x58 || e[p + 1] !== 0x40) return 'malformed';
  return { keyId, payload, signature: e.subarray(p + 2, end), signedEnd };
}
