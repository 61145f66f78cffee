/**
 * The audit stream (docs/audit.md): one versioned JSON line per security-relevant event,
 * to stderr or an append-only file, separate from the operational log so it can be shipped
 * and kept on its own terms.
 *
 * Every line is `{"schema":"skein.audit/v1","ts":…,"seq":n,"agent":name,"event":kind,…fields}`.
 * `record()` never blocks and never throws: lines are queued (bounded) and written in
 * batches off the hot path, at most one write per WRITE_INTERVAL_MS while lines keep coming
 * (a dispatch records five lines in two event-loop turns: one write per turn cost ~2.5 µs of
 * CPU each); `flush()` and `close()` write at once. A failing sink (cannot open, EACCES, ENOSPC, a vanished
 * directory) never takes the agent down: the failure is logged once as a warning, every
 * line lost is counted through `onFailure`, and the file is tried again on `reopen()`
 * (SIGHUP, after logrotate) or at most every `retryMs`.
 *
 * @example
 *   const audit = createAudit({ sink: 'file', path: '/var/log/skein/audit.jsonl', maxQueueLines: 10_000 }, { log, agent: 'web-1' });
 *   audit.record('authz.decision', { requestId, routine: 'add', outcome: 'allow' });
 *   audit.reopen(); // after logrotate moved the file
 *   await audit.close();
 */
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';

export const AUDIT_SCHEMA = 'skein.audit/v1';

/** Every event kind the stream carries; docs/audit.md documents each one's fields. */
export const AUDIT_EVENTS = [
  'agent.start',
  'agent.stop',
  'plugin.loaded',
  'routine.loaded',
  'authn.decision',
  'authz.decision',
  'call.submitted',
  'call.started',
  'call.completed',
  'worker.spawn',
  'worker.kill',
  'worker.crash',
  'worker.recycle',
  'peer.accepted',
  'peer.evicted',
  'peer.refused',
  'advert.rejected',
  'tls.reloaded',
  'tls.reload_refused',
  'config.reloaded',
  'config.reload_refused',
  'discovery.key_rotated',
] as const;
export type AuditEvent = (typeof AUDIT_EVENTS)[number];

export interface AuditConfig {
  sink: 'stderr' | 'file' | 'off';
  /** Absolute path of the audit file (sink "file"). */
  path?: string;
  /** Lines that may wait for the sink; beyond it lines are dropped and counted. */
  maxQueueLines: number;
}

/** Why lines were lost: the sink failed, or the queue was full (the sink is too slow). */
export type AuditLoss = 'sink' | 'overflow';

export interface AuditDeps {
  log: Logger;
  /** Agent name, on every line. */
  agent: string;
  /** Called with the number of lines lost each time lines are lost (a Prometheus counter). */
  onFailure?: (lines: number, reason: AuditLoss) => void;
  now?: () => Date;
  /** Where sink "stderr" writes; injected by tests. */
  stderr?: (text: string, done: (err?: Error | null) => void) => void;
  /** After a sink failure, how long before a write tries to reopen the file on its own. */
  retryMs?: number;
  /** How long close() waits for queued lines to be written (default 2 s). */
  closeTimeoutMs?: number;
  /** The shortest time between two writes while lines keep coming (default WRITE_INTERVAL_MS). */
  writeIntervalMs?: number;
}

export interface Audit extends Component {
  /** Queues one event; never blocks, never throws. `fields` are JSON data; header keys in them are ignored. */
  record(event: AuditEvent, fields: Record<string, unknown>): void;
  /** Re-opens the audit file (logrotate moved it, or a failed sink should be tried again). */
  reopen(): void;
  /** Resolves once everything recorded (and any pending reopen) has been handed to the sink or counted as lost. */
  flush(): Promise<void>;
  /** Writes what is queued (at most closeTimeoutMs) and closes the file. Idempotent; records after it are dropped. */
  close(): Promise<void>;
  /** Closes the file at once: queued lines are counted as lost. Idempotent; records after it are dropped. */
  destroy(reason?: Error): Promise<void>;
}

