/**
 * Discovery advertisements: the payload an agent announces and the datagram that carries it.
 *
 * ## Wire format, version 1 (one UDP datagram, at most 1,200 bytes; version 2: heartbeat.ts)
 *
 * Everything is canonical CBOR (signing/canonical.ts: RFC 8949 §4.2.1 deterministic encoding,
 * shortest integer heads, definite lengths, map keys sorted bytewise by their encoding, no
 * tags, no floats in adverts). There is exactly one valid encoding of each advertisement, so
 * changing any byte of a datagram makes it invalid.
 *
 *   datagram     = [ 1, fleet, envelope, endorsement ]        ; CBOR array of 4
 *     0x84                      array(4)
 *     0x01                      frame version 1 (uint)
 *     text                      fleet id, 1–64 of A-Z a-z 0-9 _ . - (repeated outside the
 *                               signature so receivers drop other fleets before any crypto)
 *     bytes                     envelope (below), as a CBOR byte string
 *     bytes / 0xf6              endorsement (endorse.ts) as a byte string, or null
 *
 *   envelope     = signing/envelope.ts with context "skein-advert-v1":
 *     0x85                      array(5)
 *     0x01                      envelope version 1
 *     0x6f "skein-advert-v1"    context (text(15)): domain separation
 *     0x70 <16 hex chars>       key id of the signing key (text(16)): first 8 bytes of
 *                               SHA-256(raw 32-byte Ed25519 public key), lower-case hex
 *     bytes                     payloadBytes: canonical CBOR of the payload map
 *     0x58 0x40 <64 bytes>      Ed25519 signature (RFC 8032, pure) over the canonical CBOR of
 *                               [ "skein-advert-v1", keyId, payloadBytes ]
 *                               i.e. 0x83 0x6f "skein-advert-v1" 0x70 keyId <bytes head> payloadBytes
 *
 *   payload      = map, keys in canonical order (shorter key first, then bytewise):
 *     "v"              1
 *     "iat"            uint: issued-at, unix milliseconds
 *     "seq"            uint: sequence number, strictly increasing per signing key; senders
 *                      start it from the clock (nextSeq) so a restart never goes backwards
 *     "ttl"            uint: milliseconds receivers keep the peer without a newer advert
 *                      (1 … 3,600,000)
 *     "load"           uint: calls in flight
 *     "agent"          text: agent name (A-Z a-z 0-9 _ . -, starting with a letter or _, ≤ 64)
 *     "fleet"          text: fleet id, must equal the frame's
 *     "spiffe"         text: SPIFFE ID of the agent's TLS certificate (spiffe://domain/path)
 *     "goodbye"        true, only in the signed goodbye sent on shutdown (key absent otherwise)
 *     "capacity"       uint: workers
 *     "routines"       array of text: routine names offered (≤ 128, unique)
 *     "endpoints"      array of text: "1.2.3.4:7443", "[::1]:7443" or "host.name:7443" (1 … 16)
 *     "tlsFingerprint" text: lower-case hex SHA-256 of the agent's TLS certificate (DER)
 *   Receivers ignore payload keys they do not know (forward compatibility inside version 1)
 *   and refuse a payload whose "v" is not 1 (unsupported-version).
 *
 * Sizes: the envelope is the payload + 103 bytes (104 once the payload reaches 256 bytes);
 * the frame adds 2 + (1 + fleet length) + 3, plus 1 for a null endorsement or the endorsement
 * + 2 (an endorsement with a 29-character SPIFFE ID is 207 bytes). Two endpoints and four
 * routines: payload 265 bytes, datagram 380 bytes, 588 with an endorsement.
 *
 * encodeAdvert refuses (throws) to build a datagram over 1,200 bytes; receivers count one as
 * "oversize" before decoding anything.
 *
 * ## Byte-level example (test/discovery/advert.test.ts pins it as a golden vector)
 *
 * Key: Ed25519 seed 07 × 32 → public key ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c,
 * key id fe812c12f3ab4ce6. Payload: fleet "prod", agent "a1", spiffe://skein.local/agent/a1,
 * endpoints ["127.0.0.1:7443"], routines ["echo"], load 1, capacity 4, tlsFingerprint "ab"×32,
 * seq 1, iat 1800000000000, ttl 6000. 339 bytes:
 *
 *   off  bytes                                   meaning
 *     0  84                                      array(4): the frame
 *     1  01                                      frame version 1
 *     2  64 70726f64                             text(4) "prod"
 *     7  59 0148                                 bytes(328): the envelope
 *    10    85                                    array(5)
 *    11    01                                    envelope version 1
 *    12    6f 736b65696e2d6164766572742d7631     text(15) "skein-advert-v1"
 *    28    70 66653831326331326633616234636536   text(16) "fe812c12f3ab4ce6"
 *    45    58 e1                                 bytes(225): the payload
 *    47      ac                                  map(12)
 *            61 76  01                           "v": 1
 *            63 696174  1b 000001a3185c5000      "iat": 1800000000000
 *            63 736571  01                       "seq": 1
 *            63 74746c  19 1770                  "ttl": 6000
 *            64 6c6f6164  01                     "load": 1
 *            65 6167656e74  62 6131              "agent": "a1"
 *            65 666c656574  64 70726f64          "fleet": "prod"
 *            66 737069666665  78 1d 7370…6131    "spiffe": "spiffe://skein.local/agent/a1"
 *            68 6361706163697479  04             "capacity": 4
 *            68 726f7574696e6573  81 64 6563686f "routines": ["echo"]
 *            69 656e64706f696e7473  81 6e 3132…  "endpoints": ["127.0.0.1:7443"]
 *            6e 746c7346696e6765727072696e74  78 40 6162…6162   "tlsFingerprint": "abab…ab"
 *   272    58 40                                 bytes(64): the signature
 *   274    3591501707d162eeb538db39df64ed147b3576a7cbe36a26bb1832b8c96cba06
 *          fe798574323ba2d384600223ec2c0b12e9cbb9a75ca8f7227e8caf036c53af07
 *   338  f6                                      null: no endorsement
 *
 * The signature is Ed25519 over 83 ‖ bytes 12…271 of the datagram (the envelope from its
 * context to the end of its payload): canonical CBOR ["skein-advert-v1", keyId, payloadBytes].
 *
 * @example
 *   const bytes = encodeAdvert({ v: 1, fleet: 'prod', agent: 'a1', spiffe: 'spiffe://skein.local/agent/a1',
 *     endpoints: ['127.0.0.1:7443'], routines: ['echo'], load: 0, capacity: 4,
 *     tlsFingerprint: sha256hex(certDer), seq: nextSeq(prev, Date.now()), iat: Date.now(), ttl: 6000 }, key, endorsement);
 */
