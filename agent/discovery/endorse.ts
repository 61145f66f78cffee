/**
 * Endorsements: a fleet root key vouches that an agent key may advertise, for one SPIFFE ID,
 * until a deadline. Agents carry their endorsement in every advertisement, so a new host
 * joins a fleet by being endorsed once (`skein key endorse`) instead of by editing every
 * agent's discovery.trustedKeys.
 *
 *   endorsement = signing envelope (signing/envelope.ts), context "skein-endorse-v1",
 *                 signed by the root key, over the payload map
 *     { "v": 1, "spiffe": text, "agentKey": bytes(32), "notAfter": uint (unix ms) }
 *
 * The raw agent key is inside (not just its id): a receiver that trusts only the root learns
 * the agent's full public key from the endorsement and verifies the advert with it. The
 * context differs from adverts', so neither can be passed off as the other.
 */
import { readFileSync, statSync } from 'node:fs';
import { SkeinError } from '../../common/errors/index.ts';
import { decodeCanonical, isSigningError, keyId, open, publicKeyFromRaw, sign, type CanonicalMap, type SigningKey, type TrustedKeys } from '../../signing/index.ts';
import { isValidSpiffeId } from './advert.ts';

export const ENDORSE_CONTEXT = 'skein-endorse-v1';
export const ENDORSEMENT_VERSION = 1;
/** An endorsement is ~190 bytes; anything far larger is not one. */
export const MAX_ENDORSEMENT_BYTES = 1024;
const ENDORSEMENT_LIMITS = Object.freeze({ maxDepth: 1, maxItems: 8 });

export interface EndorseOptions {
  /** The fleet root key (private). */
  root: SigningKey;
  /** Raw 32-byte Ed25519 public key of the agent. */
  agentPublicKey: Uint8Array;
  /** The SPIFFE ID the agent may claim in its advertisements. */
  spiffeId: string;
  /** Unix ms after which the endorsement no longer counts. */
  notAfter: number;
}

export interface Endorsement {
  /** Raw 32-byte public key of the endorsed agent. */
  agentKey: Uint8Array;
  agentKeyId: string;
  spiffe: string;
  notAfter: number;
  /** Id of the root key that signed it. */
  rootKeyId: string;
}

export type EndorsementResult = ({ ok: true } & Endorsement) | { ok: false; reason: 'endorsement-invalid' | 'endorsement-expired'; detail: string };

/**
 * Signs an endorsement of `agentPublicKey` for `spiffeId` until `notAfter`. Throws
 * SKEIN_ERR_CONFIG for an invalid SPIFFE ID, key or date.
 *
 * @example
 *   const bytes = endorse({ root, agentPublicKey: readPublicKey('agent.key.pub'),
 *     spiffeId: 'spiffe://skein.local/agent/a1', notAfter: Date.parse('2026-12-31T00:00:00Z') });
 */
export function endorse(options: EndorseOptions): Uint8Array {
  const { root, agentPublicKey, spiffeId, notAfter } = options;
  if (!(agentPublicKey instanceof Uint8Array) || agentPublicKey.length !== 32) {
    throw new SkeinError('SKEIN_ERR_CONFIG', 'the agent public key must be a raw 32-byte Ed25519 key');
  }
  publicKeyFromRaw(agentPublicKey); // throws SKEIN_ERR_SIG_KEY_INVALID for bytes that are not a key
  if (!isValidSpiffeId(spiffeId)) throw new SkeinError('SKEIN_ERR_CONFIG', `${JSON.stringify(spiffeId)} is not a SPIFFE ID (spiffe://trust.domain/path)`);
  if (!Number.isSafeInteger(notAfter) || notAfter <= 0) throw new SkeinError('SKEIN_ERR_CONFIG', `notAfter must be a positive integer (unix ms), got ${notAfter}`);
  return sign({ v: ENDORSEMENT_VERSION, agentKey: new Uint8Array(agentPublicKey), spiffe: spiffeId, notAfter }, root, ENDORSE_CONTEXT);
}

function shapeOf(payload: CanonicalMap): { agentKey: Uint8Array; spiffe: string; notAfter: number } | string {
  if (payload.v !== ENDORSEMENT_VERSION) return `unsupported endorsement version ${String(payload.v)}`;
  const { agentKey, spiffe, notAfter } = payload;
  if (!(agentKey instanceof Uint8Array) || agentKey.length !== 32) return 'agentKey must be 32 bytes';
  if (!isValidSpiffeId(spiffe)) return 'spiffe is not a SPIFFE ID';
  if (typeof notAfter !== 'number' || !Number.isSafeInteger(notAfter) || notAfter <= 0) return 'notAfter must be a positive integer';
  return { agentKey, spiffe, notAfter };
}

