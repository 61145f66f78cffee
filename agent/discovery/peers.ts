/**
 * The peer table: what this agent currently believes about its fleet. Fed only with adverts
 * the verifier accepted; entries leave on a signed goodbye or when their TTL passes without a
 * newer advert. The clock is injected, so expiry and cool-downs are testable without waiting.
 *
 * Expiry is measured from when the advert was RECEIVED (local clock) plus its ttl, not from
 * its iat: the verifier already bounds |iat − now| by maxSkewMs, and a ttl (6 s by default)
 * shorter than the skew window (30 s) would otherwise expire a peer whose clock is a few
 * seconds behind before its next advert arrives.
 *
 * A peer that presented another identity than it advertised is marked untrusted until a
 * deadline (`markUntrusted`), even if it keeps advertising; `list()` shows the remaining
 * cool-down (coolDownMs), and callers skip it while that is above zero. Choosing among peers
 * and cooling down peers that keep failing is the caller's: the one implementation is
 * client/pool.ts (PeerPool), which `skein dispatch --discover` runs over this list.
 *
 * @example
 *   const peers = new PeerTable({ now: Date.now });
 *   if (r.ok) peers.upsert(r.payload, r.keyId, rinfo.address);
 *   setTimeout(function tick() { peers.expire(); … }, peers.nextExpiry() - Date.now());
 *   const usable = peers.list().filter((p) => p.coolDownMs === 0);
 */
import type { AdvertPayload } from './advert.ts';
import { recordDigest, type HeartbeatPayload } from './heartbeat.ts';

export interface PeerTableOptions {
  now: () => number;
  /** Most peers held; adverts of further agents are ignored (default 16,384). */
  maxPeers?: number;
}

export interface PeerInfo {
  agent: string;
  spiffe: string;
  keyId: string;
  endpoints: string[];
  routines: string[];
  load: number;
  capacity: number;
  tlsFingerprint: string;
  seq: number;
  /** Address the last accepted advert came from. */
  source: string;
  /** Time since the last accepted advert. */
  ageMs: number;
  /** Time left before the peer expires without a newer advert. */
  expiresInMs: number;
  /** Time left in an untrusted cool-down (markUntrusted); 0 when the peer may be used. */
  coolDownMs: number;
  /** Why it is cooling down (e.g. what its failed identity check found); only while coolDownMs > 0. */
  coolDownReason?: string;
}

export type UpsertResult = 'added' | 'updated' | 'rekeyed' | 'removed' | 'ignored' | 'conflict';

/**
 * One peer, in one object: what its record says (set when the record arrives, never changed
 * here; a resent identical record keeps it — routine names shared among entries), then what
 * each advert of that record changes. Nothing else of the advert is kept (its fleet id,
 * issued-at, "want" list): a fleet of 1,000 holds 1,000 of these.
 */
interface Entry extends Pick<AdvertPayload, 'spiffe' | 'endpoints' | 'routines' | 'capacity' | 'tlsFingerprint'> {
  /** Sequence number and load of the newest advert applied (the record's, or a later heartbeat's). */
  seq: number;
  load: number;
  keyId: string;
  /** Trusted through an endorsement (not the trust store's key list). */
  endorsed: boolean;
  source: string;
  receivedAt: number;
  expiresAt: number;
  /** recordDigest of the payload: heartbeats naming another digest refer to a record we missed. */
  digest: string;
}

/** Distinct routine names shared among entries (further ones are kept as they came). */
const MAX_NAMES = 4096;

export class PeerTable {
  private readonly peers = new Map<string, Entry>();
  /**
   * One string per routine name, however many peers carry it: a fleet's agents
   * mostly offer the same routines, and each record decodes its own copies (~40 bytes each).
   */
  private readonly names = new Map<string, string>();
  /** agent → end of its cool-down (kept across re-adverts, dropped once passed). */
  private readonly coolDowns = new Map<string, { until: number; reason?: string }>();
  private readonly now: () => number;
  private readonly maxPeers: number;

