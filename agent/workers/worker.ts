/**
 * One persistent Python worker: a child process that runs one call at a time over protocol
 * v2 (frames.ts, bootstrap.py, docs/protocol.md). Every frame from the worker is untrusted
 * input: a frame for the wrong call id or while no call runs, an item beyond the granted
 * credit, an oversize, too costly or malformed frame kills the worker.
 *
 * A generator routine streams: each item spends one credit (the call frame's initial
 * credits, then grant()), and stop() asks the worker to close the generator, killing it if it
 * has not answered within STOP_GRACE_MS.
 */
import { isUtf8 } from 'node:buffer';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { containsBytes, decodeCborValue, MAX_DEPTH } from '../codec/index.ts';
import { jsonProblem } from '../codec/json-check.ts';
import type { Launcher } from '../sandbox/bwrap.ts';
import { WORKER_ENV } from '../sandbox/python.ts';
import { encodeCbor } from './cbor-encode.ts';
import { DECODE_BUDGET_FACTOR, DECODE_BUDGET_FLOOR } from './decode-cost.ts';
import { FrameReader, type Frame, type Refusal } from './frame-reader.ts';
import { ENC, encodeFrame, HEADER_BYTES, KIND, PROTOCOL_VERSION, writeHeader } from './frames.ts';
import { ProcView } from './proc.ts';
import { StderrRelay, type StderrBudget } from './stderr.ts';
import BOOTSTRAP from './bootstrap.py' with { type: 'text' };

export interface RoutineSource {
  file: string;
  function: string;
  source: string;
}

export interface WorkerSpec {
  /** How to start the interpreter: directly, or inside bubblewrap. */
  launcher: Launcher;
  cwd: string;
  routines: Record<string, RoutineSource>;
  limits: Record<string, number>;
  /** Confinement applied by the bootstrap before routines load (code: marshalled confine.py). */
  confine?: { code: string; pythonVersion: string; policy: unknown; packagePaths: string[] };
  maxReplyBytes: number;
  startTimeoutMs: number;
  /** Credits a generator starts with (calls.streamBufferItems): items it may send unasked. */
  streamBufferItems: number;
}

export type CallOutcome = { ok: true; value: unknown } | { ok: false; error: SkeinError };

/** How a call ended, as the worker saw it: `ended` when a generator finished (no value). */
export type WorkerOutcome = { ok: true; value: unknown; ended?: boolean } | { ok: false; error: SkeinError };

/** Where a running call's frames go. */
export interface CallSink {
  /** One item a generator yielded; `depth` and `bytes` of its payload for the pool's bounds. */
  item(value: unknown, size: { bytes: number; cost: number; depth: number }): void;
  /** The call's end; called once. */
  settle(outcome: WorkerOutcome): void;
}

export interface WorkerCall {
  routine: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  requestId?: string | undefined;
}

/**
 * How long a worker asked to stop a generator (stop frame) has to close it and answer, before
 * it is killed: a generator paused at a yield answers at once; one busy between yields, or
 * whose `finally` blocks, does not.
 */
export const STOP_GRACE_MS = 200;

export interface ReadyInfo {
  pid: number;
  python: string;
  /** Confinement layers applied, outermost first ("bwrap" when the launcher wraps). */
  layers: string[];
}

type State = 'starting' | 'idle' | 'busy' | 'dead';
/** At most this many entries of a reply's "left" list are kept (it is untrusted input). */
const MAX_LEFT = 8;

const KILL_REASON_CODES = {
  deadline: 'SKEIN_ERR_DEADLINE_EXCEEDED',
  protocol: 'SKEIN_ERR_WORKER_PROTOCOL',
  oversize: 'SKEIN_ERR_RESULT_TOO_LARGE',
  cancelled: 'SKEIN_ERR_ABORTED',
} as const;
/** Kills without a call to fail: the pool stopping, or retiring a worker after its quota. */
export type KillReason = keyof typeof KILL_REASON_CODES | 'shutdown' | 'recycle';

/**
 * Live activity a call left in the worker's process, which could run during (and read) a
 * later call: threads and child processes (counted from /proc, which a routine cannot fake),
 * and what the bootstrap reported ("timer", "trace", "threads"; "unverifiable" when /proc
 * could not be read).
 */
