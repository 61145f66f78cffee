/**
 * Advertising, within a fleet-wide budget (docs/discovery.md, "The budget").
 *
 * Wire version 2 (the default): the full signed record goes out at once on start (asking every
 * peer for theirs), on a change (signing key, certificate) and when a peer asks for it; in
 * between only a small signed heartbeat (load, sequence number, digest of the record), and a
 * full record instead of every RECORD_EVERY-th heartbeat so a record lost on the way is
 * repaired even if no one asks. Wire version 1 (discovery.wireVersion 1, for fleets still
 * running older agents): the full advert every time, as those agents expect.
 *
 * The interval stretches with the fleet, RTCP-style (RFC 3550 §6.2): every agent sees about
 * the same number of peers N, so if each sends its D-byte datagram every (N + 1) · D / B
 * seconds, all of them together send about B bytes/s to each host (B = budgetBytesPerSec).
 * It never drops below intervalMs (a small fleet), never rises above ttlMs / 3 (so a peer is
 * refreshed at least three times per TTL: two lost datagrams in a row never expire a live
 * agent, and a vanished one is still dropped within its TTL), and is jittered by ±20 % under
 * that ceiling so agents do not synchronise. Past the point where ttlMs / 3 binds, traffic
 * grows with the fleet again: a longer ttlMs buys a larger fleet within the budget.
 */
import type { KeyPair } from '../../signing/index.ts';
import { encodeAdvert, nextSeq, MAX_WANT, type AdvertPayload } from './advert.ts';
import { encodeHeartbeat, recordDigest } from './heartbeat.ts';
import type { DiscoveryReport } from './report.ts';

export interface SelfDescription {
  agent: string;
  spiffe: string;
  tlsFingerprint: string;
  endpoints: string[];
  routines: string[];
  capacity: number;
  load: () => number;
}

export interface AdvertiserOptions {
  self: SelfDescription;
  fleet: string;
  ttlMs: number;
  /** The shortest interval (a small fleet advertises this often). */
  intervalMs: number;
  key: KeyPair;
  endorsement: Uint8Array | null;
  send: (bytes: Uint8Array) => Promise<void>;
  report: DiscoveryReport;
  now: () => number;
  /** 2: records and heartbeats; 1: full adverts every time (older fleets). */
  wireVersion: 1 | 2;
  /** Advert bytes per second the whole fleet should send to each host in steady state. */
  budgetBytesPerSec: number;
  /** How many peers this agent sees now: its estimate of the fleet's size. */
  peerCount: () => number;
}

/** Every RECORD_EVERY-th scheduled advert is the full record (version 2). */
export const RECORD_EVERY = 10;
/** Key ids asked for are gathered this long, so a burst of unknown heartbeats yields one request. */
const WANT_GATHER_MS = 200;

/**
 * The advert interval for a fleet of `peers` others, each sending `bytes`-byte datagrams, within
 * `budget` bytes/s per host: between `minMs` and `ttlMs` / 3.
 *
 * @example
 *   advertInterval({ minMs: 2000, ttlMs: 10_000, peers: 999, bytes: 203, budget: 64_000 }) // 3172
 */
export function advertInterval(o: { minMs: number; ttlMs: number; peers: number; bytes: number; budget: number }): number {
  const share = ((o.peers + 1) * o.bytes * 1000) / o.budget;
  return Math.min(o.ttlMs / 3, Math.max(o.minMs, share));
}