  constructor(options: PeerTableOptions) {
    this.now = options.now;
    this.maxPeers = options.maxPeers ?? 16_384;
  }

  get size(): number {
    return this.peers.size;
  }

  /**
   * Records a verified advert. An entry belongs to the key that created it: only that key
   * refreshes it or removes it with a goodbye, so another trusted key cannot take over or
   * evict a live agent ('conflict'). The exception is signing-key rotation: a key `bound` to
   * the entry's exact SPIFFE ID (endorsed for it, or pinned to it in the trust store) takes
   * the entry over at once ('rekeyed') with a higher sequence number, so a rotating agent
   * never drops out of its peers' tables; a replayed advert of the old key (lower sequence)
   * cannot take it back. Otherwise a new key takes over a name once the old entry expired or
   * said goodbye. An advert from the owning key with a sequence number not above the entry's
   * is ignored.
   */
  upsert(payload: AdvertPayload, keyId: string, sourceAddress: string, trust: { bound?: boolean; endorsed?: boolean } = {}): UpsertResult {
    const now = this.now();
    let current = this.peers.get(payload.agent);
    if (current && current.expiresAt <= now) {
      this.peers.delete(payload.agent);
      current = undefined;
    }
    let rekeyed = false;
    if (current && current.keyId !== keyId) {
      if (!trust.bound || payload.goodbye || payload.spiffe !== current.spiffe || payload.seq <= current.seq) return 'conflict';
      rekeyed = true;
    }
    if (payload.goodbye) {
      if (!current) return 'ignored';
      this.peers.delete(payload.agent);
      return 'removed';
    }
    if (current && payload.seq <= current.seq) return 'ignored';
    if (!current && this.peers.size >= this.maxPeers) {
      this.expire();
      if (this.peers.size >= this.maxPeers) return 'ignored';
    }
    const digest = recordDigest(payload);
    if (current && !rekeyed && current.digest === digest) {
      // The record it already holds, resent (every tenth advert, or asked for): refreshed in
      // place like a heartbeat, keeping the record object it has. What the digest covers is
      // equal; sequence number, load and expiry are the new advert's.
      this.refresh(current, payload, sourceAddress, now);
      current.endorsed = trust.endorsed ?? false;
      return 'updated';
    }
    this.peers.set(payload.agent, {
      spiffe: payload.spiffe,
      endpoints: payload.endpoints,
      routines: payload.routines.map((r) => this.name(r)),
      capacity: payload.capacity,
      tlsFingerprint: payload.tlsFingerprint,
      seq: payload.seq,
      load: payload.load,
      keyId,
      endorsed: trust.endorsed ?? false,
      source: sourceAddress,
      receivedAt: now,
      expiresAt: now + payload.ttl,
      digest,
    });
    return rekeyed ? 'rekeyed' : current ? 'updated' : 'added';
  }

  /**
   * Applies a verified heartbeat (wire version 2): it refreshes the entry its key owns and
   * updates its load and sequence number — but only when the entry's record is the one the
   * heartbeat names (same digest). 'unknown' means this table lacks that record (never had
   * it, it expired, or a change was missed): the caller asks the sender for it. A heartbeat
   * never creates, takes over or changes the identity of an entry.
   */
  heartbeat(hb: HeartbeatPayload, keyId: string, sourceAddress: string): 'refreshed' | 'unknown' | 'ignored' {
    const now = this.now();
    const current = this.peers.get(hb.agent);
    if (!current || current.expiresAt <= now) return 'unknown';
    if (current.keyId !== keyId) return 'ignored';
    if (hb.seq <= current.seq) return 'ignored';
    if (current.digest !== hb.rd) return 'unknown';
    // In place, without copying the record: one heartbeat per peer every few seconds is most
    // of what a large fleet's agent receives.
    this.refresh(current, hb, sourceAddress, now);
    return 'refreshed';
  }

  private name(s: string): string {
    const held = this.names.get(s);
    if (held !== undefined) return held;
    if (this.names.size < MAX_NAMES) this.names.set(s, s);
    return s;
  }

