/**
 * The worker pool: N persistent workers, a bounded queue in front of them (scheduler.ts: priorities,
 * aging, fair lanes per caller, per-routine concurrency caps), a wall-clock
 * deadline per call (queue time included), cancellation, and replacement of dead workers.
 *
 * A call is `call(req, handler)` (call.ts): one shape for a plain result, a generator's
 * items streamed with back-pressure (credits to the worker, granted as the handler takes
 * items), and a generator's items collected into a list bounded by limits.maxResultBytes.
 * `dispatch(req)` is call() as a promise of the outcome.
 *
 * Lifecycle (agent/lifecycle): `start()` once, `call()`/`dispatch()` many; `close()` drains
 * (in-flight calls get up to drainTimeoutMs, then every worker is killed), `destroy()` kills at
 * once; both idempotent and concurrent-safe. A call after either is refused with
 * SKEIN_ERR_SHUTTING_DOWN.
 */
import type { Audit } from '../audit/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import type { Logger } from '../log/index.ts';
import type { StderrDropRecorder, WorkerRecorder } from '../metrics/index.ts';
import type { CallDispatcher, CallHandler, CallRequest, Priority } from './call.ts';
import { MAX_DEPTH } from '../codec/index.ts';
import { CircuitBreaker, type CircuitOptions, type Trial } from './circuit.ts';
import { decodeBudget } from './decode-cost.ts';
import { MAX_CALL_ID } from './frames.ts';
import { Scheduler } from './scheduler.ts';
import { StderrBudget, type StderrLimits } from './stderr.ts';
import { Worker, type CallOutcome, type CallSink, type ExitInfo, type Leftovers, type ReadyInfo, type WorkerOutcome, type WorkerSpec } from './worker.ts';

export interface PoolOptions {
  size: number;
  queueSize: number;
  /** calls.agingMs: a queued call that waited this long is served as if one priority level higher. */
  agingMs: number;
  /** routines.<name>.maxConcurrency of this pool's routines that set one. */
  maxConcurrency?: Record<string, number>;
  /** How long close() lets in-flight calls finish before it kills the workers (limits.drainTimeoutMs). */
  drainTimeoutMs: number;
  spec: WorkerSpec;
  log: Logger;
  circuit: CircuitOptions;
  /** Retire a worker after this many calls (0: never). */
  maxCallsPerWorker: number;
  /** Retire a worker whose resident memory passed this (0: never); checked every RSS_CHECK_EVERY calls. */
  recycleRssBytes: number;
  /** Retire a worker whose CPU time passed this (0: never); checked with the RSS. */
  recycleCpuSeconds: number;
  /** Bounds on what the workers' stderr may put in the log (per worker; shared by the pool). */
  stderr: StderrLimits;
  /** Counts spawns (initial, replacement), exits (by kill reason, or crash), recycles and stderr drops. */
  events?: WorkerRecorder & StderrDropRecorder;
  /** Records worker.spawn/kill/crash/recycle on the audit stream (docs/audit.md). */
  audit?: Audit;
}

/** Outcomes that mean the routine killed its worker; they count toward the circuit. */
const KILLING_CODES = new Set(['SKEIN_ERR_WORKER_CRASHED', 'SKEIN_ERR_WORKER_PROTOCOL', 'SKEIN_ERR_RESULT_TOO_LARGE']);
// Reading /proc/<pid>/statm costs a few microseconds; every 8th call keeps it off the hot path.
const RSS_CHECK_EVERY = 8;
/**
 * A thread a routine joined is gone for Python before the kernel has reaped it: measured,
 * 1 call in 10 still showed it in /proc right after the reply, none 1 ms later. Extra
 * threads are looked for again, every millisecond for up to this long, before the worker
 * is retired for them.
 */
const THREAD_EXIT_GRACE_MS = 20;

type RetireReason = { reason: 'maxCalls' | 'memory' | 'cpu'; rssBytes?: number; cpuSeconds?: number } | ({ reason: 'leftovers' } & Leftovers);

/** What dispatch() takes: a call without a handler (call.ts). */
export type DispatchRequest = CallRequest;

interface Job {
  req: CallRequest;
  /** Set when this call is its routine's half-open trial (circuit.ts). */
  trial?: Trial;
  handler: CallHandler;
  timer: ReturnType<typeof setTimeout>;
  worker?: Worker;
  done: boolean;
  onAbort?: () => void;
}

