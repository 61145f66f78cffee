/**
 * signing/: Ed25519 keys and key files, canonical CBOR, signed envelopes (advertisements and
 * other signed objects) and detached file signatures (plugins). Hot-path crypto is node:crypto.
 *
 * @example
 *   import { generateKeyPair, sign, open } from './index.ts';
 *   const pair = generateKeyPair();
 *   const bytes = sign({ hello: 'fleet' }, pair, 'skein-advert-v1');
 *   open(bytes, { trustedKeys: new Map([[pair.keyId, pair.publicKey]]), context: 'skein-advert-v1' });
 */
export { SigningError, isSigningError, type SigningErrorCode } from './errors.ts';
export { DEFAULT_LIMITS, decodeCanonical, encodeCanonical, type CanonicalMap, type CanonicalValue, type DecodeLimits } from './canonical.ts';
export {
  KEY_ID_PATTERN,
  formatPublicKey,
  generateKeyPair,
  keyId,
  keyPairFromPrivate,
  privateKeyFromSeed,
  privateKeyToSeed,
  publicKeyFromRaw,
  publicKeyToRaw,
  readPrivateKey,
  readPublicKey,
  trustStore,
  writeKeyPair,
  type KeyPair,
  type SigningKey,
  type TrustedKeys,
} from './keys.ts';
export { DEFAULT_ENVELOPE_MAX_BYTES, ENVELOPE_VERSION, envelopeContextHead, open, sign, viewEnvelope, type EnvelopeView, type OpenOptions, type Opened } from './envelope.ts';
export { decodeCanonicalFast, FALLBACK, readCborHead, scratchLen } from './canonical-fast.ts';
export { NONCE_CONTEXT, NONCE_SCHEME, signNonceToken, type SignNonceOptions } from './nonce.ts';
export { PLUGIN_SIGNATURE_CONTEXT, signFile, verifyFile, type FileSignature, type VerifiedFile, type VerifyFileOptions } from './file-signature.ts';
