/**
 * The worker pool: N persistent workers, a bounded queue in front of them (scheduler.ts: priorities,
 * aging, fair lanes per caller, per-routine concurrency caps), a wall-clock
 * deadline per call (queue time included), cancellation, and replacement of dead workers.
 *
 * Lifecycle (agent/lifecycle): `start()` once, `dispatch()` many; `close()` drains (in-flight
 * calls get up to drainTimeoutMs, then every worker is killed), `destroy()` kills at once;
 * both idempotent and concurrent-safe. A dispatch after either is refused with
 * SKEIN_ERR_SHUTTING_DOWN.
 */
import type { Audit } from '../audit/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import type { Logger } from '../log/index.ts';
import type { StderrDropRecorder, WorkerRecorder } from '../metrics/index.ts';
import type { CallRequest, Priority } from './call.ts';
import { CircuitBreaker, type CircuitOptions, type Trial } from './circuit.ts';
import { Scheduler } from './scheduler.ts';
import { StderrBudget, type StderrLimits } from './stderr.ts';
import { Worker, type CallOutcome, type ExitInfo, type Leftovers, type ReadyInfo, type WorkerSpec } from './worker.ts';

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

export interface DispatchRequest extends Pick<CallRequest, 'priority' | 'caller' | 'weight'> {
  routine: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Correlation id, carried onto the worker's log lines for this call. */
  requestId?: string;
}

interface Job {
  req: DispatchRequest;
  /** Set when this call is its routine's half-open trial (circuit.ts). */
  trial?: Trial;
  resolve: (o: CallOutcome) => void;
  timer: ReturnType<typeof setTimeout>;
  worker?: Worker;
  done: boolean;
  onAbort?: () => void;
}

function circuitOpen(routine: string, retryAfterMs: number, trialRunning: boolean): CallOutcome {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  const message = trialRunning
    ? `routine "${routine}" kept killing its workers and its trial call is running (too many calls wait for it already); retry in ${seconds} s (workers.circuit)`
    : `routine "${routine}" kept killing its workers; it is refused for ${seconds} s more (workers.circuit)`;
  return { ok: false, error: new SkeinError('SKEIN_ERR_CIRCUIT_OPEN', message, { routine, retryAfterSeconds: seconds }) };
}

function waitedTooLong(req: DispatchRequest): CallOutcome {
  return {
    ok: false,
    error: new SkeinError('SKEIN_ERR_DEADLINE_EXCEEDED', `the call waited ${req.timeoutMs} ms for the trial call of routine "${req.routine}" (its circuit is half-open) and never started`),
  };
}

const RESPAWN_BACKOFF_MS = [0, 100, 250, 500, 1000, 2000, 5000];
/** How long destroy() waits for killed workers to be reaped (SIGKILL: normally milliseconds). */
const REAP_WAIT_MS = 2000;

export class WorkerPool implements Component {
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

