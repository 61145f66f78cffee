/**
 * The processes a bench starts: each one's output goes to a log file in the bench's scratch
 * directory (a pipe read by the bench would wake it for every log line and bill the process
 * measured a context switch per call), and each one is stopped by its PID when the bench ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

export interface Started {
  proc: ChildProcess;
  match: RegExpMatchArray;
  /** Milliseconds from spawn until the pattern appeared (polled every `pollMs`, 5 ms by default). */
  readyMs: number;
  logFile: string;
}

export interface StartOptions {
  /** Where to look for the pattern: the log file (stderr) or a pipe on stdout. */
  stream: 'stdout' | 'stderr';
  env?: Record<string, string | undefined>;
  /** Keep stdin as a pipe (drivers that take commands on it). */
  stdin?: boolean;
  timeoutMs?: number;
  cwd?: string;
  /** How often the log file is read for the pattern (ms); the cold-start bench polls finer. */
  pollMs?: number;
}

export class Procs {
  readonly dir = mkdtempSync(join(tmpdir(), 'skein-bench-'));
  readonly #children: ChildProcess[] = [];

  constructor() {
    process.on('exit', () => this.stopAll());
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.on(sig, () => {
        this.stopAll();
        process.exit(130);
      });
    }
  }

  /** Starts `cmd` and resolves with the first match of `pattern` in its output. */
  start(cmd: string, args: string[], pattern: RegExp, opts: StartOptions): Promise<Started> {
    const logFile = join(this.dir, `${basename(cmd)}-${this.#children.length}.log`);
    const fd = openSync(logFile, 'w');
    const started = performance.now();
    const proc = spawn(cmd, args, {
      cwd: opts.cwd ?? this.dir,
      stdio: [opts.stdin ? 'pipe' : 'ignore', opts.stream === 'stderr' ? 'ignore' : 'pipe', fd],
      env: { ...process.env, CBOR_NATIVE_ACCELERATION_DISABLED: 'true', ...opts.env },
    });
    closeSync(fd);
    this.#children.push(proc);
    return new Promise((res, rej) => {
      let seen = '';
      let done = false;
      const check = () => {
        if (done) return;
        if (opts.stream === 'stderr') seen = readFileSync(logFile, 'utf8');
        const m = seen.match(pattern);
        if (m) {
          done = true;
          clearInterval(poll);
          clearTimeout(timer);
          res({ proc, match: m, readyMs: performance.now() - started, logFile });
        }
      };
      const poll = setInterval(check, opts.pollMs ?? 5);
      const timer = setTimeout(() => {
        done = true;
        clearInterval(poll);
        rej(new Error(`${cmd} did not start within ${opts.timeoutMs ?? 30_000} ms:\n${seen || readFileSync(logFile, 'utf8')}`));
      }, opts.timeoutMs ?? 30_000);
      proc.stdout?.on('data', (d: Buffer) => {
        if (!done) seen += d;
        check();
      });
      proc.on('exit', (code) => {
        if (!done) {
          done = true;
          clearInterval(poll);
          clearTimeout(timer);
          rej(new Error(`${cmd} exited ${code}:\n${readFileSync(logFile, 'utf8')}`));
        }
      });
    });
  }

  /** Stops one process by its PID: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
  async stop(proc: ChildProcess, graceMs = 3000): Promise<void> {
    if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
    const gone = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }

  /** SIGKILL to every process still running, by PID, and the scratch directory removed. */
  stopAll(): void {
    for (const c of this.#children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A free loopback TCP port (bound and released: a process started next can take it). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}