/** An audit that records nothing (sink "off", and unit tests of the parts that record). */
export const nullAudit: Audit = {
  record() {},
  reopen() {},
  flush: () => Promise.resolve(),
  close: () => Promise.resolve(),
  destroy: () => Promise.resolve(),
};

const DEFAULT_RETRY_MS = 30_000;
const CLOSE_TIMEOUT_MS = 2_000;
/**
 * Lines recorded within this long of the last write wait for the next one: a sequential
 * dispatch every ~0.4 ms then costs one write per few calls instead of two per call. A line
 * waits at most this long (a process killed meanwhile loses at most these lines); `flush()`,
 * `close()` and `reopen()` do not wait.
 */
export const WRITE_INTERVAL_MS = 2;

export function createAudit(config: AuditConfig, deps: AuditDeps): Audit {
  if (config.sink === 'off') return nullAudit;
  return new AuditStream(config, deps);
}

interface Sink {
  /** Opens (or re-opens) the destination. */
  open(): Promise<void>;
  write(text: string): Promise<void>;
  close(): Promise<void>;
}

class AuditStream implements Audit {
  readonly #deps: AuditDeps;
  readonly #max: number;
  readonly #sink: Sink;
  readonly #describe: Record<string, unknown>;
  #seq = 0;
  #queue: string[] = [];
  #pumping = false;
  /** The coalescing timer (see WRITE_INTERVAL_MS), set while lines wait for it. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastWriteAt = -Infinity;
  readonly #interval: number;
  /** The end of the header, `,"agent":…,"event":…`, per event kind: built once. */
  readonly #tails = new Map<string, string>();
  /** The current second and its ISO text up to the milliseconds: one toISOString() per second, not per line. */
  #secondMs = Number.NaN;
  #secondText = '';
  #opened = false;
  #reopenWanted = false;
  #life = new Lifecycle({ drain: () => this.#drain(), abort: () => this.#abort() });
  /** Set while the sink is failed: lines are counted as lost instead of written. */
  #failedAt: number | undefined;
  /** A failure episode is under way (warned once); it ends with the next successful write. */
  #warnedSink = false;
  #warnedOverflow = false;
  #lostSinceFailure = 0;
  #idle: Array<() => void> = [];

  constructor(config: AuditConfig, deps: AuditDeps) {
    this.#deps = deps;
    this.#max = config.maxQueueLines;
    this.#interval = deps.writeIntervalMs ?? WRITE_INTERVAL_MS;
    if (config.sink === 'file') {
      // The config loader refuses this already; a programmatic caller gets the same answer.
      if (!config.path) throw new SkeinError('SKEIN_ERR_CONFIG', 'config key "audit.path": is required when audit.sink is "file"', { key: 'audit.path' });
      this.#sink = fileSink(config.path);
      this.#describe = { sink: 'file', path: config.path };
    } else {
      this.#sink = stderrSink(deps.stderr);
      this.#describe = { sink: 'stderr' };
    }
  }

  record(event: AuditEvent, fields: Record<string, unknown>): void {
    if (this.#life.closed) return;
    const ts = this.#timestamp();
    const seq = ++this.#seq;
    if (this.#queue.length >= this.#max) {
      this.#lose(1, 'overflow');
      if (!this.#warnedOverflow) {
        this.#warnedOverflow = true;
        this.#deps.log.warn('audit queue full: dropping audit lines', { ...this.#describe, maxQueueLines: this.#max });
      }
      return;
    }
    this.#queue.push(this.#line(event, ts, seq, fields));
    this.#kick(false);
  }

