/**
 * Group commit for the calls store: the writes asked for during one turn of the event loop
 * (submissions, status changes, results, cancellations) are applied in one transaction and
 * cost one fsync, instead of one each. Each write's promise settles only after the commit
 * that holds it: resolved once it is durable, or rejected — together with every other write
 * of that commit, none of which was kept — when the commit fails (disk full, I/O error,
 * read-only file system).
 *
 * There is no timer: a batch is flushed by setImmediate, after the I/O callbacks of the turn
 * that asked for it. While a commit fsyncs (bun:sqlite is synchronous, so the loop waits),
 * the next requests pile up in the sockets and arrive together in the next turn: the busier
 * the agent, the larger the batches, and an idle agent commits a lone write at once.
 *
 * Writes are applied in the order they were asked for. A batch holds at most MAX_BATCH
 * writes; the rest go to the next one, so one commit never holds the loop for long.
 */
import type { Database } from 'bun:sqlite';

/** Writes per transaction at most. */
const MAX_BATCH = 1000;

interface Pending {
  apply(): unknown;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

export class GroupCommit {
  #db: Database;
  #failed: (err: unknown) => Error;
  #pending: Pending[] = [];
  #scheduled: ReturnType<typeof setImmediate> | undefined;

  /** `failed` turns what the commit threw into the error every write of that commit is rejected with. */
  constructor(db: Database, failed: (err: unknown) => Error) {
    this.#db = db;
    this.#failed = failed;
  }

  /**
   * Runs `apply` in the next commit's transaction and resolves with what it returned once
   * that commit is durable. `apply` does SQL only: a failed commit undoes it with the rest of
   * its batch, and anything else it changed would not be undone.
   */
  write<T>(apply: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ apply, resolve: resolve as (v: unknown) => void, reject });
      this.#scheduled ??= setImmediate(() => this.flush());
    });
  }

  /** Commits what is pending now (the store's close calls it before the file is closed). */
  flush(): void {
    clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, MAX_BATCH);
      this.#commit(batch);
      // More than a batch waiting: let the loop serve other work between commits.
      if (this.#pending.length > 0) {
        this.#scheduled = setImmediate(() => this.flush());
        return;
      }
    }
  }

  #commit(batch: Pending[]): void {
    const db = this.#db;
    const values: unknown[] = [];
    try {
      db.exec('BEGIN IMMEDIATE');
      for (const w of batch) values.push(w.apply());
      db.exec('COMMIT');
    } catch (err) {
      // SQLite may already have rolled back (it does for SQLITE_FULL and I/O errors in some
      // states); whichever it is, nothing of this batch is kept and the next one starts clean.
      if (db.inTransaction) {
        try {
          db.exec('ROLLBACK');
        } catch {
          // Already rolled back by SQLite: nothing more to undo.
        }
      }
      const error = this.#failed(err);
      for (const w of batch) w.reject(error);
      return;
    }
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve(values[i]);
  }
}