export interface Leftovers {
  threads?: number;
  children?: number;
  activity?: string[];
}

/** How a worker's process ended; `call` is the call it was running (for the audit stream). */
export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** Why the agent killed it; undefined when it died on its own (a crash). */
  reason: KillReason | undefined;
  /** start: before its ready message; call: running a call; idle: between calls. */
  stage: 'start' | 'call' | 'idle';
  call?: { requestId: string | undefined; routine: string };
}

export class Worker {
  readonly id: string;
  #state: State = 'starting';
  #child: ChildProcessByStdio<Writable, Readable, Readable>;
  #log: Logger;
  #maxReply: number;
  #frames: FrameReader;
  #credits: number;
  #stderr: StderrRelay;
  /** What the bootstrap reported with the last reply ("left"). */
  #reportedLeft: string[] | undefined;
  /** The interpreter's /proc files, opened at the first look (undefined again once it exited). */
  #proc: ProcView | undefined;
  #current: Running | undefined;
  /** The call running when the worker was killed, kept for onExit. */
  #killedCall: ExitInfo['call'];
  #ready: Promise<ReadyInfo>;
  #onReady!: (info: ReadyInfo) => void;
  #onStartFail!: (err: SkeinError) => void;
  #killReason: KillReason | undefined;
  /** #onFrame as the frame reader's callback, made once rather than per chunk. */
  readonly #frameSink = (frame: Frame): boolean => {
    this.#onFrame(frame);
    return this.#state !== 'dead' && this.#killReason === undefined;
  };
  /** Called once when the process has gone, whatever the cause. */
  onExit: (worker: Worker, info: ExitInfo) => void = () => {};
  calls = 0;
  #wrapped: boolean;
  #statPid: number | undefined;

  constructor(id: string, spec: WorkerSpec, log: Logger, stderr: StderrBudget) {
    this.id = id;
    this.#log = log.child({ worker: id });
    this.#maxReply = spec.maxReplyBytes;
    this.#frames = new FrameReader(spec.maxReplyBytes);
    this.#credits = spec.streamBufferItems;
    this.#stderr = new StderrRelay(this.#log, stderr);
    this.#ready = new Promise<ReadyInfo>((res, rej) => {
      this.#onReady = res;
      this.#onStartFail = rej;
    });
    // Swallow here so an unobserved start failure is not an unhandled rejection; callers of
    // ready() still see it.
    this.#ready.catch(() => {});

    this.#wrapped = spec.launcher.wrapped;
    this.#child = spawn(spec.launcher.command, [...spec.launcher.prefix, '-I', '-S', '-u', '-c', BOOTSTRAP], {
      cwd: spec.cwd,
      env: { ...WORKER_ENV },
      // detached → setsid: the worker leads its own process group, so a kill reaches
      // anything it started.
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#child.on('error', (err) => this.#fail('spawn', new SkeinError('SKEIN_ERR_WORKER_CRASHED', `cannot start ${spec.launcher.command}: ${err.message}`)));
    this.#child.on('exit', (code, signal) => this.#exited(code, signal));
    this.#child.stdin.on('error', () => {}); // EPIPE after death is reported through 'exit'
    this.#child.stdout.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#child.stderr.on('data', (chunk: Buffer) => this.#stderr.push(chunk, this.#current?.requestId));
    this.#child.stderr.on('end', () => this.#stderr.end());

    const init = {
      v: PROTOCOL_VERSION,
      worker: id,
      // Under bubblewrap the worker's parent is bwrap (--die-with-parent covers it).
      agentPid: spec.launcher.wrapped ? null : process.pid,
      routines: spec.routines,
      limits: spec.limits,
      packagePaths: spec.confine?.packagePaths ?? [],
      confine: spec.confine?.code ?? null,
      confineFor: spec.confine?.pythonVersion ?? null,
      policy: spec.confine?.policy ?? null,
    };
    this.#child.stdin.write(encodeFrame(KIND.INIT, ENC.JSON, 0, JSON.stringify(init)));
    const timer = setTimeout(() => {
      if (this.#state === 'starting') this.#fail('start', new SkeinError('SKEIN_ERR_WORKER_CRASHED', `worker ${id} was not ready within ${spec.startTimeoutMs} ms`));
    }, spec.startTimeoutMs);
    timer.unref();
    this.#ready.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Resident memory in bytes, from /proc (Linux); undefined if it cannot be read. */
  rssBytes(): number | undefined {
    try {
      return this.#procView().rssBytes();
    } catch {
      return undefined;
    }
  }

  /** User + system CPU seconds used so far, from /proc/<pid>/stat; undefined if unreadable. */
  cpuSeconds(): number | undefined {
    try {
      return this.#procView().cpuSeconds();
    } catch {
      return undefined;
    }
  }

  #procView(): ProcView {
    if (this.#state === 'dead') throw new Error('the worker has exited');
    const pid = this.#hostPid();
    if (pid === undefined) throw new Error('the worker has no pid');
    return (this.#proc ??= new ProcView(pid));
  }

  /**
   * The interpreter's pid on the host: the child itself, or, when wrapped, the one under
   * bwrap's own processes (bwrap, then the pid-1 reaper of its pid namespace, then Python).
   */
  #hostPid(): number | undefined {
    if (!this.#wrapped) return this.#child.pid;
    if (this.#statPid === undefined) {
      let pid = this.#child.pid;
      for (let hops = 0; pid !== undefined && hops < 3 && readFileSync(`/proc/${pid}/comm`, 'latin1').trim() === 'bwrap'; hops++) {
        const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim().split(' ');
        pid = Number(children[0]) || undefined;
      }
      this.#statPid = pid;
    }
    return this.#statPid;
  }

  /**
   * What the call that just ended left running (undefined: nothing), for the pool to retire
   * the worker before it serves another call. Threads and children come from /proc, which a
   * routine cannot fake (it can hide a thread from threading.enumerate() with
   * _thread.start_new_thread, or in a subinterpreter from _thread._count()): one fstat and
   * one pread (proc.ts), read even where seccomp refuses fork: the layers a worker reports are
   * its own word.
   */
  leftovers(): Leftovers | undefined {
    const reported = this.#reportedLeft?.length ? this.#reportedLeft : undefined;
    let threads: number;
    let children: number;
    try {
      const proc = this.#procView();
      threads = proc.threads() - 1;
      children = proc.children();
    } catch {
      // Fail closed: a worker whose process cannot be inspected is not trusted with a call.
      return { activity: [...(reported ?? []), 'unverifiable'] };
    }
    if (threads === 0 && children === 0 && !reported) return undefined;
    return { ...(threads ? { threads } : {}), ...(children ? { children } : {}), ...(reported ? { activity: reported } : {}) };
  }

  get state(): State {
    return this.#state;
  }

  ready(): Promise<ReadyInfo> {
    return this.#ready;
  }

  /** Whether the agent has killed (or is killing) this worker, or it died. */
  get killed(): boolean {
    return this.#killReason !== undefined || this.#state === 'dead';
  }

  /**
   * Sends one call; its items and end go to `sink`. The pool guarantees one call at a time.
   * Arguments without bytes go as JSON (the fast path); with bytes, as CBOR.
   */
  call(callId: number, call: WorkerCall, sink: CallSink): void {
    if (this.#state !== 'idle') throw new Error(`worker ${this.id} is ${this.#state}, not idle`);
    this.#state = 'busy';
    this.calls++;
    this.#reportedLeft = undefined;
    const { routine, args, kwargs } = call;
    this.#current = { id: callId, requestId: call.requestId, routine, sink, credit: this.#credits, items: 0, stopping: undefined };
    if (containsBytes(args) || containsBytes(kwargs)) {
      this.#child.stdin.write(writeHeader(encodeCbor({ r: routine, a: args, k: kwargs, c: this.#credits }, HEADER_BYTES), KIND.CALL, ENC.CBOR, callId));
    } else {
      this.#child.stdin.write(encodeFrame(KIND.CALL, ENC.JSON, callId, `{"r":${JSON.stringify(routine)},"a":${JSON.stringify(args)},"k":${JSON.stringify(kwargs)},"c":${this.#credits}}`));
    }
  }

  /** Lets the running call's generator send `n` more items. */
  grant(n: number): void {
    const current = this.#current;
    if (!current || current.stopping || this.#killReason !== undefined || n <= 0) return;
    current.credit += n;
    this.#child.stdin.write(encodeFrame(KIND.GRANT, ENC.JSON, current.id, String(n)));
  }

  /**
   * Ends the running call early for `reason`: a generator that has yielded is asked to stop
   * (its `finally` runs, the worker lives on); anything else is killed at once, as it cannot
   * listen while it runs.
   */
  interrupt(reason: 'deadline' | 'cancelled'): void {
    const current = this.#current;
    if (!current || current.items === 0) return this.kill(reason);
    const error =
      reason === 'deadline'
        ? new SkeinError('SKEIN_ERR_DEADLINE_EXCEEDED', 'the call ran past its deadline; its generator was stopped', { worker: this.id })
        : new SkeinError('SKEIN_ERR_ABORTED', 'the caller cancelled the call; its generator was stopped', { worker: this.id });
    this.stop(error, reason);
  }

  /**
   * Asks the worker to close the running call's generator; the call then fails with `error`.
   * A worker that has not answered within STOP_GRACE_MS is killed (`reason`).
   */
  stop(error: SkeinError, reason: Exclude<KillReason, 'shutdown' | 'recycle'>): void {
    const current = this.#current;
    if (!current || current.stopping || this.#killReason !== undefined) return;
    const timer = setTimeout(() => {
      this.#log.info('generator did not stop in time; killing its worker', { routine: current.routine, requestId: current.requestId, graceMs: STOP_GRACE_MS });
      this.kill(reason, error);
    }, STOP_GRACE_MS);
    current.stopping = { error, timer };
    this.#child.stdin.write(encodeFrame(KIND.STOP, ENC.NONE, current.id));
  }

  /**
   * Kills the worker's whole process group; the current call (if any) settles with `reason`
   * (`message` overrides the caller-facing message; an error replaces the error).
   */
  kill(reason: KillReason, message?: string | SkeinError): void {
    if (this.#state === 'dead') return;
    if (this.#current?.stopping) clearTimeout(this.#current.stopping.timer);
    if (this.#killReason === undefined && this.#current) this.#killedCall = { requestId: this.#current.requestId, routine: this.#current.routine };
    this.#killReason ??= reason;
    const pid = this.#child.pid;
    if (pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        this.#child.kill('SIGKILL');
      }
    }
    if (reason !== 'shutdown' && reason !== 'recycle' && this.#current) {
      if (message instanceof SkeinError) return this.#settle({ ok: false, error: message });
      const code = KILL_REASON_CODES[reason];
      const msg = message
        ? message
        : reason === 'deadline'
          ? 'the call ran past its deadline; its worker was killed'
          : reason === 'cancelled'
            ? 'the caller cancelled the call; its worker was killed'
            : reason === 'oversize'
              ? `the worker's reply exceeded limits.maxResultBytes (${this.#maxReply} bytes); the worker was killed`
              : 'the worker sent a malformed or unexpected reply and was killed';
      this.#settle({ ok: false, error: new SkeinError(code, msg, { worker: this.id }) });
    }
  }

  #settle(outcome: WorkerOutcome): void {
    const current = this.#current;
    this.#current = undefined;
    current?.sink.settle(outcome);
  }

  /** The call's last frame arrived: the worker is idle again. A stopped call fails with the stop's error. */
  #end(outcome: WorkerOutcome): void {
    this.#state = 'idle';
    const stopping = this.#current?.stopping;
    if (stopping) clearTimeout(stopping.timer);
    this.#settle(stopping ? { ok: false, error: stopping.error } : outcome);
  }

  #onData(chunk: Buffer): void {
    // Once the worker is being killed, what it still sends is not read: one violation, one
    // log line, however many chunks were already on the socket.
    if (this.#state === 'dead' || this.#killReason !== undefined) return;
    const refused = this.#frames.push(chunk, this.#frameSink);
    if (refused) this.#refuse(refused);
  }

  #refuse(refused: Refusal): void {
    if (refused.limit === 'protocol') return this.#protocolViolation('protocol', refused.what);
    const message =
      refused.limit === 'bytes'
        ? undefined
        : `the worker's reply would take more than ${this.#frames.budget} bytes of agent memory to decode (${DECODE_BUDGET_FACTOR} × limits.maxResultBytes, at least ${DECODE_BUDGET_FLOOR / 1024 / 1024} MiB): too many arrays, objects or elements; the worker was killed`;
    this.#protocolViolation('oversize', refused.what, message);
  }

  #onFrame(frame: Frame): void {
    if (this.#state === 'starting') {
      if (frame.kind !== KIND.HELLO) return this.#protocolViolation('protocol', 'first frame was not a hello');
      const hello = this.#json(frame);
      return hello && this.#onHello(hello);
    }
    const current = this.#current;
    if (!current) return this.#protocolViolation('protocol', 'reply while no call was running');
    if (frame.id !== current.id) return this.#protocolViolation('protocol', `reply for call ${frame.id} while call ${current.id} was running`);
    switch (frame.kind) {
      case KIND.ITEM: {
        // The credit is what bounds the agent's memory for a stream: past it is a violation.
        if (current.credit <= 0) return this.#protocolViolation('protocol', 'an item beyond the granted credit');
        current.credit--;
        const index = current.items++;
        if (current.stopping) return; // sent before the worker read the stop: dropped
        const item = this.#value(frame, `result[${index}]`);
        if (!item) return;
        if (!item.ok) return this.stop(item.error, 'protocol');
        current.sink.item(item.value, { bytes: frame.payload.length, cost: frame.cost, depth: frame.depth });
        return;
      }
      case KIND.RESULT: {
        const result = this.#value(frame, 'result');
        return result && this.#end(result);
      }
      case KIND.DONE:
        return this.#end({ ok: true, value: undefined, ended: true });
      case KIND.ERROR: {
        const err = this.#json(frame);
        if (!err) return;
        if (typeof err.type !== 'string' || typeof err.message !== 'string') return this.#protocolViolation('protocol', 'error frame without a type and message');
        const trace = typeof err.trace === 'string' ? err.trace : '';
        return this.#end({
          ok: false,
          error: new SkeinError('SKEIN_ERR_ROUTINE_RAISED', `${err.type}: ${err.message}`, { exception: { type: err.type, message: err.message }, trace }),
        });
      }
      case KIND.LEFT: {
        const left = this.#parse(frame);
        if (left === undefined) return;
        if (!Array.isArray(left)) return this.#protocolViolation('protocol', 'left frame is not a list');
        this.#reportedLeft = left.slice(0, MAX_LEFT).map((a) => String(a).slice(0, 32));
        return;
      }
      default:
        return this.#protocolViolation('protocol', 'a second hello');
    }
  }

  /** A JSON payload, parsed; undefined after a violation. */
  #parse(frame: Frame): unknown {
    // Python's json writes ASCII only: other bytes are a forged or broken frame, and decoding
    // them would replace them without a word.
    if (!isUtf8(frame.payload)) return this.#protocolViolation('protocol', 'payload is not valid UTF-8');
    try {
      return JSON.parse(frame.payload.toString('utf8'));
    } catch {
      return this.#protocolViolation('protocol', 'payload is not JSON');
    }
  }

  /** A JSON object payload (hello, error); undefined after a violation. */
  #json(frame: Frame): Record<string, unknown> | undefined {
    const m = this.#parse(frame);
    if (m === undefined) return undefined;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) return this.#protocolViolation('protocol', 'payload is not an object');
    return m as Record<string, unknown>;
  }

  /**
   * A result or item: its value, or ResultNotSerializable for what the caller cannot be given
   * exactly; undefined after a violation.
   */
  #value(frame: Frame, root: string): WorkerOutcome | undefined {
    // Refused here rather than when encoding the response (a stack overflow there) or in the
    // client's decoder, which enforces the same limit. The reader measured the depth on the
    // raw payload.
    if (frame.depth > MAX_DEPTH) return notSerializable(`${root === 'result' ? 'the result' : root} nests deeper than ${MAX_DEPTH} levels`);
    if (frame.enc === ENC.CBOR) {
      try {
        return { ok: true, value: decodeCborValue(frame.payload, root) };
      } catch (err) {
        if (err instanceof SkeinError) return notSerializable(err.message);
        return this.#protocolViolation('protocol', `CBOR payload: ${(err as Error).message}`);
      }
    }
    if (!isUtf8(frame.payload)) return this.#protocolViolation('protocol', 'payload is not valid UTF-8');
    const text = frame.payload.toString('utf8');
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return this.#protocolViolation('protocol', 'payload is not JSON');
    }
    // What JSON.parse would have changed (a Python int beyond 2^53, -0.0, a lone surrogate, a
    // key twice after json turned 1 and "1" into the same key) is refused, not passed on.
    const problem = jsonProblem(text, root);
    if (problem) return notSerializable(`${problem.path}: ${problem.message}`);
    return { ok: true, value };
  }

  #onHello(m: Record<string, unknown>): void {
    if (m.v !== PROTOCOL_VERSION) {
      return this.#protocolViolation('protocol', `the worker speaks protocol v${String(m.v)}, the agent v${PROTOCOL_VERSION} (a bootstrap from another skein version?)`);
    }
    if (m.ready === true && typeof m.pid === 'number') {
      this.#state = 'idle';
      // bubblewrap wraps the interpreter from outside, so confine.py cannot report it.
      const layers = Array.isArray(m.layers) ? m.layers.map(String) : [];
      this.#onReady({ pid: m.pid, python: String(m.python ?? '?'), layers: this.#wrapped ? ['bwrap', ...layers] : layers });
      return;
    }
    const e = m.error as Record<string, unknown> | undefined;
    if (m.ready === false && e && typeof e === 'object' && e.type === 'ConfinementError') {
      this.#fail('start', new SkeinError('SKEIN_ERR_SANDBOX', `worker ${this.id} could not apply a required sandbox layer: ${String(e.message)}`));
      return;
    }
    if (m.ready === false && e && typeof e === 'object') {
      this.#fail('start', new SkeinError('SKEIN_ERR_CONFIG', `routine "${String(e.routine)}" failed to load: ${String(e.type)}: ${String(e.message)}`, { key: `routines.${String(e.routine)}` }));
      return;
    }
    this.#protocolViolation('protocol', 'the hello was not a ready message');
  }

  #protocolViolation(reason: 'protocol' | 'oversize', what: string, message?: string): undefined {
    this.#log.warn('worker protocol violation; killing worker', { reason, what });
    if (this.#state === 'starting') this.#onStartFail(new SkeinError('SKEIN_ERR_WORKER_PROTOCOL', `worker ${this.id} sent an invalid hello: ${what}`));
    this.kill(reason, message);
    return undefined;
  }

  #fail(stage: string, err: SkeinError): void {
    if (this.#state === 'starting') this.#onStartFail(err);
    this.#log.debug('worker failed', { stage, error: err.message });
    this.kill('protocol');
  }

  #exited(code: number | null, signal: string | null): void {
    if (this.#state === 'dead') return;
    const wasStarting = this.#state === 'starting';
    const current = this.#current;
    const call = this.#killedCall ?? (current ? { requestId: current.requestId, routine: current.routine } : undefined);
    this.#state = 'dead';
    if (current?.stopping) clearTimeout(current.stopping.timer);
    this.#proc?.close();
    this.#proc = undefined;
    if (wasStarting) this.#onStartFail(new SkeinError('SKEIN_ERR_WORKER_CRASHED', `worker ${this.id} exited during start-up (code ${code}, signal ${signal})`));
    if (this.#current) {
      this.#settle({
        ok: false,
        error: new SkeinError('SKEIN_ERR_WORKER_CRASHED', `the worker died during the call (${signal ? `signal ${signal}` : `exit code ${code}`})`, { worker: this.id, signal, exitCode: code }),
      });
    }
    this.onExit(this, { code, signal, reason: this.#killReason, stage: wasStarting ? 'start' : call ? 'call' : 'idle', ...(call ? { call } : {}) });
  }
}

/** The call a worker is running. */
interface Running {
  id: number;
  requestId: string | undefined;
  routine: string;
  sink: CallSink;
  /** Items the worker may still send (granted, not yet received). */
  credit: number;
  /** Items received so far. */
  items: number;
  /** Set once a stop frame was sent: the error the call ends with, and the kill timer. */
  stopping: { error: SkeinError; timer: ReturnType<typeof setTimeout> } | undefined;
}

/** A result the caller cannot be given as it is; reported like Python's own ResultNotSerializable. */
function notSerializable(message: string): WorkerOutcome {
  return { ok: false, error: new SkeinError('SKEIN_ERR_ROUTINE_RAISED', `ResultNotSerializable: ${message}`, { exception: { type: 'ResultNotSerializable', message } }) };
}
