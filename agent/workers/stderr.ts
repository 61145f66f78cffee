/**
 * A worker's stderr (a routine's print(), tracebacks, logging) relayed into the agent log,
 * bounded whatever the routine writes. Unbounded, 200,000 empty lines from one call became
 * 200,001 log lines, and a thread left running wrote 93 MB of log in 5 s.
 *
 * - Batching: lines are gathered for up to FLUSH_MS. A batch of at most COALESCE_ABOVE lines
 *   is logged one record per line, as a routine's occasional output reads best; a bigger
 *   batch, or one that fills MAX_RECORD_BYTES (flushed at once), is packed into records of up
 *   to MAX_RECORD_BYTES, each with `lines: n` and its lines joined by "\n" in `line`.
 * - A line longer than MAX_RECORD_BYTES is cut (`truncated: true`); the rest is dropped.
 * - Rate: every record takes one token from a lines bucket and its length from a bytes
 *   bucket (workers.stderr.*: per second, bursts of BURST_SECONDS). A record that does not
 *   fit is dropped and counted (skein_worker_stderr_dropped_total, _bytes_total), with one
 *   "worker stderr dropped" notice at most every NOTICE_INTERVAL_MS.
 * The buckets belong to the pool, shared by its workers (size × the per-worker rates), so a
 * routine that gets its worker replaced over and over (crash, deadline) gets no fresh burst.
 */
import type { Logger } from '../log/index.ts';
import type { StderrDropRecorder } from '../metrics/index.ts';

export const MAX_RECORD_BYTES = 4096;
export const COALESCE_ABOVE = 8;
export const FLUSH_MS = 20;
export const BURST_SECONDS = 10;
export const NOTICE_INTERVAL_MS = 10_000;

export interface StderrLimits {
  /** Agent log lines per second, per worker. */
  linesPerSecond: number;
  /** Bytes of routine output per second in the agent log, per worker. */
  bytesPerSecond: number;
}

class Bucket {
  #tokens: number;
  readonly #rate: number;
  readonly #burst: number;
  #last: number;

  constructor(rate: number, now: number) {
    this.#rate = rate;
    this.#burst = rate * BURST_SECONDS;
    this.#tokens = this.#burst;
    this.#last = now;
  }

  refill(now: number): void {
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#rate);
    this.#last = now;
  }

  get tokens(): number {
    return this.#tokens;
  }

  take(n: number): void {
    this.#tokens -= n;
  }
}

/** The shared budget of one pool's workers, and the drops it has not yet reported. */
export class StderrBudget {
  readonly #lines: Bucket;
  readonly #bytes: Bucket;
  readonly #now: () => number;
  readonly #recorder: StderrDropRecorder | undefined;
  readonly limits: StderrLimits;
  #lastNotice = -Infinity;
  #unreported = { lines: 0, bytes: 0 };

  /** `workers`: how many workers share it; `now` is injectable for unit tests. */
  constructor(limits: StderrLimits, workers: number, recorder?: StderrDropRecorder, now: () => number = () => performance.now()) {
    this.limits = limits;
    this.#now = now;
    this.#recorder = recorder;
    const t = now();
    this.#lines = new Bucket(limits.linesPerSecond * workers, t);
    this.#bytes = new Bucket(limits.bytesPerSecond * workers, t);
  }