import { isIPv4, isIPv6 } from 'node:net';
import { SkeinError } from '../../common/errors/index.ts';
import { FLEET_HINT, FLEET_PATTERN, NAME_HINT, NAME_PATTERN } from '../../common/names/index.ts';
import { parseSpiffeId } from '../../common/spiffe/index.ts';
import { encodeCanonical, sign, type SigningKey } from '../../signing/index.ts';
import { checkWant } from './heartbeat.ts';

/** Domain-separation context of advertisement envelopes. */
export const ADVERT_CONTEXT = 'skein-advert-v1';
/** Version of the outer frame [1, fleet, envelope, endorsement]. */
export const ADVERT_FRAME_VERSION = 1;
/** Wire version 2 (heartbeat.ts): its frame version, payload "v" and signing context. */
export const WIRE_VERSION_2 = 2;
export const ADVERT_CONTEXT_V2 = 'skein-advert-v2';
/** Most key ids one version 2 record may ask for ("want"). */
export const MAX_WANT = 32;
/** Version of the signed payload ("v"). */
export const ADVERT_PAYLOAD_VERSION = 1;
/** One datagram that crosses any sane path without fragmentation (IPv6 minimum MTU 1280). */
export const MAX_ADVERT_BYTES = 1200;
export const MAX_ENDPOINTS = 16;
export const MAX_ROUTINES = 128;
export const MAX_TTL_MS = 3_600_000;
/** Limits for the signed payload: a map holding two arrays; nothing deeper. */
export const PAYLOAD_LIMITS = Object.freeze({ maxDepth: 2, maxItems: 14 + MAX_ENDPOINTS + MAX_ROUTINES + MAX_WANT + 16 });

export interface AdvertPayload {
  /** 1, or 2 for a wire version 2 record (heartbeat.ts). */
  v: 1 | 2;
  fleet: string;
  agent: string;
  spiffe: string;
  endpoints: string[];
  routines: string[];
  load: number;
  capacity: number;
  tlsFingerprint: string;
  seq: number;
  iat: number;
  ttl: number;
  goodbye?: true;
  /** Version 2 only: key ids whose records the sender asks for; empty = everyone's (heartbeat.ts). */
  want?: string[];
}

