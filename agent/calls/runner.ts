/**
 * Runs the async calls of the results store: takes queued calls from the store and hands them
 * to the pool (a CallDispatcher), a bounded number at a time, and writes each outcome back.
 *
 * Order: the highest priority level first, where a level whose oldest queued call has waited
 * calls.agingMs counts as one level higher (twice that: two), so low priority is never
 * starved; within a level, owners take turns (round robin by caller key), and each owner's
 * calls run in submission order — one owner's backlog of 100 000 calls does not hold another
 * owner's call back by more than one turn.
 *
 * Bounded: at most `maxInFlight` async calls are with the pool at once (about one per worker,
 * never more than half of limits.queueSize), so the async backlog stays in the store and sync
 * callers keep finding room in the pool's queue.
 *
 * Durability (the store group-commits every write, group-commit.ts): a call is committed as
 * `running` before it is handed to the pool, so before any worker can see it — a crash then
 * finds it running and reports it interrupted (or runs it again if its routine is
 * idempotent), never runs it silently twice. Its outcome is committed before anything can
 * report it: long polls are woken after that commit, and GET reads committed rows only. A
 * write whose commit failed is retried every STORE_RETRY_MS, up to STORE_RETRIES times.
 *
 * Deadlines: a call's timeoutMs counts from when it starts running. A queued async call waits
 * in the store, where nothing expires it; the pool is given timeoutMs plus `queueSlackMs`
 * (limits.maxTimeoutMs) to cover its own queue, and the runner's own timer, started when the
 * call starts, enforces timeoutMs by cancelling it. A call the pool never started (it was full,
 * shutting down, or its queue deadline passed) goes back to waiting in the store.
 *
 * After a restart (start()): calls found `running` were cut off by the agent's death; they
 * become `interrupted`, or `queued` again for an idempotent routine. A routine no longer
 * configured fails its calls with SKEIN_ERR_UNKNOWN_ROUTINE.
 *
 * Lifecycle: close() stops taking calls from the store and resolves when the calls with the
 * pool have ended (the pool's drain bounds that; calls its drain cut off are recorded like a
 * crash of the agent would leave them); queued calls stay queued for the next start.
 * destroy() stops at once and writes nothing more: calls left running are found at the next
 * start.
 */
import type { Audit } from '../audit/index.ts';
import { toSkeinError } from '../../common/errors/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import type { Logger } from '../log/index.ts';
import { PRIORITIES, type CallDispatcher, type Priority } from '../workers/call.ts';
import type { CallError, CallStore, Outcome, RunnableCall, StoredCall } from './store.ts';

export interface RunnerOptions {
  store: CallStore;
  pool: CallDispatcher;
  /** The configured routine of this name (undefined: not configured), and whether it may run twice. */
  routine: (name: string) => { idempotent: boolean } | undefined;
  maxInFlight: number;
  agingMs: number;
  /** Time the pool may keep a call in its own queue before it starts (limits.maxTimeoutMs). */
  queueSlackMs: number;
  log: Logger;
  audit?: Audit;
}

/** About one async call per worker in flight, and never more than half the pool's queue. */
export function inFlightBound(workers: number, queueSize: number): number {
  return Math.max(1, Math.min(workers, Math.floor(queueSize / 2)));
}

/** Errors that mean the pool never ran the call: it waits in the store again. */
const NOT_RUN = new Set(['SKEIN_ERR_SHUTTING_DOWN', 'SKEIN_ERR_OVERLOADED', 'SKEIN_ERR_DEADLINE_EXCEEDED', 'SKEIN_ERR_ABORTED']);
/** How long the runner waits before offering calls again to a pool that refused one unrun. */
const REFUSED_BACKOFF_MS = 100;
/** After a failed commit: how long until the write is tried again, and how many times. */
const STORE_RETRY_MS = 1000;
const STORE_RETRIES = 30;