  /** Takes one record of `bytes` if both buckets allow it. */
  admit(bytes: number): boolean {
    const t = this.#now();
    this.#lines.refill(t);
    this.#bytes.refill(t);
    if (this.#lines.tokens < 1 || this.#bytes.tokens < bytes) return false;
    this.#lines.take(1);
    this.#bytes.take(bytes);
    return true;
  }

  /** True while not even one more record fits: a flood is then counted, not split into lines. */
  exhausted(): boolean {
    const t = this.#now();
    this.#lines.refill(t);
    this.#bytes.refill(t);
    return this.#lines.tokens < 1 || this.#bytes.tokens < 1;
  }

  /** Counts a drop; logs the notice (with everything unreported so far) when one is due. */
  dropped(lines: number, bytes: number, log: Logger): void {
    if (lines === 0 && bytes === 0) return;
    this.#recorder?.stderrDropped(lines, bytes);
    this.#unreported.lines += lines;
    this.#unreported.bytes += bytes;
    this.notice(log);
  }

  notice(log: Logger): void {
    const t = this.#now();
    if (t - this.#lastNotice < NOTICE_INTERVAL_MS || (this.#unreported.lines === 0 && this.#unreported.bytes === 0)) return;
    this.#lastNotice = t;
    log.warn('worker stderr dropped: over workers.stderr limits', { droppedLines: this.#unreported.lines, droppedBytes: this.#unreported.bytes, ...this.limits });
    this.#unreported = { lines: 0, bytes: 0 };
  }
}

interface Pending {
  text: string;
  bytes: number;
  truncated: boolean;
  requestId: string | undefined;
}

/** One worker's stderr: feed it chunks; `end()` when the stream closes. */
export class StderrRelay {
  readonly #log: Logger;
  readonly #budget: StderrBudget;
  /** Bytes of the unfinished last line (at most MAX_RECORD_BYTES kept). */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** Bytes of the unfinished line beyond MAX_RECORD_BYTES, dropped. */
  #partialCut = 0;
  #batch: Pending[] = [];
  #batchBytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(log: Logger, budget: StderrBudget) {
    this.#log = log;
    this.#budget = budget;
  }

  push(chunk: Buffer, requestId: string | undefined): void {
    let start = 0;
    const last = chunk.lastIndexOf(10);
    if (last !== -1 && !this.#batch.length && this.#budget.exhausted()) {
      // Over budget: count the chunk's complete lines as dropped without building them.
      let lines = 0;
      for (let i = chunk.indexOf(10); i !== -1 && i <= last; i = chunk.indexOf(10, i + 1)) lines++;
      this.#budget.dropped(lines, this.#partialBytes + this.#partialCut + last + 1 - lines, this.#log);
      this.#partial = [];
      this.#partialBytes = 0;
      this.#partialCut = 0;
      start = last + 1;
    }
    for (;;) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const room = MAX_RECORD_BYTES - this.#partialBytes;
      const keep = Math.min(room, end - start);
      if (keep > 0) {
        this.#partial.push(chunk.subarray(start, start + keep));
        this.#partialBytes += keep;
      }
      this.#partialCut += end - start - keep;
      if (nl === -1) break;
      this.#endLine(requestId);
      start = nl + 1;
    }
    if (this.#batch.length) this.#timer ??= setTimeout(() => this.#flush(), FLUSH_MS);
  }

  /** Flushes what is left (an unterminated last line included) and reports any drop. */
  end(): void {
    if (this.#partialBytes || this.#partialCut) this.#endLine(undefined);
    this.#flush();
    this.#budget.notice(this.#log);
  }

  #endLine(requestId: string | undefined): void {
    const bytes = this.#partialBytes;
    const text = this.#partial.length === 1 ? this.#partial[0]!.toString('utf8') : Buffer.concat(this.#partial).toString('utf8');
    const truncated = this.#partialCut > 0;
    if (truncated) this.#budget.dropped(0, this.#partialCut, this.#log);
    this.#partial = [];
    this.#partialBytes = 0;
    this.#partialCut = 0;
    // A batch that would not fit one record is a flood: packed at once, whatever its count.
    if (this.#batch.length && this.#batchBytes + bytes + 1 > MAX_RECORD_BYTES) this.#flush(true);
    this.#batch.push({ text, bytes, truncated, requestId });
    this.#batchBytes += bytes + 1;
  }

  #flush(full = false): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#batch;
    if (!batch.length) return;
    this.#batch = [];
    this.#batchBytes = 0;
    if (!full && batch.length <= COALESCE_ABOVE) {
      for (const l of batch) this.#emit([l]);
      return;
    }
    let group: Pending[] = [];
    let groupBytes = 0;
    for (const l of batch) {
      if (group.length && groupBytes + l.bytes + 1 > MAX_RECORD_BYTES) {
        this.#emit(group);
        group = [];
        groupBytes = 0;
      }
      group.push(l);
      groupBytes += l.bytes + 1;
    }
    this.#emit(group);
  }

  #emit(lines: Pending[]): void {
    const bytes = lines.reduce((n, l) => n + l.bytes, 0);
    if (!this.#budget.admit(bytes)) {
      this.#budget.dropped(lines.length, bytes, this.#log);
      return;
    }
    const first = lines[0]!;
    if (lines.length === 1) {
      // Tagged with the running call's request id so a routine's output can be traced.
      this.#log.warn('worker stderr', { line: first.text, requestId: first.requestId, ...(first.truncated ? { truncated: true } : {}) });
      return;
    }
    const ids = [...new Set(lines.map((l) => l.requestId).filter((id) => id !== undefined))];
    this.#log.warn('worker stderr', {
      line: lines.map((l) => l.text).join('\n'),
      lines: lines.length,
      ...(ids.length <= 1 ? { requestId: ids[0] } : { requestIds: ids }),
      ...(lines.some((l) => l.truncated) ? { truncated: true } : {}),
    });
  }
}