/** Exactly one of onComplete / onError. */
function settleHandler(handler: CallHandler, outcome: CallOutcome): void {
  if (outcome.ok) handler.onComplete(outcome.value);
  else handler.onError(outcome.error);
}

function circuitOpen(routine: string, retryAfterMs: number, trialRunning: boolean): CallOutcome {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  const message = trialRunning
    ? `routine "${routine}" kept killing its workers and its trial call is running (too many calls wait for it already); retry in ${seconds} s (workers.circuit)`
    : `routine "${routine}" kept killing its workers; it is refused for ${seconds} s more (workers.circuit)`;
  return { ok: false, error: new SkeinError('SKEIN_ERR_CIRCUIT_OPEN', message, { routine, retryAfterSeconds: seconds }) };
}

function waitedTooLong(req: CallRequest): CallOutcome {
  return {
    ok: false,
    error: new SkeinError('SKEIN_ERR_DEADLINE_EXCEEDED', `the call waited ${req.timeoutMs} ms for the trial call of routine "${req.routine}" (its circuit is half-open) and never started`),
  };
}

const RESPAWN_BACKOFF_MS = [0, 100, 250, 500, 1000, 2000, 5000];
/** How long destroy() waits for killed workers to be reaped (SIGKILL: normally milliseconds). */
const REAP_WAIT_MS = 2000;

/** A generator's items collected for a caller that did not ask for a stream. */
interface Collected {
  items: unknown[];
  bytes: number;
  cost: number;
}

export class WorkerPool implements Component, CallDispatcher {
  #opts: PoolOptions;
  #workers = new Set<Worker>();
  #idle: Worker[] = [];
  #queue: Scheduler<Job>;
  #nextWorker = 1;
  #nextCall = 1;
  #life = new Lifecycle({ drain: () => this.#drain(), abort: () => this.#abort() });
  #inFlight = 0;
  /** Replacement spawns waiting out their back-off; cleared when the pool stops. */
  #respawns = new Set<ReturnType<typeof setTimeout>>();
  /** Woken when the last worker has exited. */
  #onEmpty: Array<() => void> = [];
  /** Calls waiting for their routine's trial call to end; close() wakes them. */
  #waiting = new Set<() => void>();
  #consecutiveFailures = 0;
  #drained: (() => void) | undefined;
  #log: Logger;
  #circuit: CircuitBreaker;
  /** The routines this pool serves, named on its audit lines. */
  #routines: string[];
  #stderr: StderrBudget;

  constructor(opts: PoolOptions) {
    this.#opts = opts;
    this.#routines = Object.keys(opts.spec.routines);
    this.#log = opts.log;
    this.#circuit = new CircuitBreaker(opts.circuit);
    this.#stderr = new StderrBudget(opts.stderr, opts.size, opts.events);
    this.#queue = new Scheduler({ agingMs: opts.agingMs, maxConcurrency: opts.maxConcurrency });
  }