interface InFlight {
  call: RunnableCall;
  abort: AbortController;
  /** The pool has it (its `running` status is committed). */
  handedOff: boolean;
  /** A worker runs it. */
  started: boolean;
  timer?: ReturnType<typeof setTimeout>;
  /** Why the runner cancelled it: the caller's DELETE or the deadline. */
  cause?: 'cancel' | 'deadline';
}

export class CallRunner implements Component {
  #o: RunnerOptions;
  #inFlight = new Map<string, InFlight>();
  /** The owner served last, per level: round robin resumes after it. */
  #lastOwner: Record<Priority, string> = { high: '', normal: '', low: '' };
  #waiters = new Map<string, Set<() => void>>();
  #backoff: ReturnType<typeof setTimeout> | undefined;
  #drained: (() => void) | undefined;
  #life = new Lifecycle({ drain: () => this.#drain(), abort: () => this.#abort() });

  constructor(options: RunnerOptions) {
    this.#o = options;
  }

  /** Recovers what a previous run left running, then starts running queued calls. */
  start(): { requeued: number; interrupted: number } {
    const { requeued, interrupted } = this.#o.store.recover((r) => this.#o.routine(r)?.idempotent === true);
    if (requeued.length || interrupted.length) this.#o.log.info('async calls cut off by the last stop', { requeued: requeued.length, interrupted: interrupted.length });
    for (const id of interrupted) this.#ended(id, 'SKEIN_ERR_SHUTTING_DOWN', 'interrupted');
    this.#pump();
    return { requeued: requeued.length, interrupted: interrupted.length };
  }

  /** A call was just stored: run it when there is room. */
  submitted(): void {
    this.#pump();
  }

  /**
   * Cancels the call: a queued one never runs, a running one's worker is stopped. Resolves,
   * once the cancellation is committed, with the call as it is afterwards (its final status
   * if it had already ended).
   */
  async cancel(id: string): Promise<StoredCall | undefined> {
    const before = await this.#o.store.cancel(id);
    if (before) {
      const f = this.#inFlight.get(id);
      if (f?.handedOff) {
        f.cause = 'cancel';
        f.abort.abort();
      } else {
        // Queued, or its `running` still on its way to the disk: that write now finds it
        // cancelled and changes nothing, and the call is never handed to the pool.
        this.#ended(id, 'SKEIN_ERR_ABORTED', 'cancelled');
      }
      this.#wake(id);
    }
    return this.#o.store.get(id);
  }

  /**
   * Resolves when the call ends, after `ms`, when `signal` aborts or the runner closes —
   * whichever comes first. Woken by the outcome, never by polling.
   */
  wait(id: string, ms: number, signal?: AbortSignal): Promise<void> {
    if (ms <= 0 || this.#life.closed || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const set = this.#waiters.get(id) ?? new Set();
      this.#waiters.set(id, set);
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        set.delete(done);
        if (set.size === 0 && this.#waiters.get(id) === set) this.#waiters.delete(id);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  close(): Promise<void> {
    return this.#life.close();
  }

  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }

  #wake(id: string): void {
    const set = this.#waiters.get(id);
    if (set) for (const w of [...set]) w();
  }