  /**
   * One line: the header written by hand (its values are ours: a timestamp, a number, the
   * agent's name and a fixed event kind), then the caller's fields as JSON.stringify writes
   * them. The fields object is serialised as it is, not copied into a merged object first;
   * a field named like a header key (rare: never on the per-call events) takes the slow path,
   * which keeps the header's place and value. Undefined fields are left out by JSON.stringify.
   */
  #line(event: AuditEvent, ts: string, seq: number, fields: Record<string, unknown>): string {
    let tail = this.#tails.get(event);
    if (tail === undefined) {
      tail = `,"agent":${JSON.stringify(this.#deps.agent)},"event":${JSON.stringify(event)}`;
      this.#tails.set(event, tail);
    }
    if (fields.schema === undefined && fields.ts === undefined && fields.seq === undefined && fields.agent === undefined && fields.event === undefined) {
      let body: string | undefined;
      try {
        body = JSON.stringify(fields);
      } catch {
        // not JSON data: the tolerant form below
      }
      if (typeof body === 'string' && body.charCodeAt(0) === 0x7b /* { */) {
        return `{"schema":"${AUDIT_SCHEMA}","ts":"${ts}","seq":${seq}${tail}${body.length > 2 ? `,${body.slice(1)}` : '}'}\n`;
      }
    }
    const { agent } = this.#deps;
    const line: Record<string, unknown> = { schema: AUDIT_SCHEMA, ts, seq, agent, event, ...fields };
    Object.assign(line, { schema: AUDIT_SCHEMA, ts, seq, agent, event });
    return `${stringify(line)}\n`;
  }

