import { spawnSync } from 'node:child_process';
import { configError } from '../config/schema-dsl.ts';

/**
 * The whole environment of a worker (spawned directly or through bwrap --clearenv): nothing
 * of the agent's (tokens, keys, paths) reaches routines. Native thread pools (OpenBLAS,
 * OpenMP, MKL) are told to use one thread: a worker must be single-threaded between calls or
 * the pool retires it (agent/workers/pool.ts), and parallelism comes from the pool's size.
 */
export const WORKER_ENV: Readonly<Record<string, string>> = {
  LC_ALL: 'C.UTF-8',
  LANG: 'C.UTF-8',
  OPENBLAS_NUM_THREADS: '1',
  OMP_NUM_THREADS: '1',
  MKL_NUM_THREADS: '1',
};

export interface PythonInfo {
  /** The real interpreter binary (version-manager shims resolved). */
  executable: string;
  /** sys.base_prefix: the tree a bubblewrap mount namespace must expose read-only. */
  prefix: string;
}

/**
 * Resolves the interpreter once at start-up to its real executable: version-manager shims
 * (pyenv, asdf) are shell scripts that would add tens of milliseconds to every spawn.
 */
export function resolvePython(python: string): PythonInfo {
  const r = spawnSync(python, ['-I', '-S', '-c', 'import sys; print(sys.executable); print(sys.base_prefix)'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) {
    const why = r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`);
    throw configError('workers.python', `cannot run ${python}: ${why}`);
  }
  const [executable, prefix] = r.stdout.trim().split('\n');
  return { executable: executable || python, prefix: prefix || '/usr' };
}