  /** Starts every worker; resolves when all are ready, rejects with the first start failure. */
  async start(): Promise<ReadyInfo[]> {
    const workers = Array.from({ length: this.#opts.size }, () => this.#spawn('initial'));
    return Promise.all(workers.map((w) => w.ready()));
  }

  get stats() {
    return { workers: this.#workers.size, idle: this.#idle.length, queued: this.#queue.size, inFlight: this.#inFlight };
  }

  /** Queued calls by the priority they were queued at (skein_queue_depth{priority}). */
  queueDepth(): Record<Priority, number> {
    return this.#queue.depth();
  }

  /** call() as a promise of its outcome (a stream's items, if any, are not seen). */
  dispatch(req: DispatchRequest): Promise<CallOutcome> {
    return new Promise<CallOutcome>((resolve) => this.call(req, { onComplete: (value) => resolve({ ok: true, value }), onError: (error) => resolve({ ok: false, error }) }));
  }

  /**
   * Runs one call; the handler hears how it goes (call.ts). A call refused before it is
   * queued (shutting down, cancelled, circuit open, queue full) gets onError before call()
   * returns.
   */
  call(req: CallRequest, handler: CallHandler): void {
    const refuse = (outcome: CallOutcome) => settleHandler(handler, outcome);
    if (this.#life.closed) return refuse({ ok: false, error: new SkeinError('SKEIN_ERR_SHUTTING_DOWN', 'the agent is shutting down and accepts no new calls') });
    if (req.signal?.aborted) return refuse({ ok: false, error: new SkeinError('SKEIN_ERR_ABORTED', 'the caller cancelled the call') });
    const admission = this.#circuit.admit(req.routine, req.timeoutMs);
    if (admission.kind === 'refuse') return refuse(circuitOpen(req.routine, admission.retryAfterMs, false));
    if (admission.kind === 'wait') {
      // Bounded like the queue: past queueSize waiters, the rest are told when the trial ends.
      if (this.#waiting.size >= this.#opts.queueSize) return refuse(circuitOpen(req.routine, admission.retryAfterMs, true));
      return this.#waitForTrial(req, handler, admission.trialEnded);
    }
    // An idle worker takes the call directly (the queue holds only calls of routines at their cap then).
    const worker = this.#idle.length > 0 && this.#queue.canStart(req.routine) ? this.#idle.pop() : undefined;
    if (!worker && this.#queue.size >= this.#opts.queueSize) {
      if (admission.trial) this.#circuit.settle(req.routine, 'not-run', admission.trial);
      return refuse({
        ok: false,
        error: new SkeinError('SKEIN_ERR_OVERLOADED', `all ${this.#workers.size} workers are busy and ${this.#queue.size} calls are queued (limits.queueSize); retry later`, {
          retryAfterSeconds: 1,
        }),
      });
    }
    this.#inFlight++;
    const job: Job = { req, handler, done: false, timer: undefined as unknown as ReturnType<typeof setTimeout> };
    if (admission.trial) job.trial = admission.trial;
    job.timer = setTimeout(() => this.#expire(job), req.timeoutMs);
    if (req.signal) {
      job.onAbort = () => this.#cancel(job);
      req.signal.addEventListener('abort', job.onAbort, { once: true });
    }
    if (worker) {
      this.#queue.started(req.routine);
      this.#run(worker, job);
    } else this.#queue.push(job, req);
  }

  /**
   * Waits for the routine's trial call to end, within the call's own deadline, then asks
   * again: the trial's success lets this call run, a kill refuses it.
   */
  #waitForTrial(req: CallRequest, handler: CallHandler, trialEnded: Promise<void>): void {
    const started = performance.now();
    const finish = (outcome: CallOutcome | undefined) => {
      if (!this.#waiting.delete(wake)) return;
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      if (outcome) return settleHandler(handler, outcome);
      const left = Math.floor(req.timeoutMs - (performance.now() - started));
      if (left <= 0) return settleHandler(handler, waitedTooLong(req));
      this.call({ ...req, timeoutMs: left }, handler);
    };
    const wake = () => finish(undefined);
    const onAbort = () => finish({ ok: false, error: new SkeinError('SKEIN_ERR_ABORTED', 'the caller cancelled the call') });
    const timer = setTimeout(() => finish(waitedTooLong(req)), req.timeoutMs);
    this.#waiting.add(wake);
    req.signal?.addEventListener('abort', onAbort, { once: true });
    trialEnded.then(wake);
  }

  /**
   * Stops taking calls, lets in-flight ones finish for up to drainTimeoutMs, then kills every
   * worker. Every caller gets the same drain: a second close() during it waits for it.
   */
  close(): Promise<void> {
    return this.#life.close();
  }

  /** Stops taking calls and kills every worker now (in-flight calls fail); resolves once they are reaped. */
  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }

  async #drain(): Promise<void> {
    this.#wakeWaiters();
    if (this.#inFlight > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = setTimeout(resolve, this.#opts.drainTimeoutMs);
      });
      clearTimeout(timer);
    }
    await this.#abort();
  }

  async #abort(): Promise<void> {
    this.#wakeWaiters();
    for (const t of this.#respawns) clearTimeout(t);
    this.#respawns.clear();
    for (const job of this.#queue.drain()) this.#finish(job, { ok: false, error: new SkeinError('SKEIN_ERR_SHUTTING_DOWN', 'the agent shut down before the call started') });
    for (const w of this.#workers) w.kill('shutdown');
    if (this.#workers.size === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#onEmpty.push(resolve);
      timer = setTimeout(resolve, REAP_WAIT_MS);
    });
    clearTimeout(timer);
  }

  /** Calls waiting for a trial ask again and are told the agent is shutting down. */
  #wakeWaiters(): void {
    for (const wake of [...this.#waiting]) wake();
  }

  #run(worker: Worker, job: Job): void {
    job.worker = worker;
    const id = this.#nextCall;
    // Call ids are u32 on the wire (frames.ts); 0 is the hello's.
    this.#nextCall = id >= MAX_CALL_ID ? 1 : id + 1;
    const sink = this.#sink(worker, job, (outcome) => {
      this.#finish(job, outcome);
      if (worker.state !== 'idle') return;
      // Before the worker serves anything else: whatever the call left running (a thread, a
      // timer) would run during the next call and could read or answer it. Looked at here,
      // synchronously: a call that left nothing costs no promise, and the worker is back in
      // the idle list (or on its next call) before this turn of the event loop ends.
      const left = worker.leftovers();
      if (left?.threads && !left.children && !left.activity) void this.#threadsExited(worker, left).then((still) => this.#afterCall(worker, job, still));
      else this.#afterCall(worker, job, left);
    });
    worker.call(id, job.req, sink);
    job.handler.onStart?.(sink.control);
  }

  /** Retires the worker for what its call left (or a quota), or gives it the next call. */
  #afterCall(worker: Worker, job: Job, left: Leftovers | undefined): void {
    if (worker.state !== 'idle') return;
    const retire: RetireReason | undefined = left ? { reason: 'leftovers', ...left } : this.#shouldRetire(worker);
    if (retire) {
      if (retire.reason === 'leftovers')
        this.#log.info('call left threads, processes or timers running; recycling its worker', { worker: worker.id, routine: job.req.routine, requestId: job.req.requestId, ...left });
      this.#opts.audit?.record('worker.recycle', {
        worker: worker.id,
        pid: worker.pid,
        routines: this.#routines,
        calls: worker.calls,
        ...(retire.reason === 'leftovers' ? { routine: job.req.routine, requestId: job.req.requestId } : {}),
        ...retire,
      });
      this.#opts.events?.workerRecycled(retire.reason);
      return worker.kill('recycle');
    }
    this.#release(worker);
  }

  /**
   * Where the worker's frames for `job` go. Items of a streaming call go to the handler, and
   * each one it takes is granted back to the worker (in batches of half the buffer), until
   * onItem returns false; control.resume() grants again. Items of a call that did not ask for
   * a stream are collected (and granted back at once) up to limits.maxResultBytes and the
   * decode budget; past them the generator is stopped and the call fails with
   * SKEIN_ERR_RESULT_TOO_LARGE.
   */
  #sink(worker: Worker, job: Job, ended: (outcome: CallOutcome) => void): CallSink & { control: { resume(): void } } {
    const { req, handler } = job;
    const buffer = this.#opts.spec.streamBufferItems;
    const maxBytes = this.#opts.spec.maxReplyBytes;
    const budget = decodeBudget(maxBytes);
    let outstanding = buffer; // credits the worker holds
    let owed = 0; // items taken that have not been granted back yet
    let paused = false;
    const collected: Collected | undefined = req.stream ? undefined : { items: [], bytes: 0, cost: 0 };
    /** handler.onItem's answer, or the error that ends the call when it throws. */
    const deliver = (value: unknown): boolean | undefined | SkeinError => {
      try {
        return handler.onItem?.(value);
      } catch (err) {
        this.#log.error('call handler failed on an item', { routine: req.routine, requestId: req.requestId, error: String(err) });
        return new SkeinError('SKEIN_ERR_INTERNAL', 'the agent failed to deliver an item of the stream');
      }
    };
    const grant = () => {
      if (paused || owed === 0 || outstanding > buffer / 2) return;
      worker.grant(owed);
      outstanding += owed;
      owed = 0;
    };
    return {
      control: {
        resume: () => {
          if (job.done || !paused) return;
          paused = false;
          grant();
        },
      },
      item: (value, size) => {
        if (job.done) return;
        outstanding--;
        owed++;
        if (!collected) {
          const more = deliver(value);
          // The consumer's failure, not the routine's: the generator is stopped, the agent goes on.
          if (more instanceof SkeinError) return worker.stop(more, 'cancelled');
          if (more === false) paused = true;
          return grant();
        }
        collected.bytes += size.bytes;
        collected.cost += size.cost;
        if (collected.bytes > maxBytes || collected.cost > budget || size.depth + 1 > MAX_DEPTH) {
          const why =
            size.depth + 1 > MAX_DEPTH
              ? `the collected items nest deeper than ${MAX_DEPTH} levels`
              : collected.bytes > maxBytes
                ? `the generator's items passed limits.maxResultBytes (${maxBytes} bytes) before it ended`
                : `the generator's items would take more than ${budget} bytes of agent memory to decode`;
          const error =
            size.depth + 1 > MAX_DEPTH
              ? new SkeinError('SKEIN_ERR_ROUTINE_RAISED', `ResultNotSerializable: ${why}`, { exception: { type: 'ResultNotSerializable', message: why } })
              : new SkeinError('SKEIN_ERR_RESULT_TOO_LARGE', `${why}; it was stopped (ask for a stream to read them one at a time)`, { worker: worker.id });
          collected.items = [];
          return worker.stop(error, 'oversize');
        }
        collected.items.push(value);
        grant();
      },
      settle: (outcome: WorkerOutcome) => {
        if (!outcome.ok) return ended(outcome);
        if (!outcome.ended) {
          // A plain result: as the value, or, for a stream, as its one item.
          const failed = req.stream && !job.done ? deliver(outcome.value) : undefined;
          if (failed instanceof SkeinError) return ended({ ok: false, error: failed });
          return ended({ ok: true, value: req.stream ? undefined : outcome.value });
        }
        ended({ ok: true, value: collected ? collected.items : undefined });
      },
    };
  }

  /** worker.leftovers() that showed only threads, looked at again for THREAD_EXIT_GRACE_MS while only threads remain. */
  async #threadsExited(worker: Worker, left: Leftovers | undefined): Promise<Leftovers | undefined> {
    const until = performance.now() + THREAD_EXIT_GRACE_MS;
    while (left?.threads && !left.children && !left.activity && performance.now() < until) {
      await new Promise((r) => setTimeout(r, 1));
      if (worker.state !== 'idle') return undefined;
      left = worker.leftovers();
    }
    return left;
  }

  /** Why the worker should be retired after this call for its quotas (undefined: keep it). */
  #shouldRetire(worker: Worker): RetireReason | undefined {
    const { maxCallsPerWorker, recycleRssBytes, recycleCpuSeconds } = this.#opts;
    if (maxCallsPerWorker > 0 && worker.calls >= maxCallsPerWorker) return { reason: 'maxCalls' };
    if (worker.calls % RSS_CHECK_EVERY !== 0) return undefined;
    if (recycleRssBytes > 0) {
      const rss = worker.rssBytes();
      if (rss !== undefined && rss > recycleRssBytes) {
        this.#log.info('worker over workers.recycleMemoryMb; recycling', { worker: worker.id, rssBytes: rss });
        return { reason: 'memory', rssBytes: rss };
      }
    }
    if (recycleCpuSeconds > 0) {
      const cpu = worker.cpuSeconds();
      if (cpu !== undefined && cpu > recycleCpuSeconds) {
        this.#log.info('worker near its sandbox.cpuSeconds backstop; recycling', { worker: worker.id, cpuSeconds: cpu });
        return { reason: 'cpu', cpuSeconds: cpu };
      }
    }
    return undefined;
  }

  #release(worker: Worker): void {
    const next = this.#queue.pop();
    if (next) this.#run(worker, next);
    else this.#idle.push(worker);
  }

  /** Every call ends here exactly once, and tells the circuit how it ended. */
  #finish(job: Job, outcome: CallOutcome): void {
    if (job.done) return;
    job.done = true;
    // A call cancelled by its caller proves nothing either way, like one that never ran.
    const code = outcome.ok ? undefined : outcome.error.code;
    // A generator stopped for its size, whose worker lives on, killed nothing.
    const end = code && KILLING_CODES.has(code) && job.worker?.killed !== false ? 'kill' : job.worker && code !== 'SKEIN_ERR_ABORTED' ? 'ran' : 'not-run';
    if (this.#circuit.settle(job.req.routine, end, job.trial))
      this.#log.warn('circuit opened: routine keeps killing its workers', { routine: job.req.routine, cooldownMs: this.#opts.circuit.cooldownMs });
    clearTimeout(job.timer);
    // A call of a capped routine ended: a call it held back may take an idle worker now.
    if (job.worker && this.#queue.ended(job.req.routine) && this.#idle.length > 0) this.#release(this.#idle.pop()!);
    if (job.onAbort) job.req.signal?.removeEventListener('abort', job.onAbort);
    this.#inFlight--;
    try {
      settleHandler(job.handler, outcome);
    } catch (err) {
      // The pool's books (in flight, drain) must stay right whatever a handler does.
      this.#log.error('call handler failed on the outcome', { routine: job.req.routine, requestId: job.req.requestId, error: String(err) });
    }
    if (this.#inFlight === 0) this.#drained?.();
  }

  #expire(job: Job): void {
    if (job.done) return;
    if (job.worker) return job.worker.interrupt('deadline'); // settles the call through the worker
    this.#queue.remove(job);
    this.#finish(job, { ok: false, error: new SkeinError('SKEIN_ERR_DEADLINE_EXCEEDED', `the call waited ${job.req.timeoutMs} ms in the queue without a free worker`) });
  }

  #cancel(job: Job): void {
    if (job.done) return;
    if (job.worker) return job.worker.interrupt('cancelled');
    this.#queue.remove(job);
    this.#finish(job, { ok: false, error: new SkeinError('SKEIN_ERR_ABORTED', 'the caller cancelled the call') });
  }

  #spawn(reason: 'initial' | 'replacement'): Worker {
    this.#opts.events?.workerEvent('spawn', reason);
    const worker = new Worker(`w${this.#nextWorker++}`, this.#opts.spec, this.#log, this.#stderr);
    this.#workers.add(worker);
    worker.onExit = (w, info) => this.#onWorkerExit(w, info);
    worker.ready().then(
      (info) => {
        this.#consecutiveFailures = 0;
        this.#log.debug('worker ready', { worker: worker.id, pid: info.pid, layers: info.layers });
        this.#opts.audit?.record('worker.spawn', { worker: worker.id, pid: worker.pid, reason, routines: this.#routines, python: info.python, layers: info.layers, limits: this.#opts.spec.limits });
        if (this.#life.closed) return worker.kill('shutdown');
        this.#release(worker);
      },
      () => {},
    );
    return worker;
  }

  #onWorkerExit(worker: Worker, info: ExitInfo): void {
    this.#workers.delete(worker);
    const i = this.#idle.indexOf(worker);
    if (i !== -1) this.#idle.splice(i, 1);
    this.#opts.events?.workerEvent('exit', info.reason ?? 'crash');
    this.#auditExit(worker, info);
    if (this.#workers.size === 0) for (const wake of this.#onEmpty.splice(0)) wake();
    if (this.#life.closed) return;
    const expected = info.reason === 'deadline' || info.reason === 'cancelled' || info.reason === 'recycle';
    if (!expected) this.#consecutiveFailures++;
    const level = expected ? 'info' : 'warn';
    this.#log[level]('worker exited; starting a replacement', { worker: worker.id, exitCode: info.code, signal: info.signal, reason: info.reason ?? 'crash' });
    const delay = RESPAWN_BACKOFF_MS[Math.min(this.#consecutiveFailures, RESPAWN_BACKOFF_MS.length - 1)]!;
    const t = setTimeout(() => {
      this.#respawns.delete(t);
      if (!this.#life.closed) this.#spawn('replacement');
    }, delay);
    t.unref?.();
    this.#respawns.add(t);
  }

  /**
   * worker.kill for the agent's kills of a worker with a call to fail, worker.crash for a worker
   * that died on its own. Recycling is recorded when it is decided (with why); workers stopped
   * by the pool closing are covered by agent.stop.
   */
  #auditExit(worker: Worker, info: ExitInfo): void {
    const audit = this.#opts.audit;
    if (!audit || info.reason === 'recycle' || info.reason === 'shutdown') return;
    const fields = {
      worker: worker.id,
      pid: worker.pid,
      routines: this.#routines,
      exitCode: info.code,
      signal: info.signal,
      ...(info.call ? { requestId: info.call.requestId, routine: info.call.routine } : {}),
    };
    if (info.reason === undefined) audit.record('worker.crash', { ...fields, stage: info.stage });
    else audit.record('worker.kill', { ...fields, reason: info.reason });
  }
}
