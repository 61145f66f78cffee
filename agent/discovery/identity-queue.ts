/**
 * Paces the identity checks of newly discovered peers. Each check is a TCP connection and a TLS
 * handshake, and each new peer on the segment a new neighbour (ARP/NDP) entry on this host: an
 * agent meeting 2,000 peers at once used to dial them all at once, overflowing the kernel's
 * neighbour table (1,024 entries by default) so that 95 % of its sends failed with ENOBUFS.
 * Here at most `concurrency` checks run at once and at most `perSecond` start per second, in
 * the order peers were met (one place per peer: meeting it again while it waits does not move
 * it or add a second check). Peers are listed (and usable, pinned on connect) meanwhile; the
 * check only decides whether one is put on a cool-down.
 *
 * @example
 *   const q = new IdentityCheckQueue({ concurrency: 8, perSecond: 10, now: Date.now });
 *   q.enqueue('edge-17', () => checkPeerIdentity(...).then(record));
 */
import { LruMap } from './bounded.ts';

export interface IdentityCheckQueueOptions {
  /** Checks in flight at once. */
  concurrency: number;
  /** Checks started per second (a token bucket holding `concurrency`). */
  perSecond: number;
  now: () => number;
  /** Peers waiting at once; further ones are refused (enqueue returns false) until there is room (default 16,384). */
  maxQueued?: number;
}

export class IdentityCheckQueue {
  #o: Required<IdentityCheckQueueOptions>;
  /** Insertion order is the order peers were met: the queue is a FIFO of one entry per peer. */
  #waiting: LruMap<string, () => Promise<void>>;
  #running = 0;
  #tokens: number;
  #last: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(opts: IdentityCheckQueueOptions) {
    this.#o = { maxQueued: 16_384, ...opts };
    this.#waiting = new LruMap(this.#o.maxQueued);
    this.#tokens = opts.concurrency;
    this.#last = opts.now();
  }

  /** Checks waiting for their turn. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** Checks in flight. */
  get running(): number {
    return this.#running;
  }

  /** Queues `check` for peer `key` unless one is already waiting; false when the queue is full. */
  enqueue(key: string, check: () => Promise<void>): boolean {
    if (this.#stopped) return false;
    if (this.#waiting.peek(key) === undefined) {
      if (this.#waiting.size >= this.#o.maxQueued) return false;
      this.#waiting.set(key, check);
    }
    this.#pump();
    return true;
  }

  /** Forgets a waiting check (the peer left before its turn). */
  cancel(key: string): void {
    this.#waiting.delete(key);
  }

  /** Drops what waits and starts nothing more; checks in flight finish on their own. */
  stop(): void {
    this.#stopped = true;
    this.#waiting.clear();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #pump(): void {
    if (this.#stopped || this.#timer) return;
    const { concurrency, perSecond, now } = this.#o;
    const t = now();
    this.#tokens = Math.min(concurrency, this.#tokens + ((t - this.#last) * perSecond) / 1000);
    this.#last = t;
    while (this.#running < concurrency && this.#tokens >= 1 && this.#waiting.size > 0) {
      const [key, check] = this.#waiting.entries().next().value!;
      this.#waiting.delete(key);
      this.#tokens -= 1;
      this.#running++;
      void check()
        .catch(() => undefined)
        .finally(() => {
          this.#running--;
          this.#pump();
        });
    }
    // Out of tokens with work waiting: come back when the next token is due (a finishing check
    // pumps again on its own when it is concurrency that ran out).
    if (this.#waiting.size > 0 && this.#tokens < 1 && this.#running < concurrency) {
      this.#timer = setTimeout(
        () => {
          this.#timer = undefined;
          this.#pump();
        },
        Math.ceil(((1 - this.#tokens) * 1000) / perSecond),
      );
      this.#timer.unref?.();
    }
  }
}