export class Advertiser {
  #o: AdvertiserOptions;
  #seq: number | undefined;
  #lastLoad = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #ticks = 0;
  /** Size of the last scheduled datagram: what each interval costs the fleet's budget. */
  #lastBytes = 0;
  #lastRecordAt = -Infinity;
  #lastWantAt = -Infinity;
  #wanted = new Set<string>();
  #wantTimer: ReturnType<typeof setTimeout> | undefined;
  #replyTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(opts: AdvertiserOptions) {
    this.#o = { ...opts };
  }

  get self(): SelfDescription {
    return this.#o.self;
  }

  get key(): KeyPair {
    return this.#o.key;
  }

  get endorsed(): boolean {
    return this.#o.endorsement !== null;
  }

  /** The interval in force now (before jitter). */
  get intervalMs(): number {
    const { intervalMs, ttlMs, budgetBytesPerSec, peerCount } = this.#o;
    return advertInterval({ minMs: intervalMs, ttlMs, peers: peerCount(), bytes: this.#lastBytes, budget: budgetBytesPerSec });
  }

  /**
   * Sends the first advertisement (a payload that cannot be advertised, say too big, throws) and
   * starts the schedule. In version 2 it is the record, asking every peer for theirs.
   */
  async start(): Promise<void> {
    await this.#sendRecord({ want: this.#o.wireVersion === 2 ? [] : undefined });
    this.#schedule();
  }

  /** Stops the schedule; what was sent stays sent. */
  stop(): void {
    this.#stopped = true;
    for (const t of [this.#timer, this.#wantTimer, this.#replyTimer]) if (t) clearTimeout(t);
    this.#timer = this.#wantTimer = this.#replyTimer = undefined;
  }

  /**
   * The signed goodbye. UDP may drop a datagram, and closing the socket right after send()
   * resolved could drop it here: with `twice` it goes out twice, 20 ms apart (receivers
   * ignore the second).
   */
  async goodbye(twice: boolean): Promise<void> {
    this.stop();
    for (let i = 0; i < (twice ? 2 : 1); i++) {
      try {
        await this.#sendRecord({ goodbye: true });
      } catch (err) {
        this.#o.report.warn('goodbye', 'discovery goodbye not sent', { error: (err as Error).message });
      }
      if (twice) await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** A new signing key (and its endorsement); the caller advertises at once when it rotated. */
  setKey(key: KeyPair, endorsement: Uint8Array | null): void {
    this.#o.key = key;
    this.#o.endorsement = endorsement;
  }

  /** A rotated certificate: adverts carry its fingerprint (peers pin it). */
  setFingerprint(tlsFingerprint: string): void {
    this.#o.self = { ...this.#o.self, tlsFingerprint };
  }

  /** Sends the full record now, off the schedule (a change); a failed send is warned about (rate-limited). */
  now(): void {
    if (this.#stopped) return;
    this.#sendRecord().catch((err) => this.#o.report.warn('send', 'discovery advertisement not sent', { error: (err as Error).message }));
  }

  /**
   * A heartbeat named a record this agent lacks: asks that key for it, in a record of our own
   * (gathered for WANT_GATHER_MS, at most MAX_WANT keys, at most one request per intervalMs).
   */
  want(keyId: string): void {
    if (this.#stopped || this.#o.wireVersion !== 2) return;
    if (this.#wanted.size < MAX_WANT) this.#wanted.add(keyId);
    if (this.#wantTimer) return;
    const wait = Math.max(WANT_GATHER_MS, this.#lastWantAt + this.#o.intervalMs - this.#o.now());
    this.#wantTimer = setTimeout(() => {
      this.#wantTimer = undefined;
      const want = [...this.#wanted];
      this.#wanted.clear();
      this.#lastWantAt = this.#o.now();
      this.#sendRecord({ want }).catch((err) => this.#o.report.warn('send', 'discovery advertisement not sent', { error: (err as Error).message }));
    }, wait);
    this.#wantTimer.unref?.();
  }

  /**
   * A peer asked for our record: sent after a random delay, spread so that all the fleet's
   * answers to one newcomer arrive at about four times the steady budget, and only once for
   * all the requests of that spread (a record sent within it answers them all: it is multicast).
   */
  wanted(): void {
    if (this.#stopped || this.#replyTimer) return;
    const { ttlMs, budgetBytesPerSec, peerCount, now } = this.#o;
    const spread = Math.min(ttlMs / 3, Math.max(1000, ((peerCount() + 1) * Math.max(this.#lastBytes, 400) * 1000) / (4 * budgetBytesPerSec)));
    if (now() - this.#lastRecordAt < spread / 2) return;
    this.#replyTimer = setTimeout(() => {
      this.#replyTimer = undefined;
      this.now();
    }, Math.random() * spread);
    this.#replyTimer.unref?.();
  }

  #record(extra: { goodbye?: true; want?: string[] }): AdvertPayload {
    const { self, fleet, ttlMs, now, wireVersion } = this.#o;
    this.#seq = nextSeq(this.#seq, now());
    return {
      v: wireVersion,
      fleet,
      agent: self.agent,
      spiffe: self.spiffe,
      endpoints: self.endpoints,
      routines: self.routines,
      load: self.load(),
      capacity: self.capacity,
      tlsFingerprint: self.tlsFingerprint,
      seq: this.#seq,
      iat: now(),
      ttl: ttlMs,
      ...(extra.goodbye ? { goodbye: true as const } : {}),
      ...(extra.want !== undefined && wireVersion === 2 ? { want: extra.want } : {}),
    };
  }

  async #sendRecord(extra: { goodbye?: true; want?: string[] } = {}): Promise<number> {
    const payload = this.#record(extra);
    this.#lastLoad = payload.load;
    this.#lastRecordAt = this.#o.now();
    const bytes = encodeAdvert(payload, this.#o.key, this.#o.endorsement);
    await this.#o.send(bytes);
    return bytes.length;
  }

  async #sendHeartbeat(): Promise<number> {
    const { self, fleet, ttlMs, now, key } = this.#o;
    this.#seq = nextSeq(this.#seq, now());
    const load = self.load();
    this.#lastLoad = load;
    const rd = recordDigest({ spiffe: self.spiffe, endpoints: self.endpoints, routines: self.routines, capacity: self.capacity, tlsFingerprint: self.tlsFingerprint, ttl: ttlMs });
    const bytes = encodeHeartbeat({ v: 2, fleet, agent: self.agent, rd, load, seq: this.#seq, iat: now(), ttl: ttlMs }, key);
    await this.#o.send(bytes);
    return bytes.length;
  }

  /** The scheduled advert: a heartbeat (version 2), the record every RECORD_EVERY-th time or in version 1. */
  #tick(): void {
    this.#ticks++;
    const record = this.#o.wireVersion === 1 || this.#ticks % RECORD_EVERY === 0;
    (record ? this.#sendRecord() : this.#sendHeartbeat())
      .then((n) => {
        if (!record || this.#o.wireVersion === 1 || this.#lastBytes === 0) this.#lastBytes = n;
      })
      .catch((err) => this.#o.report.warn('send', 'discovery advertisement not sent', { error: (err as Error).message }));
  }

  /**
   * The next advertisement: after the budgeted interval (advertInterval) ± 20 %, never past
   * ttlMs / 3, or sooner — checked every quarter of intervalMs — when the load moved by a
   * quarter of the capacity (at least one call) since the last one, so peers route by a
   * current picture without an advert per call.
   */
  #schedule(): void {
    if (this.#stopped) return;
    const { intervalMs: minMs, ttlMs, now } = this.#o;
    const interval = this.intervalMs;
    const due = now() + Math.min(ttlMs / 3, interval + interval * 0.2 * (Math.random() * 2 - 1));
    const tick = () => {
      if (this.#stopped) return;
      const { load, capacity } = this.#o.self;
      const moved = Math.abs(load() - this.#lastLoad) >= Math.max(1, capacity / 4);
      if (now() >= due || moved) {
        this.#tick();
        this.#schedule();
        return;
      }
      this.#timer = setTimeout(tick, Math.min(minMs / 4, Math.max(0, due - now())));
      this.#timer.unref?.();
    };
    this.#timer = setTimeout(tick, Math.min(minMs / 4, Math.max(0, due - now())));
    this.#timer.unref?.();
  }
}
