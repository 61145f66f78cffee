/**
 * Signed nonce tokens: single-use, short-lived bearer tokens for one routine, signed with an
 * Ed25519 key (`skein keygen` / writeKeyPair). The agent checks them with the signed-nonce
 * plugin (plugins/signed-nonce.ts); `skein token sign-nonce` prints one.
 *
 * Wire format (byte-exact), sent as the `authorization` header:
 *
 *   SkeinNonce <payload>.<sig>
 *
 *   <payload>  base64url, no padding (RFC 4648 §5), of the UTF-8 JSON text
 *              {"v":1,"kid":"<key id>","nonce":"<nonce>","ts":<ts>,"routine":"<routine>"}
 *              with exactly these five members, in this order, no whitespace:
 *                v        1 (the format version)
 *                kid      16 lower-case hex characters: the signer's key id (signing/keys.ts
 *                         keyId(): first 16 hex chars of SHA-256 over the 32 raw public key bytes)
 *                nonce    32 lower-case hex characters (16 random bytes)
 *                ts       signing time, integer milliseconds since the Unix epoch
 *                routine  the routine name the token may call (config `routines` key syntax)
 *   <sig>      base64url, no padding, of the 64-byte Ed25519 signature over the ASCII bytes
 *              `skein-nonce-v1.` followed by <payload> (the encoded text exactly as sent)
 *
 * Signing the encoded text rather than the JSON value means a verifier needs no
 * canonicalisation: it checks the bytes it received, then parses them. The context prefix keeps
 * a nonce signature from ever verifying as another skein signature (advertisements and plugin
 * signatures sign CBOR under their own contexts).
 *
 * The verifier (plugins/signed-nonce.ts) accepts a token only within its freshness window
 * around `ts`, only for `routine`, and only once (it remembers nonces until they go stale).
 *
 * @example
 *   const token = signNonceToken(readPrivateKey('state/deploy.key'), 'echo');
 *   // fetch(url, { headers: { authorization: token } })
 */
import { randomBytes, sign as edSign } from 'node:crypto';
import { NAME_HINT, NAME_PATTERN } from '../common/names/index.ts';
import { SigningError } from './errors.ts';
import { assertSigningKey, type SigningKey } from './keys.ts';

/** The domain-separation prefix of the signed bytes (see the format above). */
export const NONCE_CONTEXT = 'skein-nonce-v1.';
/** The HTTP authorization scheme of nonce tokens. */
export const NONCE_SCHEME = 'SkeinNonce';

const NONCE_HEX = /^[0-9a-f]{32}$/;

export interface SignNonceOptions {
  /** Signing time in ms since the epoch (default Date.now()). */
  now?: number;
  /** 32 lower-case hex characters chosen by the caller (default: 16 fresh random bytes). A nonce the plugin has seen is refused, so a caller-chosen one must never repeat. */
  nonce?: string;
}

/**
 * Signs a nonce token for `routine` and returns the whole header value, `SkeinNonce <p>.<s>`.
 * Throws SKEIN_ERR_SIG_KEY_INVALID for a key that is not an Ed25519 private key matching its
 * id, and SKEIN_ERR_SIG_UNENCODABLE for a bad routine name, nonce or time.
 *
 * @example
 *   signNonceToken(generateKeyPair(), 'echo') // 'SkeinNonce eyJ2IjoxLCJr….Qm9…'
 */
export function signNonceToken(key: SigningKey, routine: string, opts: SignNonceOptions = {}): string {
  assertSigningKey(key);
  if (typeof routine !== 'string' || !NAME_PATTERN.test(routine)) {
    throw new SigningError('SKEIN_ERR_SIG_UNENCODABLE', `routine ${JSON.stringify(routine)} is not a routine name: ${NAME_HINT}`);
  }
  const ts = opts.now ?? Date.now();
  if (!Number.isSafeInteger(ts) || ts < 0) throw new SigningError('SKEIN_ERR_SIG_UNENCODABLE', `nonce token time must be a non-negative integer of milliseconds, got ${ts}`);
  const nonce = opts.nonce ?? randomBytes(16).toString('hex');
  if (!NONCE_HEX.test(nonce)) throw new SigningError('SKEIN_ERR_SIG_UNENCODABLE', 'nonce must be 32 lower-case hex characters');
  // Member order is part of the format; JSON.stringify keeps insertion order.
  const json = JSON.stringify({ v: 1, kid: key.keyId, nonce, ts, routine });
  const payload = Buffer.from(json, 'utf8').toString('base64url');
  const sig = edSign(null, Buffer.from(NONCE_CONTEXT + payload, 'ascii'), key.privateKey).toString('base64url');
  return `${NONCE_SCHEME} ${payload}.${sig}`;
}