  /**
   * Applies what every advert of an entry's current record changes: sequence number, load,
   * source and expiry (its ttl). Nothing of the advert is kept: the source address, a fresh
   * string per datagram, replaces the held one only when it differs, so a steady fleet's
   * adverts leave no garbage behind to outlive a young-generation collection.
   */
  private refresh(e: Entry, advert: { seq: number; load: number; ttl: number }, sourceAddress: string, now: number): void {
    e.seq = advert.seq;
    e.load = advert.load;
    if (e.source !== sourceAddress) e.source = sourceAddress;
    e.receivedAt = now;
    e.expiresAt = now + advert.ttl;
  }

  /**
   * Drops the entries whose signing key is no longer trusted after a trust-store reload
   * (`stillTrusted` answers for keys of the trust store's list; endorsed entries are kept
   * and re-checked by the verifier on their next advert). Returns the dropped agents.
   */
  dropUntrusted(stillTrusted: (keyId: string) => boolean): string[] {
    const dropped: string[] = [];
    for (const [agent, e] of this.peers) {
      if (e.endorsed || stillTrusted(e.keyId)) continue;
      this.peers.delete(agent);
      dropped.push(agent);
    }
    return dropped;
  }

  /** Removes a peer (e.g. when its goodbye arrives through another path). */
  remove(agent: string): boolean {
    return this.peers.delete(agent);
  }

  /** Removes peers whose ttl has passed and cool-downs that are over; returns the removed agents. */
  expire(): string[] {
    const now = this.now();
    const removed: string[] = [];
    for (const [agent, e] of this.peers) {
      if (e.expiresAt <= now) {
        this.peers.delete(agent);
        removed.push(agent);
      }
    }
    for (const [agent, c] of this.coolDowns) if (c.until <= now) this.coolDowns.delete(agent);
    return removed;
  }

  /** When the next peer expires (unix ms, the injected clock's), or undefined with no peers. */
  nextExpiry(): number | undefined {
    let next: number | undefined;
    for (const e of this.peers.values()) if (next === undefined || e.expiresAt < next) next = e.expiresAt;
    return next;
  }

  private info(agent: string, e: Entry, now: number): PeerInfo {
    const cool = this.coolDowns.get(agent);
    const cooling = cool !== undefined && cool.until > now;
    return {
      agent,
      spiffe: e.spiffe,
      keyId: e.keyId,
      endpoints: [...e.endpoints],
      routines: [...e.routines],
      load: e.load,
      capacity: e.capacity,
      tlsFingerprint: e.tlsFingerprint,
      seq: e.seq,
      source: e.source,
      ageMs: Math.max(0, now - e.receivedAt),
      expiresInMs: Math.max(0, e.expiresAt - now),
      coolDownMs: cooling ? cool.until - now : 0,
      ...(cooling && cool.reason ? { coolDownReason: cool.reason } : {}),
    };
  }

  /** One peer, if present and not expired. */
  get(agent: string): PeerInfo | undefined {
    const now = this.now();
    const e = this.peers.get(agent);
    return e && e.expiresAt > now ? this.info(agent, e, now) : undefined;
  }

  /** Every unexpired peer (cooling-down ones included, with coolDownMs > 0), by agent name. */
  list(): PeerInfo[] {
    const now = this.now();
    const out: PeerInfo[] = [];
    for (const [agent, e] of this.peers) if (e.expiresAt > now) out.push(this.info(agent, e, now));
    return out.sort((a, b) => (a.agent < b.agent ? -1 : a.agent > b.agent ? 1 : 0));
  }

  /**
   * Shows `agent` as cooling down (coolDownMs > 0) until `untilMs` (the injected clock's unix
   * ms), e.g. after it presented another certificate than it advertised. A later deadline
   * extends it; an earlier one never shortens it.
   */
  markUntrusted(agent: string, untilMs: number, reason?: string): void {
    const current = this.coolDowns.get(agent);
    if (current === undefined || untilMs > current.until) this.coolDowns.set(agent, { until: untilMs, ...(reason ? { reason } : {}) });
  }
}
