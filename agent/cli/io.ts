/** What a command needs from the process, so commands are testable without spawning. */
export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  /**
   * Waits while many writes are still queued (a long stream into a slow reader must not pile up
   * in memory); resolves with the first write failure, if any. Absent: nothing to wait for.
   */
  drain?: () => Promise<{ stream: string; error: Error } | undefined>;
}

/**
 * The process's stdout and stderr. Under Bun a write to a pipe is asynchronous, and
 * `process.exit` drops whatever the reader has not taken yet (a 100 KB result piped into
 * `wc -c` arrived as 65,536 bytes). So every write is tracked: `flushOutput()` resolves once
 * the last write of each stream has been handed to the kernel, and reports the first write
 * error (EPIPE, ENOSPC) so the command can exit non-zero instead of losing output silently.
 */
const pending = new Set<Promise<void>>();
let writeError: { stream: string; error: Error } | undefined;

function tracked(stream: NodeJS.WriteStream, name: string): (s: string) => void {
  // A closed reader surfaces as an 'error' event too; without a listener Bun would throw.
  stream.on('error', (error) => {
    writeError ??= { stream: name, error };
  });
  return (s) => {
    const text = s.endsWith('\n') ? s : `${s}\n`;
    const done = new Promise<void>((resolve) => {
      try {
        stream.write(text, (error) => {
          if (error) writeError ??= { stream: name, error };
          resolve();
        });
      } catch (error) {
        writeError ??= { stream: name, error: error as Error };
        resolve();
      }
    });
    pending.add(done);
    void done.then(() => pending.delete(done));
  };
}

/** Writes queued before drain() waits: a few dozen lines in flight keep a pipe busy. */
const DRAIN_BELOW = 64;

export const processIo: Io = {
  out: tracked(process.stdout, 'standard output'),
  err: tracked(process.stderr, 'standard error'),
  drain: async () => {
    while (pending.size >= DRAIN_BELOW && !writeError) await Promise.race([...pending]);
    return writeError;
  },
};

/** Waits until every write so far has reached the kernel; returns the first write failure. */
export async function flushOutput(): Promise<{ stream: string; error: Error } | undefined> {
  while (pending.size > 0) await Promise.all([...pending]);
  return writeError;
}
