/**
 * bubblewrap as an optional outer layer: a mount namespace that shows the worker only the
 * system libraries, its interpreter tree and allowed package paths (read-only), a fresh
 * /proc of its own pid namespace, an empty /tmp, and a cleared environment. The kernel
 * layers of confine.py still apply inside it.
 */
import { WORKER_ENV, type PythonInfo } from './python.ts';

/** A command that runs the interpreter: itself, or bwrap wrapping it. */
export interface Launcher {
  command: string;
  prefix: string[];
  /** True when the spawned process is bwrap, not Python (its pid is not the worker's). */
  wrapped: boolean;
}

export function directLauncher(python: PythonInfo): Launcher {
  return { command: python.executable, prefix: [], wrapped: false };
}

export function bwrapLauncher(bwrap: string, python: PythonInfo, packagePaths: string[]): Launcher {
  const roBinds = ['/usr', '/lib', '/lib64', '/lib32', '/etc/ld.so.cache', '/etc/localtime', python.prefix, ...packagePaths];
  const args = [
    '--unshare-all', // user, pid, net, ipc, uts, cgroup namespaces
    '--die-with-parent',
    '--new-session',
    '--clearenv',
    ...Object.entries(WORKER_ENV).flatMap(([k, v]) => ['--setenv', k, v]),
    ...[...new Set(roBinds)].flatMap((p) => ['--ro-bind-try', p, p]),
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--tmpfs',
    '/tmp',
    '--chdir',
    '/',
    '--',
    python.executable,
  ];
  return { command: bwrap, prefix: args, wrapped: true };
}
