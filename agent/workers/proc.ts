/**
 * A worker's process as the kernel shows it in /proc, which a routine cannot fake: its thread
 * and child-process counts (checked after every call, worker.ts leftovers()) and its memory
 * and CPU time (the recycling quotas, pool.ts). The four files are opened once per worker and
 * read with one fstat or pread each into one reused buffer: opening /proc/<pid>/stat and
 * reading it to its end cost four syscalls and a buffer each time.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

const PAGE_SIZE = 4096;
const CLOCK_TICKS = 100; // USER_HZ on Linux
/** /proc/<pid>/stat is ~300 bytes (its comm is at most 15 characters); a list of children past this is counted as far as it goes. */
const READ_BYTES = 1024;

export class ProcView {
  readonly #task: number;
  readonly #children: number;
  readonly #statm: number;
  readonly #stat: number;
  readonly #buf = Buffer.allocUnsafe(READ_BYTES);

  /** Opens the files of `pid`; throws when it cannot (a process gone, /proc not mounted). */
  constructor(pid: number) {
    const opened: number[] = [];
    try {
      for (const [path, flags] of [
        [`/proc/${pid}/task`, constants.O_RDONLY | constants.O_DIRECTORY],
        [`/proc/${pid}/task/${pid}/children`, constants.O_RDONLY],
        [`/proc/${pid}/statm`, constants.O_RDONLY],
        [`/proc/${pid}/stat`, constants.O_RDONLY],
      ] as const)
        opened.push(openSync(path, flags));
    } catch (err) {
      for (const fd of opened) closeSync(fd);
      throw err;
    }
    [this.#task, this.#children, this.#statm, this.#stat] = opened as [number, number, number, number];
  }

  /**
   * The process's threads: the link count of /proc/<pid>/task is 2 + the kernel's thread
   * count (one fstat, ~1 µs; formatting /proc/<pid>/stat cost 5 µs and more with threads).
   * Throws when the process is gone.
   */
  threads(): number {
    const threads = fstatSync(this.#task).nlink - 2;
    if (threads < 1) throw new Error('the process is gone');
    return threads;
  }

  /** Its child processes (/proc/<pid>/task/<pid>/children lists their pids). */
  children(): number {
    let n = readSync(this.#children, this.#buf, 0, READ_BYTES, 0);
    // The list ends with a space: count the pids, not the separators.
    while (n > 0 && this.#buf[n - 1] === 0x20) n--;
    if (n === 0) return 0;
    let count = 1;
    for (let i = 0; i < n; i++) if (this.#buf[i] === 0x20) count++;
    return count;
  }

  /** Resident memory in bytes (statm's second field, in pages). */
  rssBytes(): number {
    const text = this.#read(this.#statm);
    return Number(text.split(' ', 2)[1]) * PAGE_SIZE;
  }

  /** User + system CPU seconds used so far (stat's 14th and 15th fields). */
  cpuSeconds(): number {
    const stat = this.#read(this.#stat);
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  }

  close(): void {
    for (const fd of [this.#task, this.#children, this.#statm, this.#stat]) closeSync(fd);
  }

  #read(fd: number): string {
    return this.#buf.toString('latin1', 0, readSync(fd, this.#buf, 0, READ_BYTES, 0));
  }
}