/** What every listed peer carries, however it was found (advert, DNS record, static config): GET /v1/peers. */
export type PeerFields = Pick<AdvertPayload, 'agent' | 'spiffe' | 'endpoints' | 'routines' | 'load' | 'capacity' | 'tlsFingerprint'>;

const FINGERPRINT_PATTERN = /^[0-9a-f]{64}$/;
const MAX_SPIFFE_LENGTH = 512;
const ENDPOINT_PATTERN = /^(?:\[([0-9A-Fa-f:.]{2,45})\]|([A-Za-z0-9.-]{1,253})):([1-9][0-9]{0,4})$/;
const DNS_LABELS = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const MAX_COUNT = 1_000_000_000;

/**
 * True for a SPIFFE ID an advertisement may carry: a workload ID as common/spiffe/index.ts
 * parses it (the one parser), at most MAX_SPIFFE_LENGTH bytes (an advertisement is small).
 *
 * @example
 *   isValidSpiffeId('spiffe://skein.local/agent/a1') // true
 */
export function isValidSpiffeId(id: unknown): id is string {
  return typeof id === 'string' && id.length <= MAX_SPIFFE_LENGTH && parseSpiffeId(id).ok;
}

/** The trust domain of a valid SPIFFE ID. */
export function spiffeTrustDomain(id: string): string {
  const parsed = parseSpiffeId(id);
  if (!parsed.ok) throw new TypeError(`not a SPIFFE ID: ${id}`);
  return parsed.trustDomain;
}

/**
 * True for "a.b.c.d:port", "[v6]:port" or "dns.name:port" (port 1–65535).
 *
 * @example
 *   isValidEndpoint('[::1]:7443') // true
 */
export function isValidEndpoint(endpoint: unknown): endpoint is string {
  if (typeof endpoint !== 'string') return false;
  const m = ENDPOINT_PATTERN.exec(endpoint);
  if (!m || Number(m[3]) > 65535) return false;
  if (m[1] !== undefined) return isIPv6(m[1]);
  const host = m[2]!;
  // All-digit-and-dot names must be real IPv4 addresses ("1.2.3" or "999.1.1.1" are refused).
  if (/^[0-9.]+$/.test(host)) return isIPv4(host);
  return DNS_LABELS.test(host);
}

function isCount(v: unknown, max = MAX_COUNT): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
}

function stringList(v: unknown, what: string, min: number, max: number, valid: (s: unknown) => boolean): string | undefined {
  if (!Array.isArray(v)) return `${what} must be an array`;
  if (v.length < min || v.length > max) return `${what} must hold ${min}–${max} entries, got ${v.length}`;
  for (let i = 0; i < v.length; i++) {
    if (!valid(v[i])) return `${what}[${i}] is not valid: ${JSON.stringify(v[i])?.slice(0, 80)}`;
    for (let j = 0; j < i; j++) if (v[j] === v[i]) return `${what} holds ${JSON.stringify(v[i])} twice`;
  }
  return undefined;
}

/**
 * Checks an advertisement payload and returns a fresh object holding only the known fields,
 * or a message saying what is wrong. `{ version: true }` in the answer's place means "v" is
 * not 1 (a newer sender), which receivers count separately.
 *
 * @example
 *   const p = checkAdvertPayload(decoded);
 *   if (typeof p === 'string') drop('malformed', p);
 */
