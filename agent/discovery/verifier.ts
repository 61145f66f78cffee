/**
 * The receiving side of discovery: decides whether a datagram is an advertisement to believe.
 *
 * Checks run cheapest first, so a flood of junk or forgeries costs as little as possible:
 *
 *   1. per-source token bucket of        rate-limited         (a Map lookup)
 *      datagrams that did not verify
 *   2. size ≤ maxBytes                   oversize
 *   3. outer frame [1, fleet, …], read   malformed / unsupported-version
 *      in place (wire.ts), canonical heads only, no copies
 *   4. frame fleet = ours                wrong-fleet          (still no crypto)
 *   5. endorsement, when carried         endorsement-invalid / endorsement-expired
 *      (one verify per distinct endorsement: results are cached by their bytes, the expiry
 *      is checked on every use; the endorsed key counts as trusted for THIS advert only)
 *   6. envelope read in place            malformed
 *   7. token buckets per (source, key)   rate-limited
 *      and per source for every datagram
 *   8. a byte-identical repeat of a datagram whose signature already verified skips to step
 *      12 (keyed by SHA-256 of the exact bytes, see "Repeats" below)
 *   9. key looked up (KeyObjects parsed  unknown-key
 *      once), one Ed25519 verify                                 bad-signature
 *      and the endorsement names the signer                      endorsement-mismatch
 *  10. payload decoded (only now), with   malformed / unsupported-version
 *      depth and item limits, and its schema checked
 *  11. payload fleet = frame fleet       wrong-fleet
 *      SPIFFE ID the key may claim       spiffe-mismatch
 *      (an endorsed key: its endorsement's; a trusted key: its pin, if configured; and, when
 *      a trust domain is set, always inside it)
 *  12. endorsement still valid           endorsement-expired
 *      |now − iat| ≤ maxSkewMs           stale / future
 *      seq > last accepted for the key   replay
 *
 * Rate limits, verify-then-count: the per-source bucket (50 at once, 20/s) is charged only
 * for datagrams that end rejected (other than as a repeat of verified bytes), so a flood of
 * junk or forgeries from one address costs at most that many checks per second, while any
 * number of legitimate agents behind one address (a NAT, a host running several agents) never
 * drain it. Their verified adverts are counted per (source, signing key) instead — each agent
 * gets what a whole address used to — and all datagrams of one source together are capped
 * (perSourceCap, sized by the caller from the fleet's advert budget) so even a source holding
 * many trusted keys is bounded.
 *
 * Repeats: the signature, the endorsement's signature, the payload's decoding and its checks
 * against the trust store (fleet, SPIFFE ID the key may claim) are a pure function of the
 * datagram's bytes and the trust store. So once a datagram passed them, the same bytes again
 * (a second group or interface delivering it, a captured advert replayed) skip straight to the
 * checks that depend on time and state, which run on every datagram: the endorsement's
 * notAfter, the issued-at skew and the sequence number — a repeat of an accepted advert is
 * therefore a replay, rejected without a signature check. (One that would now be accepted,
 * its first copy having been refused for time or sequence, is verified again: only the
 * rejection needs nothing more than those facts.) The table (./repeats.ts) is keyed by
 * SHA-256 of the exact bytes (no one can make other bytes hash alike), bounded, holds no
 * object per datagram, and is emptied when the trust store changes; the rate limits are
 * charged before it is consulted.
 *
 * Nothing here throws for bad input; every datagram ends as 'accepted' or one reason, and
 * `counters()` counts them.
 *
 * @example
 *   const verifier = createAdvertVerifier({ fleet: 'prod', trustedKeys: config.discovery.trustedKeys,
 *     rootKeys: config.discovery.rootKeys, now: Date.now });
 *   socket.on('message', (msg, rinfo) => {
 *     const r = verifier.verify(msg, rinfo.address);
 *     if (r.ok) peers.upsert(r.payload, r.keyId, rinfo.address);
 *   });
 */
