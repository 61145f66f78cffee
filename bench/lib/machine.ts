/** What a bench result was measured on and built from, recorded with its figures. */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, totalmem, release } from 'node:os';

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
    python: out('python3', ['--version']),
  };
}
