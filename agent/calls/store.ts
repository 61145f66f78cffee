/**
 * The async calls' results store: one SQLite file (Bun's built-in `bun:sqlite`, WAL mode)
 * holding every accepted async call, its arguments, status and result or error. It is the
 * promise behind "nothing accepted is lost": a call is committed here before its 202 is sent,
 * and a restarted agent finds it again (docs/calls.md).
 *
 * Bounded: `calls.maxStored` rows and `calls.maxBytes` bytes of arguments, results and
 * errors. A submission past either bound is refused with SKEIN_ERR_STORE_FULL; an accepted
 * call is never dropped to make room. A result that does not fit is stored as a failure
 * naming the bound. Finished calls are forgotten `calls.resultTtlMs` after they finished: a
 * bounded periodic sweep on an unref'd timer deletes them, and a submission that finds the
 * store full sweeps first; until the sweep runs, an expired call already reads as absent.
 *
 * Writes are group-committed (group-commit.ts): the submissions, status changes, results
 * and cancellations asked for in one turn of the event loop share one transaction and one
 * fsync, and each write's promise settles after the commit holding it — a submission is
 * answered 202 only once its row is durable, and a failed commit fails every write in it
 * with SKEIN_ERR_STORE_WRITE (none of them was kept). Reads see committed rows only.
 *
 * One agent owns the file. Counters of rows and bytes are kept in memory (read once at open),
 * so admission costs no query; they count pending writes too (a submission takes its room
 * when it is asked for, and gives it back if its commit fails).
 *
 * `bun:sqlite` exists only under Bun: it is imported inside open(), so modules that import
 * this file still load under Node (vitest); tests drive the store through the binary or a Bun
 * harness (test/unit/calls-store.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Database, Statement } from 'bun:sqlite';
import { Decoder, Encoder } from 'cbor-x';
import { SkeinError } from '../../common/errors/index.ts';
import type { AgentConfig } from '../config/schema.ts';
import { released, type Component } from '../lifecycle/index.ts';
import { GroupCommit } from './group-commit.ts';
import { PRIORITIES, type Priority } from '../workers/call.ts';

export const CALL_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'] as const;
export type CallStatus = (typeof CALL_STATUSES)[number];
/** Statuses a call never leaves: its result (or error) is final and expires after calls.resultTtlMs. */
export const FINISHED: ReadonlySet<CallStatus> = new Set(['succeeded', 'failed', 'cancelled', 'interrupted']);

let sqliteModule: Promise<typeof import('bun:sqlite') | undefined> | undefined;

/** Bun's SQLite, or undefined under a runtime without it (Node). Imported once, on first use. */
function loadSqlite(): Promise<typeof import('bun:sqlite') | undefined> {
  return (sqliteModule ??= import('bun:sqlite').catch(() => undefined));
}

/** Whether this runtime can open a store (the compiled agent always can). */
export async function sqliteAvailable(): Promise<boolean> {
  return (await loadSqlite()) !== undefined;
}

/** The store's file: calls.store, or calls.db in agent.stateDir. */
export function storePathOf(config: Pick<AgentConfig, 'agent' | 'calls'>): string {
  return resolve(config.calls.store ?? join(config.agent.stateDir, 'calls.db'));
}

/** A call id: 18 random bytes (144 bits) as base64url, 24 characters: unguessable and URL-safe. */
export const CALL_ID = /^[A-Za-z0-9_-]{24}$/;
export function newCallId(): string {
  return randomBytes(18).toString('base64url');
}

export interface CallError {
  code: string;
  message: string;
  meta?: Record<string, unknown>;
}

/** A stored call as GET /v1/calls/:id shows it (the arguments stay in the store). */
export interface StoredCall {
  id: string;
  owner: string;
  routine: string;
  status: CallStatus;
  priority: Priority;
  timeoutMs: number;
  submittedAt: number;
  startedAt?: number;
  finishedAt?: number;
  result?: unknown;
  error?: CallError;
  /** Bytes this call holds in the store (arguments, result or error). */
  bytes: number;
}

