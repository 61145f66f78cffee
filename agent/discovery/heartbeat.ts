/**
 * Wire version 2 (docs/discovery.md, "Wire version 2"): the full record — the version 1 payload
 * with "v": 2, optionally asking peers for theirs ("want") — is sent on start, on change and on
 * request; in between an agent sends only a small signed HEARTBEAT carrying what changes (load,
 * sequence number, issued-at, ttl) and a digest of its current record, so receivers notice a
 * record they missed and ask for it.
 *
 *   datagram   = [ 2, fleet, envelope, endorsement|null ]   ; heartbeats carry null
 *   envelope   = signing/envelope.ts with context "skein-advert-v2"
 *   heartbeat  = { "v": 2, "rd": text(16), "iat", "seq", "ttl", "load", "agent", "fleet" }
 *   record     = the version 1 payload with "v": 2, plus optionally
 *                "want": array of 0–32 key ids (text(16)): peers whose record the sender
 *                asks for; empty = every peer (sent by an agent that just started)
 *
 * "rd" is the first 8 bytes (hex) of SHA-256 over canonical CBOR of [spiffe, endpoints,
 * routines, capacity, tlsFingerprint, ttl] — everything of the record a heartbeat does not
 * repeat. The sequence number is one counter per signing key across records and heartbeats.
 *
 * @example
 *   const hb = encodeHeartbeat({ v: 2, fleet: 'prod', agent: 'a1', seq, iat: Date.now(), ttl: 6000, load: 0, rd: recordDigest(record) }, key);
 */
import { createHash } from 'node:crypto';
import { SkeinError } from '../../common/errors/index.ts';
import { FLEET_HINT, FLEET_PATTERN, NAME_HINT, NAME_PATTERN } from '../../common/names/index.ts';
import { encodeCanonical, sign, type SigningKey } from '../../signing/index.ts';
import { ADVERT_CONTEXT_V2, MAX_TTL_MS, MAX_WANT, WIRE_VERSION_2, type AdvertPayload } from './advert.ts';

export interface HeartbeatPayload {
  v: 2;
  fleet: string;
  agent: string;
  /** Digest of the sender's current record (recordDigest). */
  rd: string;
  load: number;
  seq: number;
  iat: number;
  ttl: number;
}

const DIGEST_PATTERN = /^[0-9a-f]{16}$/;
const MAX_COUNT = 1_000_000_000;
const isCount = (v: unknown, max = MAX_COUNT): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;

/**
 * The digest a heartbeat carries of its sender's record: what the record says that a
 * heartbeat does not repeat. Receivers compare it with the record they hold.
 *
 * @example
 *   recordDigest(payload) // 'a1b2c3d4e5f60718'
 */
export function recordDigest(p: Pick<AdvertPayload, 'spiffe' | 'endpoints' | 'routines' | 'capacity' | 'tlsFingerprint' | 'ttl'>): string {
  return createHash('sha256')
    .update(encodeCanonical([p.spiffe, p.endpoints, p.routines, p.capacity, p.tlsFingerprint, p.ttl]))
    .digest('hex')
    .slice(0, 16);
}

/** True when a decoded version 2 payload is a heartbeat (it carries a record digest). */
export function isHeartbeatShape(p: Record<string, unknown>): boolean {
  return 'rd' in p;
}

/** Checks a decoded heartbeat; a fresh object of the known fields, or what is wrong. */
export function checkHeartbeat(p: Record<string, unknown>): HeartbeatPayload | string {
  if (p.v !== WIRE_VERSION_2) return 'v must be 2';
  if (typeof p.fleet !== 'string' || !FLEET_PATTERN.test(p.fleet)) return `fleet must be ${FLEET_HINT}`;
  if (typeof p.agent !== 'string' || !NAME_PATTERN.test(p.agent)) return `agent must be ${NAME_HINT}`;
  if (typeof p.rd !== 'string' || !DIGEST_PATTERN.test(p.rd)) return 'rd must be 16 lower-case hex characters';
  if (!isCount(p.load)) return 'load must be a non-negative integer';
  if (!isCount(p.seq, Number.MAX_SAFE_INTEGER)) return 'seq must be a non-negative integer';
  if (!isCount(p.iat, Number.MAX_SAFE_INTEGER)) return 'iat must be a non-negative integer (unix ms)';
  if (!isCount(p.ttl, MAX_TTL_MS) || p.ttl === 0) return `ttl must be an integer of 1–${MAX_TTL_MS} ms`;
  return { v: 2, fleet: p.fleet, agent: p.agent, rd: p.rd, load: p.load, seq: p.seq, iat: p.iat, ttl: p.ttl };
}

/** Checks a record's "want" (absent, or 0–MAX_WANT distinct key ids); what is wrong, or undefined. */
export function checkWant(want: unknown): string | undefined {
  if (want === undefined) return undefined;
  if (!Array.isArray(want) || want.length > MAX_WANT) return `want must be an array of at most ${MAX_WANT} key ids`;
  for (const k of want) if (typeof k !== 'string' || !DIGEST_PATTERN.test(k)) return 'want holds something that is not a key id (16 lower-case hex characters)';
  return new Set(want).size === want.length ? undefined : 'want holds a key id twice';
}

/**
 * Signs and frames a heartbeat (never with an endorsement: receivers know the key from the
 * record that carried it). Throws SKEIN_ERR_CONFIG for an invalid payload.
 */
export function encodeHeartbeat(payload: HeartbeatPayload, key: SigningKey): Uint8Array {
  const checked = checkHeartbeat(payload as unknown as Record<string, unknown>);
  if (typeof checked === 'string') throw new SkeinError('SKEIN_ERR_CONFIG', `heartbeat payload: ${checked}`);
  return encodeCanonical([WIRE_VERSION_2, checked.fleet, sign(checked, key, ADVERT_CONTEXT_V2), null]);
}