import { hash, verify as edVerify, type KeyObject } from 'node:crypto';
import { configError } from '../config/schema-dsl.ts';
import { decodeCanonical, isSigningError, keyId as keyIdOf, publicKeyFromRaw, readPublicKey } from '../../signing/index.ts';
import { MAX_ADVERT_BYTES, PAYLOAD_LIMITS, checkAdvertPayload, isValidSpiffeId, spiffeTrustDomain, type AdvertPayload } from './advert.ts';
import { openEndorsement, type Endorsement } from './endorse.ts';
import { REJECT_REASONS, type CounterName, type RejectReason } from './reasons.ts';
import { decodeCanonicalFast, FALLBACK } from '../../signing/index.ts';
import { isUtf8, parseEnvelope, parseFrame } from './wire.ts';
import { LruMap } from './bounded.ts';
import { RepeatTable, type RepeatFacts } from './repeats.ts';
import { checkHeartbeat, isHeartbeatShape, type HeartbeatPayload } from './heartbeat.ts';

/** An agent key: "ed25519:…", "ed25519:…@spiffe://…" (pins its SPIFFE ID), raw bytes, or an object. */
export type TrustedKeySpec = string | Uint8Array | { key: string | Uint8Array; spiffe?: string };
export type RootKeySpec = string | Uint8Array;

export interface RateLimit {
  /** Datagrams a source may send at once. */
  burst: number;
  /** Sustained datagrams per second per source. */
  perSecond: number;
}

export interface AdvertVerifierOptions {
  /** Our fleet id: adverts of other fleets are dropped before any signature work. */
  fleet: string;
  /** Agent keys whose adverts are believed (discovery.trustedKeys). */
  trustedKeys?: readonly TrustedKeySpec[];
  /** Fleet root keys whose endorsements make an agent key trusted (discovery.rootKeys). */
  rootKeys?: readonly RootKeySpec[];
  /** When set, every claimed SPIFFE ID must be in one of these trust domains: those the agent accepts client SPIFFE IDs from (tls.trustDomains, else its CA's). */
  trustDomains?: readonly string[];
  /** Accepted clock skew of `iat`, either way (default 30,000 ms). */
  maxSkewMs?: number;
  /** The clock, unix ms (default Date.now). */
  now?: () => number;
  /** Datagrams larger than this are dropped unread (default 1,200). */
  maxBytes?: number;
  /**
   * Token bucket per source address for datagrams that end rejected, and per (source address,
   * signing key) for those that verify (default 50 at once, 20/s). Pass the sender's IP address
   * (rinfo.address), not address:port, or a flood can dodge it by changing ports. `null` turns
   * every rate limit off.
   */
  perSourceRate?: RateLimit | null;
  /** Every datagram of one source address, however many keys sign them (default 2,000 at once, 1,000/s). */
  perSourceCap?: RateLimit;
  /** Sources (and source, key pairs) tracked at once; the least recently seen is forgotten first (default 16,384). */
  maxSources?: number;
  /** Valid endorsements kept verified: at least the fleet's size, or every advert pays a second signature check (default 16,384). */
  maxEndorsements?: number;
  /** Datagrams whose signature verified, remembered so byte-identical repeats skip the check (default 4,096). */
  maxRepeats?: number;
  /** Signing keys whose last sequence number is remembered (default 65,536). */
  maxTrackedKeys?: number;
}

export type VerifyResult =
  /**
   * bound: the key is entitled to exactly this SPIFFE ID (an endorsement names it, or the
   * trust store pins it), so it may take over an agent name from another key bound to the
   * same ID - signing-key rotation without waiting for the old entry to expire.
   */
  | { ok: true; payload: AdvertPayload | HeartbeatPayload; keyId: string; endorsed: boolean; bound: boolean; endorsementNotAfter?: number }
  | {
      ok: false;
      reason: RejectReason;
      detail?: string;
      /**
       * unknown-key of a version 2 datagram without an endorsement, when root keys are
       * configured: possibly a heartbeat of an endorsed peer whose record this agent has not
       * seen yet — the receiver may ask that key for its record.
       */
      wantKeyId?: string;
    };