  dispatch(req: DispatchRequest): Promise<CallOutcome> {
    if (this.#life.closed) return Promise.resolve({ ok: false, error: new SkeinError('SKEIN_ERR_SHUTTING_DOWN', 'the agent is shutting down and accepts no new calls') });
    if (req.signal?.aborted) return Promise.resolve({ ok: false, error: new SkeinError('SKEIN_ERR_ABORTED', 'the caller cancelled the call') });
    const admission = this.#circuit.admit(req.routine, req.timeoutMs);
    if (admission.kind === 'refuse') return Promise.resolve(circuitOpen(req.routine, admission.retryAfterMs, false));
    if (admission.kind === 'wait') {
      // Bounded like the queue: past queueSize waiters, the rest are told when the trial ends.
      if (this.#waiting.size >= this.#opts.queueSize) return Promise.resolve(circuitOpen(req.routine, admission.retryAfterMs, true));
      return this.#waitForTrial(req, admission.trialEnded);
    }
    // An idle worker takes the call directly (the queue holds only calls of routines at their cap then).
    const worker = this.#idle.length > 0 && this.#queue.canStart(req.routine) ? this.#idle.pop() : undefined;
    if (!worker && this.#queue.size >= this.#opts.queueSize) {
      if (admission.trial) this.#circuit.settle(req.routine, 'not-run', admission.trial);
      return Promise.resolve({
        ok: false,
        error: new SkeinError('SKEIN_ERR_OVERLOADED', `all ${this.#workers.size} workers are busy and ${this.#queue.size} calls are queued (limits.queueSize); retry later`, {
          retryAfterSeconds: 1,
        }),
      });
    }
    this.#inFlight++;
    return new Promise<CallOutcome>((resolve) => {
      const job: Job = { req, resolve, done: false, timer: undefined as unknown as ReturnType<typeof setTimeout>, ...(admission.trial ? { trial: admission.trial } : {}) };
      job.timer = setTimeout(() => this.#expire(job), req.timeoutMs);
      if (req.signal) {
        job.onAbort = () => this.#cancel(job);
        req.signal.addEventListener('abort', job.onAbort, { once: true });
      }
      if (worker) {
        this.#queue.started(req.routine);
        this.#run(worker, job);
      } else this.#queue.push(job, req);
    });
  }

  /**
   * Waits for the routine's trial call to end, within the call's own deadline, then asks
   * again: the trial's success lets this call run, a kill refuses it.
   */
  #waitForTrial(req: DispatchRequest, trialEnded: Promise<void>): Promise<CallOutcome> {
    const started = performance.now();
    return new Promise<CallOutcome>((resolve) => {
      const finish = (outcome: CallOutcome | undefined) => {
        if (!this.#waiting.delete(wake)) return;
        clearTimeout(timer);
        req.signal?.removeEventListener('abort', onAbort);
        if (outcome) return resolve(outcome);
        const left = Math.floor(req.timeoutMs - (performance.now() - started));
        if (left <= 0) return resolve(waitedTooLong(req));
        resolve(this.dispatch({ ...req, timeoutMs: left }));
      };
      const wake = () => finish(undefined);
      const onAbort = () => finish({ ok: false, error: new SkeinError('SKEIN_ERR_ABORTED', 'the caller cancelled the call') });
      const timer = setTimeout(() => finish(waitedTooLong(req)), req.timeoutMs);
      this.#waiting.add(wake);
      req.signal?.addEventListener('abort', onAbort, { once: true });
      trialEnded.then(wake);
    });
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
    worker.call(this.#nextCall++, job.req.routine, job.req.args, job.req.kwargs, job.req.requestId).then(async (outcome) => {
      this.#finish(job, outcome);
      if (worker.state !== 'idle') return;
      // Before the worker serves anything else: whatever the call left running (a thread, a
      // timer) would run during the next call and could read or answer it.
      const left = await this.#leftovers(worker);
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
    });
  }

  /** worker.leftovers(), looked at again for THREAD_EXIT_GRACE_MS while only threads remain. */
  async #leftovers(worker: Worker): Promise<Leftovers | undefined> {
    let left = worker.leftovers();
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
    const end = code && KILLING_CODES.has(code) ? 'kill' : job.worker && code !== 'SKEIN_ERR_ABORTED' ? 'ran' : 'not-run';
    if (this.#circuit.settle(job.req.routine, end, job.trial))
      this.#log.warn('circuit opened: routine keeps killing its workers', { routine: job.req.routine, cooldownMs: this.#opts.circuit.cooldownMs });
    clearTimeout(job.timer);
    // A call of a capped routine ended: a call it held back may take an idle worker now.
    if (job.worker && this.#queue.ended(job.req.routine) && this.#idle.length > 0) this.#release(this.#idle.pop()!);
    if (job.onAbort) job.req.signal?.removeEventListener('abort', job.onAbort);
    this.#inFlight--;
    job.resolve(outcome);
    if (this.#inFlight === 0) this.#drained?.();
  }

  #expire(job: Job): void {
    if (job.done) return;
    if (job.worker) return job.worker.kill('deadline'); // settles the call through the worker
    this.#queue.remove(job);
    this.#finish(job, { ok: false, error: new SkeinError('SKEIN_ERR_DEADLINE_EXCEEDED', `the call waited ${job.req.timeoutMs} ms in the queue without a free worker`) });
  }

  #cancel(job: Job): void {
    if (job.done) return;
    if (job.worker) return job.worker.kill('cancelled');
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