  #wakeAll(): void {
    for (const id of [...this.#waiters.keys()]) this.#wake(id);
  }

  async #drain(): Promise<void> {
    clearTimeout(this.#backoff);
    this.#wakeAll();
    if (this.#inFlight.size > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
  }

  #abort(): void {
    clearTimeout(this.#backoff);
    this.#wakeAll();
    for (const f of this.#inFlight.values()) clearTimeout(f.timer);
    this.#inFlight.clear();
    this.#drained?.();
  }

  #pump(): void {
    if (this.#life.closed) return;
    while (this.#inFlight.size < this.#o.maxInFlight) {
      const call = this.#pick();
      if (!call) return;
      this.#begin(call);
    }
  }

  /** Commits the call as running (with the other writes of this turn), then hands it to the pool. */
  #begin(call: RunnableCall): void {
    const f: InFlight = { call, abort: new AbortController(), handedOff: false, started: false };
    this.#inFlight.set(call.id, f);
    this.#o.store.start(call.id).then(
      (running) => {
        if (this.#inFlight.get(call.id) !== f) return; // destroyed meanwhile
        if (running && !this.#life.closed) return this.#run(f);
        this.#inFlight.delete(call.id);
        // Closed meanwhile: it never reached the pool, so it waits for the next start.
        if (running) this.#persist(call, 'requeue', () => this.#o.store.requeue(call.id));
        // Not running: cancelled before its start was committed (the DELETE recorded it).
        this.#done();
      },
      (err: Error) => {
        // Still queued in the store: offered again once the store can be written.
        if (this.#inFlight.get(call.id) !== f) return;
        this.#inFlight.delete(call.id);
        this.#o.log.error('async call: could not mark it running; it stays queued', { callId: call.id, error: err.message });
        this.#later(STORE_RETRY_MS);
        this.#done(false);
      },
    );
  }

  /** The next call to run (see the module comment for the order), skipping calls already with the pool. */
  #pick(): RunnableCall | undefined {
    const now = Date.now();
    const levels = PRIORITIES.map((p, i) => {
      const oldest = this.#o.store.oldestQueued(p);
      return oldest === undefined ? undefined : { p, i, rank: Math.max(0, i - Math.floor(Math.max(0, now - oldest) / this.#o.agingMs)) };
    })
      .filter((l) => l !== undefined)
      .sort((a, b) => a.rank - b.rank || a.i - b.i);
    for (const { p } of levels) {
      let after = this.#lastOwner[p];
      // An owner whose queued calls are all with the pool is passed over; at most maxInFlight
      // owners can be in that state, so this loop is bounded by it.
      for (let turn = 0; turn <= this.#o.maxInFlight; turn++) {
        const next = this.#o.store.nextQueued(p, after, this.#inFlight.size + 1);
        if (!next) break;
        const id = next.ids.find((i) => !this.#inFlight.has(i));
        if (id) {
          this.#lastOwner[p] = next.owner;
          const call = this.#o.store.runnable(id);
          if (call) return call;
        }
        if (next.owner === after) break;
        after = next.owner;
      }
    }
    return undefined;
  }

  #run(f: InFlight): void {
    const { call } = f;
    if (!this.#o.routine(call.routine)) {
      // Configured when it was submitted, gone since (a restart with another config).
      this.#inFlight.delete(call.id);
      this.#ended(call.id, 'SKEIN_ERR_UNKNOWN_ROUTINE', 'failed', call.routine);
      this.#record(call, {
        ok: false,
        error: { code: 'SKEIN_ERR_UNKNOWN_ROUTINE', message: `no routine named "${call.routine}" is configured any more (it was when the call was submitted)`, meta: { routine: call.routine } },
      });
      return this.#done();
    }
    f.handedOff = true;
    this.#o.pool.call(
      {
        routine: call.routine,
        args: call.args,
        kwargs: call.kwargs,
        timeoutMs: call.timeoutMs + this.#o.queueSlackMs,
        signal: f.abort.signal,
        ...(call.requestId ? { requestId: call.requestId } : {}),
        callId: call.id,
        priority: call.priority,
        caller: call.owner,
        shape: 'async',
      },
      {
        onStart: () => {
          if (this.#inFlight.get(call.id) !== f) return;
          f.started = true;
          f.timer = setTimeout(() => {
            f.cause = 'deadline';
            f.abort.abort();
          }, call.timeoutMs);
        },
        onComplete: (value) => this.#settle(f, { ok: true, value }),
        onError: (err) => this.#settle(f, { ok: false, error: callError(err) }),
      },
    );
  }

  #settle(f: InFlight, outcome: Outcome): void {
    const { store } = this.#o;
    if (this.#inFlight.get(f.call.id) !== f) return; // destroyed meanwhile: nothing more is written
    clearTimeout(f.timer);
    this.#inFlight.delete(f.call.id);
    const { call } = f;
    const code = outcome.ok ? undefined : outcome.error.code;
    if (f.cause === 'cancel') {
      // The DELETE already recorded it as cancelled.
    } else if (!f.started && code && NOT_RUN.has(code)) {
      // Never ran: it waits in the store again, and the pool (full, or stopping) is given a
      // moment before it is offered calls again.
      this.#persist(call, 'requeue', () => store.requeue(call.id));
      if (!this.#life.closed) {
        this.#later(REFUSED_BACKOFF_MS);
        return;
      }
    } else if (f.cause === 'deadline') {
      this.#record(call, {
        ok: false,
        error: { code: 'SKEIN_ERR_DEADLINE_EXCEEDED', message: `the call ran past its deadline of ${call.timeoutMs} ms; its worker was stopped`, meta: { timeoutMs: call.timeoutMs } },
      });
    } else if (this.#life.closed && (code === 'SKEIN_ERR_WORKER_CRASHED' || code === 'SKEIN_ERR_SHUTTING_DOWN')) {
      // The agent's drain stopped it: recorded as a crash of the agent would leave it.
      if (this.#o.routine(call.routine)?.idempotent) this.#persist(call, 'requeue', () => store.requeue(call.id));
      else this.#record(call, { interrupted: true });
    } else {
      this.#record(call, outcome);
    }
    this.#done();
  }

  /** One in-flight call fewer: the drain may end, or (unless told not to) the next call run. */
  #done(pump = true): void {
    if (this.#life.closed) {
      if (this.#inFlight.size === 0) this.#drained?.();
      return;
    }
    if (pump) this.#pump();
  }

  /** Offers calls again after `ms` (a pool that refused one, a store that failed a commit). */
  #later(ms: number): void {
    if (this.#life.closed) return;
    clearTimeout(this.#backoff);
    this.#backoff = setTimeout(() => this.#pump(), ms);
    this.#backoff.unref?.();
  }

  /** Writes the outcome; long polls are woken once it is committed, so nothing reports it before it is durable. */
  #record(call: RunnableCall, outcome: Outcome | { interrupted: true }): void {
    this.#persist(
      call,
      'outcome',
      () => this.#o.store.finish(call.id, outcome),
      (stored) => {
        if (!stored) return; // cancelled meanwhile: its status stands
        if (stored.error?.code === 'SKEIN_ERR_ROUTINE_RAISED') this.#o.log.info('async call: routine raised', { callId: call.id, routine: call.routine });
        this.#wake(call.id);
      },
    );
  }

  /**
   * Runs a status write; when its commit fails, tries again every STORE_RETRY_MS (at most
   * STORE_RETRIES times, and not once the runner is stopped). Meanwhile the call keeps its
   * last committed status; if the write is never committed, the next start finds it as a
   * crash would have left it.
   */
  #persist<T>(call: RunnableCall, what: 'outcome' | 'requeue', write: () => Promise<T>, then?: (value: T) => void, attempt = 1): void {
    write().then(then, (err: Error) => {
      const retry = attempt < STORE_RETRIES && !this.#life.closed;
      this.#o.log.error(`async call: could not store its ${what}${retry ? `; trying again in ${STORE_RETRY_MS} ms` : ''}`, { callId: call.id, attempt, error: err.message });
      if (retry) setTimeout(() => this.#persist(call, what, write, then, attempt + 1), STORE_RETRY_MS).unref?.();
    });
  }

  /**
   * call.completed for a call that ended without reaching the pool (cancelled while queued,
   * found interrupted, its routine gone); the call service records the calls it ran.
   */
  #ended(callId: string, outcome: string, status: string, routine?: string): void {
    this.#o.audit?.record('call.completed', { callId, ...(routine ? { routine } : {}), shape: 'async', outcome, status });
  }
}

/** The error as a sync caller would see it: code, message and the details it would be shown. */
export function callError(err: unknown): CallError {
  const e = toSkeinError(err);
  const { trace: _trace, retryAfterSeconds: _r, ...meta } = e.details;
  return { code: e.code, message: e.message, ...(Object.keys(meta).length ? { meta } : {}) };
}