export interface AdvertVerifier {
  /** Never throws for bad input: the answer is accepted or one reason (also counted). */
  /** `own`: from this agent's own send socket (looped back); exempt from the per-source limits. */
  verify(bytes: Uint8Array, sourceAddress: string, own?: boolean): VerifyResult;
  /** A snapshot: every reason and 'accepted', zero included. */
  counters(): Record<CounterName, number>;
  /** Replaces the trust store (config reload); sequence numbers seen so far are kept. */
  setTrust(trust: { trustedKeys?: readonly TrustedKeySpec[]; rootKeys?: readonly RootKeySpec[] }): void;
  /** Whether the trust store's key list holds this key (endorsed keys are not listed). */
  trustsKey(keyId: string): boolean;
}

interface DirectKey {
  raw: Buffer;
  /** Parsed once: building a KeyObject costs about as much as a verify. */
  verifyKey: KeyObject;
  spiffe: string | undefined;
}

/**
 * What an endorsement proved, as the verifier keeps it for the fleet's lifetime: no byte of
 * the datagram it came in (a view of its agentKey kept the whole ~700-byte datagram alive per
 * peer).
 */
type CachedEndorsement = Pick<Endorsement, 'agentKeyId' | 'spiffe' | 'notAfter'> & { verifyKey: KeyObject };

const ENDORSEMENT_REJECT_CACHE = 256;

interface Bucket {
  tokens: number;
  last: number;
}

/**
 * What one source address may still send, in one flat object (a fleet of 1,000 keeps 1,000 of
 * them): the bucket its rejected datagrams draw from (u…), the cap on all its datagrams (a…),
 * and the bucket of the first signing key it sent (k…) — most sources are one agent, so most
 * (source, key) buckets need no map entry and no "source key" string of their own. A source's
 * further keys (agents behind one address) have their buckets in `perKey`.
 */
class SourceState {
  uTokens: number;
  uLast: number;
  aTokens: number;
  aLast: number;
  key: string | undefined = undefined;
  kTokens = 0;
  kLast = 0;
  constructor(burst: number, capBurst: number, now: number) {
    this.uTokens = burst;
    this.uLast = now;
    this.aTokens = capBurst;
    this.aLast = now;
  }
}

/** What a verified datagram proved. */
interface Verified {
  keyId: string;
  payload: AdvertPayload | HeartbeatPayload;
  endorsement: CachedEndorsement | undefined;
  pinned: boolean;
}

/** Frozen answers for the reasons decided before any signature work: a flood allocates nothing. */
const CHEAP: Readonly<Record<RejectReason, VerifyResult>> = Object.freeze(
  Object.fromEntries(REJECT_REASONS.map((reason) => [reason, Object.freeze({ ok: false, reason })])) as Record<RejectReason, VerifyResult>,
);

function parseKey(spec: string | Uint8Array, path: string): Buffer {
  try {
    return typeof spec === 'string' ? readPublicKey(spec) : readPublicKey(`ed25519:${Buffer.from(spec).toString('base64url')}`);
  } catch (err) {
    throw configError(path, (err as Error).message, { cause: err });
  }
}

function parseTrustedKeys(specs: readonly TrustedKeySpec[]): Map<string, DirectKey> {
  const out = new Map<string, DirectKey>();
  specs.forEach((spec, i) => {
    const path = `discovery.trustedKeys[${i}]`;
    let key: string | Uint8Array;
    let spiffe: string | undefined;
    if (typeof spec === 'string') {
      const at = spec.indexOf('@spiffe://');
      key = at < 0 ? spec : spec.slice(0, at);
      spiffe = at < 0 ? undefined : spec.slice(at + 1);
    } else if (spec instanceof Uint8Array) {
      key = spec;
    } else if (spec && typeof spec === 'object') {
      key = spec.key;
      spiffe = spec.spiffe;
    } else {
      throw configError(path, 'expected "ed25519:<base64url>[@spiffe://…]" or { key, spiffe }');
    }
    if (spiffe !== undefined && !isValidSpiffeId(spiffe)) throw configError(path, `${JSON.stringify(spiffe)} is not a SPIFFE ID (spiffe://domain/path)`);
    const raw = parseKey(key, path);
    const id = keyIdOf(raw);
    const prev = out.get(id);
    if (prev && prev.spiffe !== spiffe) throw configError(path, `key ${id} is listed twice with different SPIFFE IDs`);
    out.set(id, { raw, verifyKey: publicKeyFromRaw(raw), spiffe });
  });
  return out;
}

