/**
 * Advertising: this agent's signed advertisement, sent at once on start, then every
 * intervalMs ± 20 % (sooner when the load moved), at once after a key or certificate
 * rotation, and as a signed goodbye on stop.
 */
import type { KeyPair } from '../../signing/index.ts';
import { encodeAdvert, nextSeq, type AdvertPayload } from './advert.ts';
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
  intervalMs: number;
  key: KeyPair;
  endorsement: Uint8Array | null;
  send: (bytes: Uint8Array) => Promise<void>;
  report: DiscoveryReport;
  now: () => number;
}

export class Advertiser {
  #o: AdvertiserOptions;
  #seq: number | undefined;
  #lastLoad = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

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

  /** Sends the first advertisement (a payload that cannot be advertised, say too big, throws) and starts the schedule. */
  async start(): Promise<void> {
    await this.#send();
    this.#schedule();
  }

  /** Stops the schedule; what was sent stays sent. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
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
        await this.#send(true);
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

  /** Advertises now, off the schedule; a failed send is warned about (rate-limited). */
  now(): void {
    if (this.#stopped) return;
    this.#send().catch((err) => this.#o.report.warn('send', 'discovery advertisement not sent', { error: (err as Error).message }));
  }

  #payload(goodbye: boolean): AdvertPayload {
    const { self, fleet, ttlMs, now } = this.#o;
    this.#seq = nextSeq(this.#seq, now());
    return {
      v: 1,
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
      ...(goodbye ? { goodbye: true as const } : {}),
    };
  }

  async #send(goodbye = false): Promise<void> {
    const payload = this.#payload(goodbye);
    this.#lastLoad = payload.load;
    await this.#o.send(encodeAdvert(payload, this.#o.key, this.#o.endorsement));
  }

  /**
   * The next advertisement: after intervalMs ± 20 %, or sooner — checked every quarter
   * interval — when the load moved by a quarter of the capacity (at least one call) since the
   * last one, so peers route by a current picture without an advert per call.
   */
  #schedule(): void {
    if (this.#stopped) return;
    const { intervalMs: interval, now } = this.#o;
    const due = now() + interval + interval * 0.2 * (Math.random() * 2 - 1);
    const tick = () => {
      if (this.#stopped) return;
      const { load, capacity } = this.#o.self;
      const moved = Math.abs(load() - this.#lastLoad) >= Math.max(1, capacity / 4);
      if (now() >= due || moved) {
        this.now();
        this.#schedule();
        return;
      }
      this.#timer = setTimeout(tick, Math.min(interval / 4, Math.max(0, due - now())));
      this.#timer.unref?.();
    };
    this.#timer = setTimeout(tick, Math.min(interval / 4, Math.max(0, due - now())));
    this.#timer.unref?.();
  }
}