export function checkAdvertPayload(value: unknown): AdvertPayload | string | { version: unknown } {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) return 'payload must be a map';
  const p = value as Record<string, unknown>;
  if (p.v !== ADVERT_PAYLOAD_VERSION && p.v !== WIRE_VERSION_2) return typeof p.v === 'number' || typeof p.v === 'bigint' ? { version: p.v } : 'v must be 1 or 2';
  if (typeof p.fleet !== 'string' || !FLEET_PATTERN.test(p.fleet)) return `fleet must be ${FLEET_HINT}`;
  if (typeof p.agent !== 'string' || !NAME_PATTERN.test(p.agent)) return `agent must be ${NAME_HINT}`;
  if (!isValidSpiffeId(p.spiffe)) return 'spiffe must be a SPIFFE ID spiffe://domain/path';
  const endpoints = stringList(p.endpoints, 'endpoints', 1, MAX_ENDPOINTS, isValidEndpoint);
  if (endpoints) return endpoints;
  const routines = stringList(p.routines, 'routines', 0, MAX_ROUTINES, (s) => typeof s === 'string' && NAME_PATTERN.test(s));
  if (routines) return routines;
  if (!isCount(p.load)) return 'load must be a non-negative integer';
  if (!isCount(p.capacity)) return 'capacity must be a non-negative integer';
  if (typeof p.tlsFingerprint !== 'string' || !FINGERPRINT_PATTERN.test(p.tlsFingerprint)) return 'tlsFingerprint must be 64 lower-case hex characters (SHA-256)';
  if (!isCount(p.seq, Number.MAX_SAFE_INTEGER)) return 'seq must be a non-negative integer';
  if (!isCount(p.iat, Number.MAX_SAFE_INTEGER)) return 'iat must be a non-negative integer (unix ms)';
  if (!isCount(p.ttl, MAX_TTL_MS) || p.ttl === 0) return `ttl must be an integer of 1–${MAX_TTL_MS} ms`;
  if (p.goodbye !== undefined && p.goodbye !== true) return 'goodbye must be true when present';
  if (p.want !== undefined && p.v !== WIRE_VERSION_2) return 'want is a version 2 field';
  const want = checkWant(p.want);
  if (want) return want;
  const out: AdvertPayload = {
    v: p.v,
    fleet: p.fleet,
    agent: p.agent,
    spiffe: p.spiffe,
    endpoints: p.endpoints as string[],
    routines: p.routines as string[],
    load: p.load,
    capacity: p.capacity,
    tlsFingerprint: p.tlsFingerprint,
    seq: p.seq,
    iat: p.iat,
    ttl: p.ttl,
  };
  if (p.goodbye === true) out.goodbye = true;
  if (p.want !== undefined) out.want = p.want as string[];
  return out;
}

/**
 * The next sequence number: one more than the previous, but never behind the clock, so an
 * agent that restarts (and forgets its counter) still sends numbers receivers have not seen.
 *
 * @example
 *   seq = nextSeq(seq, Date.now());
 */
export function nextSeq(previous: number | undefined, nowMs: number): number {
  return Math.max((previous ?? -1) + 1, Math.floor(nowMs));
}

/**
 * Signs `payload` with `key` and frames it, with the fleet root's endorsement of `key` when
 * the agent has one. Throws SKEIN_ERR_CONFIG when the payload is invalid or the datagram
 * would exceed 1,200 bytes (the message names the size: offer fewer routines or endpoints).
 *
 * @example
 *   socket.send(encodeAdvert(payload, agentKey, endorsementBytes), port, group);
 */
export function encodeAdvert(payload: AdvertPayload, key: SigningKey, endorsement?: Uint8Array | null): Uint8Array {
  const checked = checkAdvertPayload(payload);
  if (typeof checked === 'string') throw new SkeinError('SKEIN_ERR_CONFIG', `advertisement payload: ${checked}`);
  if (!('v' in checked)) throw new SkeinError('SKEIN_ERR_CONFIG', `advertisement payload: v must be ${ADVERT_PAYLOAD_VERSION} or ${WIRE_VERSION_2}`);
  if (endorsement != null && !(endorsement instanceof Uint8Array)) throw new SkeinError('SKEIN_ERR_CONFIG', 'endorsement must be bytes (skein key endorse)');
  // The frame and the signing context carry the payload's version: one wire version per datagram.
  const envelope = sign(checked, key, checked.v === WIRE_VERSION_2 ? ADVERT_CONTEXT_V2 : ADVERT_CONTEXT);
  const bytes = encodeCanonical([checked.v === WIRE_VERSION_2 ? WIRE_VERSION_2 : ADVERT_FRAME_VERSION, checked.fleet, envelope, endorsement ?? null]);
  if (bytes.length > MAX_ADVERT_BYTES) {
    throw new SkeinError(
      'SKEIN_ERR_CONFIG',
      `advertisement of agent ${checked.agent} is ${bytes.length} bytes, over the ${MAX_ADVERT_BYTES}-byte datagram limit ` +
        `(${checked.routines.length} routines, ${checked.endpoints.length} endpoints${endorsement ? ', with endorsement' : ''}): offer fewer routines or endpoints, or shorter names`,
      { size: bytes.length, maxBytes: MAX_ADVERT_BYTES },
    );
  }
  return bytes;
}