  #timestamp(): string {
    if (this.#deps.now) return this.#deps.now().toISOString();
    const ms = Date.now();
    let frac = ms - this.#secondMs;
    if (!(frac >= 0 && frac < 1000)) {
      frac = ((ms % 1000) + 1000) % 1000;
      this.#secondMs = ms - frac;
      // "2026-11-23T10:00:00." of "2026-11-23T10:00:00.000Z" (whatever the year's width).
      this.#secondText = new Date(this.#secondMs).toISOString().slice(0, -4);
    }
    return `${this.#secondText}${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
  }

  reopen(): void {
    if (this.#life.closed) return;
    this.#reopenWanted = true;
    this.#kick(true);
  }

  flush(): Promise<void> {
    this.#kick(true);
    return this.#drained();
  }

  close(): Promise<void> {
    return this.#life.close();
  }

  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }

  async #drain(): Promise<void> {
    this.#kick(true);
    // A sink that hangs (a stalled NFS mount, a stderr nobody reads) must not hang the stop.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flushed = await Promise.race([this.#drained().then(() => true), new Promise<false>((res) => (timer = setTimeout(res, this.#deps.closeTimeoutMs ?? CLOSE_TIMEOUT_MS, false)))]);
    clearTimeout(timer);
    if (!flushed && this.#queue.length > 0) {
      this.#lose(this.#queue.length, 'sink');
      this.#queue = [];
    }
    await this.#sink.close().catch(() => {});
  }

  async #abort(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#queue.length > 0) this.#lose(this.#queue.length, 'sink');
    this.#queue = [];
    this.#reopenWanted = false;
    await this.#sink.close().catch(() => {});
  }

  #drained(): Promise<void> {
    if (!this.#pumping && this.#queue.length === 0 && !this.#reopenWanted) return Promise.resolve();
    return new Promise((res) => this.#idle.push(res));
  }

  /**
   * Starts a write of what is queued: in the next turn (setImmediate: lines recorded in the
   * same turn go out as one write), or, when the last write was less than the interval ago and
   * nobody waits (`now` false), once the interval has passed.
   */
  #kick(now: boolean): void {
    if (this.#pumping) return;
    if (this.#timer !== undefined) {
      if (!now) return;
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const wait = now ? 0 : this.#lastWriteAt + this.#interval - performance.now();
    if (wait > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#kick(true);
      }, wait);
      return;
    }
    this.#pumping = true;
    setImmediate(() => void this.#pump());
  }

  async #pump(): Promise<void> {
    try {
      while (this.#queue.length > 0 || this.#reopenWanted) {
        // Opened lazily; a failed sink is tried again on reopen() or once retryMs has passed.
        if (this.#reopenWanted || !this.#opened || this.#retryDue()) {
          this.#reopenWanted = false;
          await this.#open();
        }
        const batch = this.#queue;
        this.#queue = [];
        if (batch.length === 0) continue;
        if (this.#failedAt !== undefined) {
          this.#lose(batch.length, 'sink');
          continue;
        }
        this.#lastWriteAt = performance.now();
        try {
          await this.#sink.write(batch.join(''));
          this.#warnedOverflow = false;
          this.#recovered();
        } catch (err) {
          this.#fail(err);
          this.#lose(batch.length, 'sink');
        }
      }
    } finally {
      this.#pumping = false;
      if (this.#idle.length > 0) for (const res of this.#idle.splice(0)) res();
      // A record() that raced the last await is picked up by a new pump.
      if (this.#queue.length > 0 || this.#reopenWanted) this.#kick(false);
    }
  }

  #retryDue(): boolean {
    return this.#failedAt !== undefined && Date.now() - this.#failedAt >= (this.#deps.retryMs ?? DEFAULT_RETRY_MS);
  }

  async #open(): Promise<void> {
    this.#opened = true;
    try {
      await this.#sink.open();
      // Writable again as far as we know; the episode ends with the first successful write.
      this.#failedAt = undefined;
    } catch (err) {
      this.#fail(err);
    }
  }

  /** A write succeeded: if lines were being lost, say how many, and re-arm the warning. */
  #recovered(): void {
    if (!this.#warnedSink) return;
    this.#deps.log.info('audit sink recovered', { ...this.#describe, lost: this.#lostSinceFailure });
    this.#warnedSink = false;
    this.#lostSinceFailure = 0;
  }

  #fail(err: unknown): void {
    this.#failedAt = Date.now();
    if (this.#warnedSink) return;
    this.#warnedSink = true;
    const e = err as NodeJS.ErrnoException;
    this.#deps.log.warn('audit sink failed', {
      ...this.#describe,
      code: e.code,
      error: e.message ?? String(err),
      hint: 'audit lines are dropped and counted (skein_audit_events_dropped_total) until the sink works again; SIGHUP re-opens it',
    });
  }

  #lose(lines: number, reason: AuditLoss): void {
    if (reason === 'sink') this.#lostSinceFailure += lines;
    try {
      this.#deps.onFailure?.(lines, reason);
    } catch {
      // A broken counter must not turn an audit failure into a dispatch failure.
    }
  }
}

/** O_APPEND so concurrent writers and logrotate's copytruncate stay consistent; 0600 on create. */
function fileSink(path: string): Sink {
  let handle: FileHandle | undefined;
  return {
    async open() {
      const old = handle;
      handle = undefined;
      await old?.close().catch(() => {});
      // A missing folder is created (0700, like the state dir): the first start of a fresh
      // install must not lose its agent.start line to a directory nobody made yet.
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      handle = await open(path, 'a', 0o600);
    },
    async write(text) {
      if (!handle) throw new Error(`audit file ${path} is not open`);
      const buf = Buffer.from(text);
      let off = 0;
      while (off < buf.length) off += (await handle.write(buf, off)).bytesWritten;
    },
    async close() {
      const old = handle;
      handle = undefined;
      await old?.close();
    },
  };
}

function stderrSink(write?: AuditDeps['stderr']): Sink {
  const out = write ?? ((text, done) => void process.stderr.write(text, done));
  return {
    open: () => Promise.resolve(),
    write: (text) => new Promise((res, rej) => out(text, (err) => (err ? rej(err) : res()))),
    close: () => Promise.resolve(),
  };
}

/**
 * Fields are JSON data (callers pass err.message, not err). The plain stringify is ~3× faster
 * than one with a replacer; the replacer is only the fallback for what JSON cannot take.
 */
function stringify(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    // fall through to the tolerant form
  }
  try {
    return JSON.stringify(value, (_k, v) => (v instanceof Error ? { name: v.name, message: v.message } : typeof v === 'bigint' ? String(v) : v));
  } catch {
    const { schema, ts, seq, agent, event } = value as Record<string, unknown>;
    return JSON.stringify({ schema, ts, seq, agent, event, unserialisable: true });
  }
}