/**
 * Verifies an endorsement's signature and shape against the fleet root keys, ignoring the
 * clock (the verifier caches this part and checks notAfter on every use).
 */
export function openEndorsement(bytes: Uint8Array, rootKeys: TrustedKeys): Endorsement | { reason: 'endorsement-invalid'; detail: string } {
  let opened;
  try {
    opened = open(bytes, { trustedKeys: rootKeys, context: ENDORSE_CONTEXT, maxBytes: MAX_ENDORSEMENT_BYTES, limits: ENDORSEMENT_LIMITS });
  } catch (err) {
    if (isSigningError(err)) return { reason: 'endorsement-invalid', detail: err.message };
    throw err;
  }
  const shape = shapeOf(opened.payload);
  if (typeof shape === 'string') return { reason: 'endorsement-invalid', detail: shape };
  let agentKeyId: string;
  try {
    publicKeyFromRaw(shape.agentKey);
    agentKeyId = keyId(shape.agentKey);
  } catch {
    return { reason: 'endorsement-invalid', detail: 'agentKey is not an Ed25519 public key' };
  }
  return { agentKey: shape.agentKey, agentKeyId, spiffe: shape.spiffe, notAfter: shape.notAfter, rootKeyId: opened.keyId };
}

/**
 * Verifies an endorsement against the fleet root keys and the clock. Never throws for bad
 * input: the answer says 'endorsement-invalid' (wrong shape, unknown root, bad signature)
 * or 'endorsement-expired' (signature fine, now > notAfter).
 *
 * @example
 *   const e = verifyEndorsement(bytes, rootKeys, Date.now());
 *   if (e.ok) trustForThisAdvert(e.agentKeyId, e.agentKey);
 */
export function verifyEndorsement(bytes: Uint8Array, rootKeys: TrustedKeys, now: number): EndorsementResult {
  const e = openEndorsement(bytes, rootKeys);
  if ('reason' in e) return { ok: false, ...e };
  if (now > e.notAfter) {
    return { ok: false, reason: 'endorsement-expired', detail: `endorsement of key ${e.agentKeyId} expired at ${new Date(e.notAfter).toISOString()}` };
  }
  return { ok: true, ...e };
}

/**
 * Reads an endorsement's contents WITHOUT verifying it (for `skein key inspect` and for an
 * agent checking at start-up that its endorsement names its own key and has not expired).
 * Throws SKEIN_ERR_CONFIG when the bytes are not an endorsement.
 *
 * @example
 *   const e = inspectEndorsement(readEndorsementFile(config.discovery.endorsement));
 *   if (e.agentKeyId !== agentKey.keyId) throw …
 */
export function inspectEndorsement(bytes: Uint8Array): Endorsement {
  const bad = (why: string) => new SkeinError('SKEIN_ERR_CONFIG', `not a skein endorsement: ${why}`);
  let outer: unknown;
  try {
    outer = decodeCanonical(bytes, { maxBytes: MAX_ENDORSEMENT_BYTES, maxDepth: 1, maxItems: 5 });
  } catch (err) {
    throw bad(isSigningError(err) ? err.message : String(err));
  }
  if (!Array.isArray(outer) || outer.length !== 5 || outer[0] !== 1 || outer[1] !== ENDORSE_CONTEXT || typeof outer[2] !== 'string' || !(outer[3] instanceof Uint8Array)) {
    throw bad(`expected a "${ENDORSE_CONTEXT}" envelope`);
  }
  let payload: unknown;
  try {
    payload = decodeCanonical(outer[3], { maxBytes: outer[3].length, ...ENDORSEMENT_LIMITS });
  } catch (err) {
    throw bad(isSigningError(err) ? err.message : String(err));
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload) || payload instanceof Uint8Array) throw bad('payload is not a map');
  const shape = shapeOf(payload as CanonicalMap);
  if (typeof shape === 'string') throw bad(shape);
  return { agentKey: shape.agentKey, agentKeyId: keyId(shape.agentKey), spiffe: shape.spiffe, notAfter: shape.notAfter, rootKeyId: outer[2] };
}

/**
 * Reads an endorsement file written by `skein key endorse` (raw bytes, ≤ 1 KiB). Throws
 * SKEIN_ERR_CONFIG naming the path.
 *
 * @example
 *   const endorsement = readEndorsementFile(config.discovery.endorsement);
 */
export function readEndorsementFile(path: string): Uint8Array {
  let bytes: Buffer;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_ENDORSEMENT_BYTES) throw new Error(`${st.size} bytes; an endorsement is under ${MAX_ENDORSEMENT_BYTES}`);
    bytes = readFileSync(path);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_CONFIG', `cannot read endorsement ${path}: ${(err as Error).message}`, { path }, { cause: err });
  }
  inspectEndorsement(bytes);
  return new Uint8Array(bytes);
}