function parseRootKeys(specs: readonly RootKeySpec[]): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  specs.forEach((spec, i) => {
    const raw = parseKey(spec, `discovery.rootKeys[${i}]`);
    out.set(keyIdOf(raw), raw);
  });
  return out;
}

function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw configError(name, `must be a positive number, got ${value}`);
  return value;
}

/**
 * Creates a verifier with its own state (rate buckets, last sequence per key, endorsement
 * cache, counters). Throws SKEIN_ERR_CONFIG for an invalid option, naming it.
 */
export function createAdvertVerifier(options: AdvertVerifierOptions): AdvertVerifier {
  const { fleet } = options;
  const trustDomains = options.trustDomains ? new Set(options.trustDomains) : undefined;
  if (typeof fleet !== 'string' || fleet === '') throw configError('discovery.fleet', 'is required');
  const maxSkewMs = options.maxSkewMs ?? 30_000;
  if (!Number.isFinite(maxSkewMs) || maxSkewMs < 0) throw configError('discovery.maxSkewMs', `must be ≥ 0, got ${maxSkewMs}`);
  const clock = options.now ?? Date.now;
  const maxBytes = positive(options.maxBytes ?? MAX_ADVERT_BYTES, 'maxBytes');
  const rate = options.perSourceRate === undefined ? { burst: 50, perSecond: 20 } : options.perSourceRate;
  const burst = rate ? positive(rate.burst, 'perSourceRate.burst') : 0;
  const perMs = rate ? positive(rate.perSecond, 'perSourceRate.perSecond') / 1000 : 0;
  const cap = options.perSourceCap ?? { burst: 2000, perSecond: 1000 };
  const capBurst = positive(cap.burst, 'perSourceCap.burst');
  const capPerMs = positive(cap.perSecond, 'perSourceCap.perSecond') / 1000;
  const maxSources = positive(options.maxSources ?? 16_384, 'maxSources');
  const maxTrackedKeys = positive(options.maxTrackedKeys ?? 65_536, 'maxTrackedKeys');

  let direct = parseTrustedKeys(options.trustedKeys ?? []);
  let roots = parseRootKeys(options.rootKeys ?? []);
  const endorsements = new LruMap<string, CachedEndorsement>(positive(options.maxEndorsements ?? 16_384, 'maxEndorsements'));
  const badEndorsements = new Map<string, string>();
  /** Endorsements by the key they endorse, from verified records: what heartbeats are checked with. */
  const endorsedKeys = new LruMap<string, CachedEndorsement>(positive(options.maxEndorsements ?? 16_384, 'maxEndorsements'));
  const repeats = new RepeatTable(positive(options.maxRepeats ?? 4096, 'maxRepeats'));
  const sources = new LruMap<string, SourceState>(maxSources);
  /** (source, key) buckets of each source's keys after its first, by "source key". */
  const perKey = new LruMap<string, Bucket>(maxSources);
  const lastSeq = new Map<string, number>();
  const counts = Object.fromEntries([...REJECT_REASONS, 'accepted'].map((r) => [r, 0])) as Record<CounterName, number>;

  const fleetBytes = Buffer.from(fleet, 'utf8');
  // Signed bytes are rebuilt here, one copy per verify into one buffer (see wire.ts).
  const scratch = Buffer.allocUnsafe(maxBytes + 1);
  scratch[0] = 0x83;

  function reject(reason: RejectReason, detail?: string): VerifyResult {
    counts[reason]++;
    return detail === undefined ? CHEAP[reason] : { ok: false, reason, detail };
  }

  /** `tokens` refilled from `last` to `now`, up to `size`, at `rate` per ms. */
  const refilled = (tokens: number, last: number, now: number, size: number, rate: number) => (now > last ? Math.min(size, tokens + (now - last) * rate) : tokens);

  function endorsementOf(bytes: Uint8Array): CachedEndorsement | string {
    // Keyed by the SHA-256 of its exact bytes (32 characters), not by the bytes (~200): one
    // entry per peer of the fleet. Only records carry an endorsement, so few datagrams pay it.
    const cacheKey = hash('sha256', bytes, 'binary');
    const hit = endorsements.get(cacheKey);
    if (hit) return hit;
    const miss = badEndorsements.get(cacheKey);
    if (miss !== undefined) return miss;
    const e = openEndorsement(bytes, roots);
    if ('reason' in e) {
      if (badEndorsements.size >= ENDORSEMENT_REJECT_CACHE) badEndorsements.delete(badEndorsements.keys().next().value!);
      badEndorsements.set(cacheKey, e.detail);
      return e.detail;
    }
    const cached: CachedEndorsement = { agentKeyId: e.agentKeyId, spiffe: e.spiffe, notAfter: e.notAfter, verifyKey: publicKeyFromRaw(e.agentKey) };
    endorsements.set(cacheKey, cached);
    return cached;
  }

  function verify(bytes: Uint8Array, sourceAddress: string, own = false): VerifyResult {
    const now = clock();
    let src: SourceState | undefined;
    if (rate && !own) {
      src = sources.get(sourceAddress);
      if (src === undefined) sources.set(sourceAddress, (src = new SourceState(burst, capBurst, now)));
      // A source whose rejected datagrams used up its bucket is dropped before anything is read.
      src.uTokens = refilled(src.uTokens, src.uLast, now, burst, perMs);
      src.uLast = Math.max(src.uLast, now);
      if (src.uTokens < 1) return reject('rate-limited');
    }
    repeated = false;
    const r = check(bytes, sourceAddress, src, now);
    // Verify-then-count: only what ends rejected (and was not a repeat of verified bytes) costs
    // the source's bucket, so legitimate agents sharing an address never drain it.
    if (src && !r.ok && !repeated && r.reason !== 'rate-limited') src.uTokens -= 1;
    return r;
  }

  /**
   * Takes a token from the (source, key) bucket and one from the source's cap; false, taking
   * none, when either is empty. The source's first key has its bucket inline.
   */
  function charged(src: SourceState, sourceAddress: string, keyId: string, now: number): boolean {
    src.aTokens = refilled(src.aTokens, src.aLast, now, capBurst, capPerMs);
    src.aLast = Math.max(src.aLast, now);
    if (src.key === undefined) {
      src.key = keyId;
      src.kTokens = burst;
      src.kLast = now;
    }
    if (src.key === keyId) {
      src.kTokens = refilled(src.kTokens, src.kLast, now, burst, perMs);
      src.kLast = Math.max(src.kLast, now);
      if (src.kTokens < 1 || src.aTokens < 1) return false;
      src.kTokens -= 1;
    } else {
      const k = `${sourceAddress} ${keyId}`;
      let kb = perKey.get(k);
      if (kb === undefined) perKey.set(k, (kb = { tokens: burst, last: now }));
      kb.tokens = refilled(kb.tokens, kb.last, now, burst, perMs);
      kb.last = Math.max(kb.last, now);
      if (kb.tokens < 1 || src.aTokens < 1) return false;
      kb.tokens -= 1;
    }
    src.aTokens -= 1;
    return true;
  }

  /** Set by check(): the datagram repeated bytes whose signature already verified. */
  let repeated = false;

  function check(bytes: Uint8Array, sourceAddress: string, src: SourceState | undefined, now: number): VerifyResult {
    if (!(bytes instanceof Uint8Array)) return reject('malformed');
    if (bytes.length > maxBytes) return reject('oversize');
    const frame = parseFrame(bytes);
    if (typeof frame === 'string') return reject(frame);
    if (!fleetBytes.equals(frame.fleet)) return reject(isUtf8(frame.fleet) ? 'wrong-fleet' : 'malformed');

    let endorsement: CachedEndorsement | undefined;
    if (frame.endorsement !== null) {
      const e = endorsementOf(frame.endorsement);
      if (typeof e === 'string') return reject('endorsement-invalid', e);
      endorsement = e;
    }

    // The signing envelope: parsed in place (no crypto yet).
    const env = parseEnvelope(frame.envelope, frame.version);
    if (typeof env === 'string') return reject('malformed', env === 'context' ? 'envelope signed for another context' : 'envelope is not canonical CBOR of the expected shape');
    const keyId = env.keyId;

    if (src && !charged(src, sourceAddress, keyId, now)) return reject('rate-limited');

    const digest = hash('sha256', bytes, 'buffer');
    const slot = repeats.find(digest);
    if (slot >= 0) {
      const refused = refusedNow(keyId, repeats.facts(slot), now);
      if (refused !== undefined) {
        repeated = true;
        return refused;
      }
    }
    const verified = verifySigned(frame.version, frame.envelope, env, keyId, endorsement);
    if ('reason' in verified) return verified;
    repeats.remember(digest, { seq: verified.payload.seq, iat: verified.payload.iat, notAfter: verified.endorsement?.notAfter ?? Infinity });
    return current(verified, now);
  }

  /**
   * Everything that depends only on the bytes and the trust store: the key, the Ed25519
   * signature, the endorsement naming the signer, the payload and the SPIFFE ID the key may
   * claim. Its answer for the same bytes never changes until setTrust (which empties `repeats`).
   */
  function verifySigned(
    version: 1 | 2,
    envelope: Uint8Array,
    env: Exclude<ReturnType<typeof parseEnvelope>, string>,
    keyId: string,
    carried: CachedEndorsement | undefined,
  ): Verified | (VerifyResult & { ok: false }) {
    // A record's endorsed key is trusted for that record only; a heartbeat (which carries no
    // endorsement, to stay small) is checked with the endorsement a record of its key carried.
    // Otherwise the trust store decides.
    let endorsement = carried;
    if (endorsement === undefined && version === 2 && !direct.has(keyId)) endorsement = endorsedKeys.get(keyId);
    const verifyKey = endorsement !== undefined && keyId === endorsement.agentKeyId ? endorsement.verifyKey : direct.get(keyId)?.verifyKey;
    if (verifyKey === undefined) {
      counts['unknown-key']++;
      const detail = `advert signed by untrusted key ${keyId}`;
      return version === 2 && carried === undefined && roots.size > 0 ? { ok: false, reason: 'unknown-key', detail, wantKeyId: keyId } : { ok: false, reason: 'unknown-key', detail };
    }
    const signedLength = env.signedEnd - 1;
    scratch.set(envelope.subarray(2, env.signedEnd), 1);
    if (!edVerify(null, scratch.subarray(0, signedLength), verifyKey, env.signature)) return reject('bad-signature', `signature by key ${keyId} does not verify`) as VerifyResult & { ok: false };
    if (endorsement && keyId !== endorsement.agentKeyId) {
      return reject('endorsement-mismatch', `advert signed by key ${keyId} carries an endorsement of key ${endorsement.agentKeyId}`) as VerifyResult & { ok: false };
    }

    // Only now is the payload decoded (canonical CBOR, depth and item limits).
    let decoded: unknown = decodeCanonicalFast(env.payload, PAYLOAD_LIMITS.maxDepth, PAYLOAD_LIMITS.maxItems);
    if (decoded === FALLBACK) {
      try {
        decoded = decodeCanonical(env.payload, { maxBytes: Math.max(1, env.payload.length), ...PAYLOAD_LIMITS });
      } catch (err) {
        if (!isSigningError(err)) throw err;
        return reject('malformed', `payload from key ${keyId}: ${err.message}`) as VerifyResult & { ok: false };
      }
    }
    const refuse = (reason: RejectReason, detail: string) => reject(reason, detail) as VerifyResult & { ok: false };
    const isMap = decoded !== null && typeof decoded === 'object' && !Array.isArray(decoded) && !(decoded instanceof Uint8Array);
    if (version === 2 && isMap && isHeartbeatShape(decoded as Record<string, unknown>)) {
      const hb = checkHeartbeat(decoded as Record<string, unknown>);
      if (typeof hb === 'string') return refuse('malformed', `heartbeat from key ${keyId}: ${hb}`);
      if (hb.fleet !== fleet) return refuse('wrong-fleet', `key ${keyId} signed fleet "${hb.fleet}" inside a "${fleet}" frame`);
      // Its SPIFFE ID and name were checked with the record it refers to: the peer table applies
      // a heartbeat only to an entry of the same key whose record has this digest.
      return { keyId: endorsement?.agentKeyId ?? keyId, payload: hb, endorsement, pinned: direct.get(keyId)?.spiffe !== undefined };
    }
    const payload = checkAdvertPayload(decoded);
    if (typeof payload === 'string') return refuse('malformed', `payload from key ${keyId}: ${payload}`);
    if ('v' in payload && payload.v !== version) return refuse('malformed', `payload version ${payload.v} from key ${keyId} inside a version ${version} frame`);
    if (!('fleet' in payload)) return refuse('unsupported-version', `payload version ${String(payload.version)} from key ${keyId}`);
    if (payload.fleet !== fleet) return refuse('wrong-fleet', `key ${keyId} signed fleet "${payload.fleet}" inside a "${fleet}" frame`);

    const pinned = direct.get(keyId)?.spiffe;
    if (endorsement && payload.spiffe !== endorsement.spiffe) {
      return refuse('spiffe-mismatch', `key ${keyId} is endorsed for ${endorsement.spiffe}, claims ${payload.spiffe}`);
    }
    if (pinned !== undefined && payload.spiffe !== pinned) return refuse('spiffe-mismatch', `key ${keyId} is pinned to ${pinned}, claims ${payload.spiffe}`);
    if (trustDomains !== undefined && !trustDomains.has(spiffeTrustDomain(payload.spiffe)!)) {
      return refuse('spiffe-mismatch', `key ${keyId} claims ${payload.spiffe}, outside the trust domains ${[...trustDomains].join(', ')}`);
    }
    // Heartbeats of this key are checked with the endorsement its record carried.
    if (endorsement) endorsedKeys.set(keyId, endorsement);
    // The endorsement's copy of the key id (equal, checked above): what the peer table and the
    // sequence numbers keep is then one string per peer, not one per record.
    return { keyId: endorsement?.agentKeyId ?? keyId, payload, endorsement, pinned: pinned !== undefined };
  }

  /**
   * What depends on time and on what was accepted before, from the facts alone (a verified
   * datagram's, or a repeat's): the endorsement's end, the issued-at skew, the sequence number.
   * undefined when none refuses it. `keyId` signed it (and, when endorsed, is the key endorsed).
   */
  function refusedNow(keyId: string, { seq, iat, notAfter }: RepeatFacts, now: number): VerifyResult | undefined {
    if (now > notAfter) return reject('endorsement-expired', `endorsement of key ${keyId} expired at ${new Date(notAfter).toISOString()}`);
    const skew = now - iat;
    if (skew > maxSkewMs) return reject('stale', `advert from key ${keyId} issued ${skew} ms ago (limit ${maxSkewMs})`);
    if (-skew > maxSkewMs) return reject('future', `advert from key ${keyId} issued ${-skew} ms in the future (limit ${maxSkewMs})`);
    const last = lastSeq.get(keyId);
    if (last !== undefined && seq <= last) return reject('replay', `seq ${seq} from key ${keyId}, last accepted ${last}`);
    return undefined;
  }

  /** Run for every datagram that verified: refusedNow, then accepted (its sequence number remembered). */
  function current({ keyId, payload, endorsement, pinned }: Verified, now: number): VerifyResult {
    const refused = refusedNow(keyId, { seq: payload.seq, iat: payload.iat, notAfter: endorsement?.notAfter ?? Infinity }, now);
    if (refused !== undefined) return refused;
    const last = lastSeq.get(keyId);
    if (last === undefined && lastSeq.size >= maxTrackedKeys) lastSeq.delete(lastSeq.keys().next().value!);
    lastSeq.set(keyId, payload.seq);

    counts.accepted++;
    return endorsement ? { ok: true, payload, keyId, endorsed: true, bound: true, endorsementNotAfter: endorsement.notAfter } : { ok: true, payload, keyId, endorsed: false, bound: pinned };
  }

  return {
    verify,
    counters: () => ({ ...counts }),
    trustsKey: (keyId) => direct.has(keyId),
    setTrust(trust) {
      const nextDirect = trust.trustedKeys ? parseTrustedKeys(trust.trustedKeys) : direct;
      const nextRoots = trust.rootKeys ? parseRootKeys(trust.rootKeys) : roots;
      direct = nextDirect;
      roots = nextRoots;
      endorsements.clear();
      endorsedKeys.clear();
      badEndorsements.clear();
      repeats.clear();
    },
  };
}