/** A queued call with what it takes to run it. */
export interface RunnableCall extends StoredCall {
  args: unknown[];
  kwargs: Record<string, unknown>;
  requestId?: string;
}

export interface Submission {
  owner: string;
  routine: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  priority: Priority;
  timeoutMs: number;
  requestId?: string;
}

export type Outcome = { ok: true; value: unknown } | { ok: false; error: CallError };

export interface StoreOptions {
  path: string;
  maxStored: number;
  maxBytes: number;
  resultTtlMs: number;
  /** Wall clock, ms (injectable so expiry can be tested without sleeping). */
  now?: () => number;
}

/** Rows deleted by one sweep at most: a sweep never holds the database for long. */
const SWEEP_BATCH = 2000;
/** How often expired calls are swept (at most; sooner when resultTtlMs is shorter). */
const SWEEP_EVERY_MS = 60_000;

// Plain objects, byte strings for Uint8Array, integers as numbers: what went in comes out.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: false, int64AsNumber: true } as ConstructorParameters<typeof Decoder>[0]);

interface Row {
  seq: number;
  id: string;
  owner: string;
  routine: string;
  priority: number;
  timeout_ms: number;
  status: CallStatus;
  result: Uint8Array | null;
  error: string | null;
  submitted_at: number;
  started_at: number | null;
  finished_at: number | null;
  bytes: number;
  request_id: string | null;
  args?: Uint8Array;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS calls (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  owner TEXT NOT NULL,
  routine TEXT NOT NULL,
  args BLOB NOT NULL,
  priority INTEGER NOT NULL,
  timeout_ms INTEGER NOT NULL,
  status TEXT NOT NULL,
  result BLOB,
  error TEXT,
  submitted_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  bytes INTEGER NOT NULL,
  request_id TEXT
);
CREATE INDEX IF NOT EXISTS calls_queue ON calls (status, priority, owner, seq);
CREATE INDEX IF NOT EXISTS calls_owner ON calls (owner, seq);
-- The oldest queued call of a level (aging, see runner.ts), asked for on every pick: without
-- it that is a scan and sort of every queued call, and a backlog of N runs in O(N²).
CREATE INDEX IF NOT EXISTS calls_waiting ON calls (priority, seq) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS calls_finished ON calls (finished_at) WHERE finished_at IS NOT NULL;
`;

const COLUMNS = 'seq, id, owner, routine, priority, timeout_ms, status, result, error, submitted_at, started_at, finished_at, bytes, request_id';

export class CallStore implements Component {
  readonly path: string;
  #db: Database;
  #opts: Required<StoreOptions>;
  #count = 0;
  #bytes = 0;
  #sweeper: ReturnType<typeof setTimeout> | undefined;
  #life: Component & { readonly closed: boolean };
  #q: Record<string, Statement>;
  #commits: GroupCommit;

  private constructor(db: Database, opts: Required<StoreOptions>) {
    this.#db = db;
    this.#opts = opts;
    this.path = opts.path;
    const q = (sql: string) => db.query(sql);
    this.#q = {
      insert: q(
        'INSERT INTO calls (id, owner, routine, args, priority, timeout_ms, status, submitted_at, bytes, request_id) VALUES ($id, $owner, $routine, $args, $priority, $timeout, $status, $at, $bytes, $requestId)',
      ),
      get: q(`SELECT ${COLUMNS} FROM calls WHERE id = $id`),
      args: q('SELECT args FROM calls WHERE id = $id'),
      listAll: q(`SELECT ${COLUMNS} FROM calls WHERE owner = $owner ORDER BY seq DESC LIMIT $limit`),
      listStatus: q(`SELECT ${COLUMNS} FROM calls WHERE owner = $owner AND status = $status ORDER BY seq DESC LIMIT $limit`),
      start: q("UPDATE calls SET status = 'running', started_at = $at WHERE id = $id AND status = 'queued'"),
      finish: q("UPDATE calls SET status = $status, result = $result, error = $error, finished_at = $at, bytes = bytes + $added WHERE id = $id AND status = 'running'"),
      requeue: q("UPDATE calls SET status = 'queued', started_at = NULL WHERE id = $id AND status = 'running'"),
      cancel: q("UPDATE calls SET status = 'cancelled', finished_at = $at WHERE id = $id AND status IN ('queued', 'running') RETURNING status"),
      sweep: q('DELETE FROM calls WHERE seq IN (SELECT seq FROM calls WHERE finished_at IS NOT NULL AND finished_at <= $before ORDER BY finished_at LIMIT $limit) RETURNING bytes'),
      oldestFinished: q('SELECT MIN(finished_at) AS at FROM calls WHERE finished_at IS NOT NULL'),
      oldestQueued: q("SELECT submitted_at AS at FROM calls WHERE status = 'queued' AND priority = $priority ORDER BY seq LIMIT 1"),
      // Round robin between owners: the first owner after the last one served (then from the
      // start), and that owner's oldest call. Served by the calls_queue index.
      nextAfter: q("SELECT id FROM calls WHERE status = 'queued' AND priority = $priority AND owner > $owner ORDER BY owner, seq LIMIT 1"),
      nextOf: q("SELECT id FROM calls WHERE status = 'queued' AND priority = $priority AND owner = $owner ORDER BY seq LIMIT $limit"),
    };
    const totals = db.query('SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM calls').get() as { n: number; b: number };
    this.#count = totals.n;
    this.#bytes = totals.b;
    this.#commits = new GroupCommit(db, (err) => this.#writeFailed(err));
    this.#life = released(() => {
      clearTimeout(this.#sweeper);
      // What was asked for before the close is committed (and its callers answered) first.
      this.#commits.flush();
      // Folds the WAL back into the database file so the store is one file at rest.
      db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
      db.close();
    });
    this.#scheduleSweep();
  }

  /**
   * Opens (or creates) the store. A folder that cannot be written fails with the errno of
   * the failing step and the store's path, which start-up turns into SKEIN_ERR_CONFIG naming
   * calls.store (runtime/startup-error.ts).
   */
  static async open(options: StoreOptions): Promise<CallStore> {
    const path = resolve(options.path);
    const dir = dirname(path);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    try {
      // WAL mode writes -wal and -shm files next to the database: the folder must be writable
      // even when the file exists (access(W_OK) also reports EROFS).
      accessSync(dir, constants.W_OK);
      if (existsSync(path)) accessSync(path, constants.R_OK | constants.W_OK);
    } catch (err) {
      throw Object.assign(new Error((err as Error).message), { code: (err as NodeJS.ErrnoException).code, syscall: 'open', path });
    }
    const sqlite = await loadSqlite();
    if (!sqlite) throw new SkeinError('SKEIN_ERR_INTERNAL', 'the calls store needs the Bun runtime (bun:sqlite); run the compiled agent');
    let db: Database | undefined;
    try {
      db = new sqlite.Database(path, { create: true, strict: true });
      // One agent per store: two agents sharing one would both run its queued calls. The
      // exclusive locking mode keeps the file lock taken by the first write (below) until the
      // connection closes (the kernel drops it if the process dies), and busy_timeout 0 makes
      // a second opener fail at once instead of waiting. In this mode WAL keeps its index in
      // memory instead of a -shm file.
      db.exec('PRAGMA locking_mode = EXCLUSIVE');
      db.exec('PRAGMA busy_timeout = 0');
      const mode = db.query('PRAGMA journal_mode = WAL').get() as { journal_mode: string };
      if (mode.journal_mode !== 'wal') throw new Error(`journal_mode is ${mode.journal_mode}, not wal`);
      // Durability before the 202. In WAL mode a commit is an append to the -wal file: with
      // synchronous=NORMAL that append reaches the kernel before the commit returns, which
      // already survives kill -9 of the agent, but the WAL is fsynced only at checkpoints, so
      // a power cut or kernel crash could lose calls the caller was told were accepted. FULL
      // fsyncs the WAL on every commit: an accepted call survives both. The price is one
      // fsync per commit, shared by every write of its turn (group-commit.ts).
      db.exec('PRAGMA synchronous = FULL');
      db.exec('BEGIN EXCLUSIVE');
      db.exec('COMMIT');
      db.exec(SCHEMA);
    } catch (err) {
      db?.close();
      if (isBusy(err)) throw storeInUse(path, err);
      throw new SkeinError('SKEIN_ERR_CONFIG', `cannot open the calls store ${path} (calls.store): ${(err as Error).message}`, { key: 'calls.store', path }, { cause: err });
    }
    return new CallStore(db, { now: Date.now, ...options, path });
  }

  /** Calls held and their bytes. */
  get stats(): { stored: number; bytes: number } {
    return { stored: this.#count, bytes: this.#bytes };
  }

  /** Calls held by status, every status present (for /metrics; one indexed query per scrape). */
  countByStatus(): Record<CallStatus, number> {
    const out = Object.fromEntries(CALL_STATUSES.map((s) => [s, 0])) as Record<CallStatus, number>;
    if (this.#life.closed) return out; // the database may be closed: a scrape during the stop sees none
    for (const row of this.#db.query('SELECT status, COUNT(*) AS n FROM calls GROUP BY status').all() as Array<{ status: CallStatus; n: number }>) out[row.status] = row.n;
    return out;
  }

  /**
   * Stores a new queued call; resolves with it once it is committed (and fsynced). Throws
   * SKEIN_ERR_STORE_FULL at once when the store is at calls.maxStored or the arguments would
   * pass calls.maxBytes (after sweeping what expired); rejects with SKEIN_ERR_STORE_WRITE when
   * its commit fails, and the call was then not stored.
   */
  submit(s: Submission): Promise<StoredCall> {
    this.#usable();
    const args = encoder.encode([s.args, s.kwargs]);
    if (!this.#fits(1, args.length)) {
      this.sweep(Number.MAX_SAFE_INTEGER);
      if (!this.#fits(1, args.length)) throw this.#full(args.length);
    }
    const call: StoredCall = {
      id: newCallId(),
      owner: s.owner,
      routine: s.routine,
      status: 'queued',
      priority: s.priority,
      timeoutMs: s.timeoutMs,
      submittedAt: this.#opts.now(),
      bytes: args.length,
    };
    const row = {
      id: call.id,
      owner: call.owner,
      routine: call.routine,
      args,
      priority: PRIORITIES.indexOf(s.priority),
      timeout: s.timeoutMs,
      status: 'queued',
      at: call.submittedAt,
      bytes: call.bytes,
      requestId: s.requestId ?? null,
    };
    // Its room is taken now, so the submissions of one turn cannot overfill the store together.
    this.#count++;
    this.#bytes += call.bytes;
    return this.#write(() => this.#q.insert!.run(row)).then(
      () => call,
      (err: Error) => {
        this.#count--;
        this.#bytes -= call.bytes;
        throw err;
      },
    );
  }

  /** The call, or undefined when there is none (or it expired). */
  get(id: string): StoredCall | undefined {
    this.#usable();
    const row = this.#q.get!.get({ id }) as Row | null;
    return row && !this.#expired(row) ? toCall(row) : undefined;
  }

  /** A queued call with its arguments, for the runner. */
  runnable(id: string): RunnableCall | undefined {
    const call = this.get(id);
    if (!call || call.status !== 'queued') return undefined;
    const row = this.#q.args!.get({ id }) as { args: Uint8Array };
    const [args, kwargs] = decode(row.args) as [unknown[], Record<string, unknown>];
    const requestId = (this.#q.get!.get({ id }) as Row).request_id;
    return { ...call, args, kwargs, ...(requestId ? { requestId } : {}) };
  }

  /** The owner's calls, newest first. */
  list(owner: string, opts: { status?: CallStatus; limit: number }): StoredCall[] {
    this.#usable();
    const rows = (opts.status ? this.#q.listStatus!.all({ owner, status: opts.status, limit: opts.limit }) : this.#q.listAll!.all({ owner, limit: opts.limit })) as Row[];
    return rows.filter((r) => !this.#expired(r)).map(toCall);
  }

  /** When the oldest queued call of this priority was submitted (undefined: none queued). */
  oldestQueued(priority: Priority): number | undefined {
    const row = this.#q.oldestQueued!.get({ priority: PRIORITIES.indexOf(priority) }) as { at: number } | null;
    return row?.at;
  }

  /**
   * Ids of queued calls of this priority to try next: the oldest calls of the first owner
   * after `afterOwner` in round-robin order (wrapping to the first owner), up to `limit`.
   */
  nextQueued(priority: Priority, afterOwner: string, limit: number): { owner: string; ids: string[] } | undefined {
    const p = PRIORITIES.indexOf(priority);
    const hit = (this.#q.nextAfter!.get({ priority: p, owner: afterOwner }) ?? this.#q.nextAfter!.get({ priority: p, owner: '' })) as { id: string } | null;
    if (!hit) return undefined;
    const owner = (this.#q.get!.get({ id: hit.id }) as Row).owner;
    const ids = (this.#q.nextOf!.all({ priority: p, owner, limit }) as Array<{ id: string }>).map((r) => r.id);
    return { owner, ids };
  }

  /**
   * queued → running, committed before the call is handed to a pool (the runner waits for it),
   * so a crash can never leave a call that a worker may have run reading as queued. False
   * when the call was no longer queued (cancelled meanwhile).
   */
  start(id: string): Promise<boolean> {
    const at = this.#opts.now();
    return this.#write(() => this.#q.start!.run({ id, at }).changes === 1);
  }

  /** running → queued: the pool never started it (it was shutting down or full). */
  requeue(id: string): Promise<boolean> {
    return this.#write(() => this.#requeueRow(id));
  }

  /**
   * running → succeeded / failed / interrupted; resolves with its final status once committed
   * (so nothing reports a result that is not durable yet). A result that would pass
   * calls.maxBytes is stored as a failure saying so (the call is not lost, its result is).
   * Undefined when the call was no longer running (cancelled meanwhile): its status stands.
   */
  finish(id: string, outcome: Outcome | { interrupted: true }): Promise<{ status: CallStatus; error?: CallError } | undefined> {
    const row = this.#finishRow(id, outcome);
    // Taken now, like a submission's room; given back if the call had left `running`.
    this.#bytes += row.added;
    return this.#write(() => this.#q.finish!.run(row).changes === 1).then(
      (changed) => {
        if (changed) return { status: row.status, ...(row.error ? { error: JSON.parse(row.error) as CallError } : {}) };
        this.#bytes -= row.added;
        return undefined;
      },
      (err: Error) => {
        this.#bytes -= row.added;
        throw err;
      },
    );
  }

  /**
   * Cancels a queued or running call; resolves, once that is committed, with the status it
   * had ("queued" / "running"), or undefined when it had already finished. It is ordered with
   * the other writes: a result committed before it stands.
   */
  cancel(id: string): Promise<'queued' | 'running' | undefined> {
    const at = this.#opts.now();
    return this.#write(() => {
      // Inside the commit's transaction: the status read is the one the update changes.
      const before = (this.#q.get!.get({ id }) as Row | null)?.status;
      if (before !== 'queued' && before !== 'running') return undefined;
      this.#q.cancel!.run({ id, at });
      return before;
    });
  }

  /**
   * After a restart: calls found running were cut off by the agent's death. They become
   * `interrupted`, or `queued` again when `rerun(routine)` says the routine is idempotent.
   */
  recover(rerun: (routine: string) => boolean): { requeued: string[]; interrupted: string[] } {
    const running = this.#db.query("SELECT id, routine FROM calls WHERE status = 'running'").all() as Array<{ id: string; routine: string }>;
    const out = { requeued: [] as string[], interrupted: [] as string[] };
    this.#db.transaction(() => {
      for (const { id, routine } of running) {
        if (rerun(routine)) {
          this.#requeueRow(id);
          out.requeued.push(id);
        } else {
          const row = this.#finishRow(id, { interrupted: true });
          if (this.#q.finish!.run(row).changes === 1) this.#bytes += row.added;
          out.interrupted.push(id);
        }
      }
    })();
    return out;
  }

  /** Deletes up to `limit` calls whose result expired; returns how many. */
  sweep(limit = SWEEP_BATCH): number {
    if (this.#life.closed) return 0;
    const before = this.#opts.now() - this.#opts.resultTtlMs;
    let deleted = 0;
    while (deleted < limit) {
      const rows = this.#q.sweep!.all({ before, limit: Math.min(SWEEP_BATCH, limit - deleted) }) as Array<{ bytes: number }>;
      for (const r of rows) this.#bytes -= r.bytes;
      this.#count -= rows.length;
      deleted += rows.length;
      if (rows.length < SWEEP_BATCH) break;
    }
    return deleted;
  }

  close(): Promise<void> {
    return this.#life.close();
  }

  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }

  /** A write for the next group commit; refused once the store is closing (what came before is flushed by the close). */
  #write<T>(apply: () => T): Promise<T> {
    if (this.#life.closed) return Promise.reject(new SkeinError('SKEIN_ERR_SHUTTING_DOWN', 'the agent is shutting down: the async results store takes no more writes'));
    return this.#commits.write(apply);
  }

  #requeueRow(id: string): boolean {
    return this.#q.requeue!.run({ id }).changes === 1;
  }

  /** The finish statement's parameters for this outcome, and the bytes it adds to the store. */
  #finishRow(id: string, outcome: Outcome | { interrupted: true }): { id: string; status: CallStatus; result: Uint8Array | null; error: string | null; at: number; added: number } {
    let status: CallStatus;
    let result: Uint8Array | null = null;
    let error: string | null = null;
    if ('interrupted' in outcome) {
      status = 'interrupted';
      error = JSON.stringify({ code: 'SKEIN_ERR_SHUTTING_DOWN', message: 'the agent stopped while the call ran; the routine is not declared idempotent, so it was not run again' });
    } else if (outcome.ok) {
      status = 'succeeded';
      result = encoder.encode(outcome.value);
      if (!this.#fits(0, result.length)) {
        this.sweep(Number.MAX_SAFE_INTEGER);
        if (!this.#fits(0, result.length)) {
          status = 'failed';
          error = JSON.stringify({
            code: 'SKEIN_ERR_RESULT_TOO_LARGE',
            message: `the result (${result.length} bytes) does not fit in the async results store: it holds ${this.#bytes} of calls.maxBytes ${this.#opts.maxBytes} bytes; the result was dropped`,
            meta: { resultBytes: result.length, limit: this.#opts.maxBytes },
          });
          result = null;
        }
      }
    } else {
      status = 'failed';
      error = JSON.stringify(outcome.error);
    }
    const added = (result?.length ?? 0) + (error ? Buffer.byteLength(error) : 0);
    return { id, status, result, error, at: this.#opts.now(), added };
  }

  /** What every write of a failed commit is rejected with: the store's path and SQLite's own words. */
  #writeFailed(err: unknown): SkeinError {
    const e = err as Error & { code?: string };
    const code = typeof e.code === 'string' ? e.code : undefined;
    return new SkeinError(
      'SKEIN_ERR_STORE_WRITE',
      `the async results store could not commit to ${this.path} (calls.store): ${e.message}${code ? ` (${code})` : ''}; nothing in that commit was stored, so this request had no effect: retry once the store's file system can be written again`,
      { path: this.path, ...(code ? { sqlite: code } : {}) },
      { cause: err },
    );
  }

  #scheduleSweep(): void {
    const every = Math.min(SWEEP_EVERY_MS, this.#opts.resultTtlMs);
    this.#sweeper = setTimeout(() => {
      // A full batch means more may be waiting: come back soon rather than sweep without bound.
      const n = this.sweep(SWEEP_BATCH);
      if (this.#life.closed) return;
      if (n === SWEEP_BATCH) this.#sweeper = setTimeout(() => this.#scheduleSweep(), 10).unref();
      else this.#scheduleSweep();
    }, every).unref();
  }

  #usable(): void {
    if (this.#life.closed) throw new SkeinError('SKEIN_ERR_SHUTTING_DOWN', 'the agent is shutting down and accepts no new calls');
  }

  #fits(rows: number, bytes: number): boolean {
    return this.#count + rows <= this.#opts.maxStored && this.#bytes + bytes <= this.#opts.maxBytes;
  }

  #expired(row: Row): boolean {
    return row.finished_at !== null && row.finished_at + this.#opts.resultTtlMs <= this.#opts.now();
  }

  #full(bytes: number): SkeinError {
    const { maxStored, maxBytes, resultTtlMs } = this.#opts;
    const which =
      this.#count + 1 > maxStored
        ? `it holds ${this.#count} calls (calls.maxStored ${maxStored})`
        : `it holds ${this.#bytes} bytes and the call's arguments take ${bytes} more (calls.maxBytes ${maxBytes})`;
    // Room comes back when the oldest finished call expires; with none finished, a TTL away at best.
    const oldest = (this.#q.oldestFinished!.get({}) as { at: number | null }).at;
    const untilMs = oldest === null ? resultTtlMs : oldest + resultTtlMs - this.#opts.now();
    const retryAfterSeconds = Math.min(3600, Math.max(1, Math.ceil(untilMs / 1000)));
    return new SkeinError('SKEIN_ERR_STORE_FULL', `the async results store is full: ${which}; accepted calls are never dropped to make room, retry later`, {
      stored: this.#count,
      bytes: this.#bytes,
      retryAfterSeconds,
    });
  }
}

