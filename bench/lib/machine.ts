/** What a bench result was measured on and built from, recorded with its figures. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg, totalmem, release } from 'node:os';

/**
 * The interpreter the benches' workers run: SKEIN_BENCH_PYTHON, else the distribution's
 * /usr/bin/python3 when there is one (what a fresh machine of this kind runs), else python3
 * on PATH. A pyenv shim on PATH resolves to a locally built interpreter that answered an echo
 * in 66–79 µs where Debian's took 27–31 µs (docs/benchmarks.md, "Cold start"): figures would
 * measure the build of Python, not skein.
 */
export const BENCH_PYTHON = process.env.SKEIN_BENCH_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

export interface Machine {
  cpu: string;
  cores: number;
  kernel: string;
  memoryBytes: number;
  /** 1-minute load average when the run started: other work on a shared machine shows here. */
  loadAverage1m: number;
}

export function machine(): Machine {
  return { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, kernel: release(), memoryBytes: totalmem(), loadAverage1m: loadavg()[0]! };
}

const out = (cmd: string, args: string[]): string | null => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? `${r.stdout}${r.stderr}`.trim() : null;
};

/** The commit measured, "-dirty" when tracked files differ from it. */
export function commit(): string {
  const head = out('git', ['rev-parse', 'HEAD']);
  if (!head) return 'unknown';
  return `${head}${out('git', ['status', '--porcelain', '--untracked-files=no']) ? '-dirty' : ''}`;
}

export function versions(): Record<string, string | null> {
  return {
    bun: typeof Bun === 'undefined' ? null : Bun.version,
    node: out('node', ['--version']),
    // The workers' interpreter, not whatever python3 PATH finds first.
    python: out(BENCH_PYTHON, ['--version']),
  };
}