function toCall(r: Row): StoredCall {
  return {
    id: r.id,
    owner: r.owner,
    routine: r.routine,
    status: r.status,
    priority: PRIORITIES[r.priority] ?? 'normal',
    timeoutMs: r.timeout_ms,
    submittedAt: r.submitted_at,
    ...(r.started_at !== null ? { startedAt: r.started_at } : {}),
    ...(r.finished_at !== null ? { finishedAt: r.finished_at } : {}),
    ...(r.result !== null ? { result: decode(r.result) } : {}),
    ...(r.error !== null ? { error: JSON.parse(r.error) as CallError } : {}),
    bytes: r.bytes,
  };
}

/** CBOR back to plain values: maps become objects with every key kept as is ("__proto__" too). */
function decode(bytes: Uint8Array): unknown {
  return plain(decoder.decode(bytes));
}

function plain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of v) Object.defineProperty(out, String(k), { value: plain(x), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return v;
}

/** SQLITE_BUSY (or its extended codes): another connection holds the lock. */
function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code.startsWith('SQLITE_BUSY') : /database is locked/.test((err as Error)?.message ?? '');
}

/** The store is held by another agent (or another process): start-up stops naming the key. */
export function storeInUse(path: string, cause?: unknown): SkeinError {
  return new SkeinError(
    'SKEIN_ERR_CONFIG',
    `the calls store ${path} (calls.store) is in use by another agent: two agents must not share one store (each would run the other's queued calls); give each its own agent.stateDir or calls.store`,
    { key: 'calls.store', path },
    { cause },
  );
}
