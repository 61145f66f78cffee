/**
 * The agent's side of worker confinement: what the host offers (probe), what a profile
 * requires of it (plan), and proof that the layers hold (canary). The layers themselves are
 * applied inside each worker by confine.py, whose source is sent in the worker's init line.
 *
 *   full      seccomp + (Landlock or bubblewrap) + a network cut-off, all required; the
 *             canary must fail every probe, else the agent refuses to start (exit 2).
 *   standard  every layer the host offers; each missing one is a warning.
 *   none      rlimits only; for debugging, with a loud warning on every start.
 */
import { spawn } from 'node:child_process';
import type { Launcher } from './bwrap.ts';
import type { CompiledConfine } from './python.ts';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { SandboxConfig } from '../config/schema.ts';
import { configError } from '../config/schema-dsl.ts';
import { SkeinError } from '../../common/errors/index.ts';
import CONFINE from './confine.py' with { type: 'text' };

export const CONFINE_SOURCE: string = CONFINE;

export interface HostCapabilities {
  python: string;
  arch: string;
  kernel: string;
  seccomp: { available: boolean; actions: string[]; mode: number; reason?: string };
  landlock: { abi: number };
  userns: boolean;
  usernsError?: string;
  bwrap: string | null;
  noNewPrivs: boolean;
  uid: number;
}

export interface Policy {
  required: string[];
  setsid: boolean;
  namespaces: boolean;
  landlock: boolean;
  seccomp: boolean;
  limits: Record<string, number>;
  readPaths: string[];
  /** Package directories: listable (so imports can find allowed packages), files unreadable. */
  listPaths: string[];
  auditHook: { blockedModules: string[]; allowedPackages: string[] | null; blockedAs: 'ImportError' } | false;
}

export interface Plan {
  profile: SandboxConfig['profile'];
  policy: Policy;
  /** Capabilities the profile needs that the host lacks ("full" refuses to start on any). */
  missing: string[];
  /** Layers the host cannot provide that the profile would have liked (standard warns). */
  degraded: string[];
  /** sys.path entries added for allowed packages. */
  packagePaths: string[];
  /** Run workers inside bubblewrap (sandbox.bubblewrap and bwrap on PATH). */
  bwrap: boolean;
}

/** What confine.py's canary() tries from inside a confined worker; the one list the agent checks (and /metrics reports) them by. */
export const CANARY_PROBES = ['socket', 'fork', 'readEtcPasswd', 'writeTmp', 'signalParent'] as const;
export type CanaryResult = Record<(typeof CANARY_PROBES)[number], 'blocked' | 'allowed'> & { errno?: Record<string, string> };

export function planProfile(sandbox: SandboxConfig, caps: HostCapabilities, limits: Record<string, number>): Plan {
  const { readPaths, packagePaths } = packageGrants(sandbox);
  // Blocked imports raise an ImportError subclass: libraries guard optional imports with
  // `except ImportError` (numpy's ctypes helpers, copy.py), and PermissionError broke them.
  const audit = {
    blockedModules: sandbox.blockedModules,
    allowedPackages: sandbox.allowedPackages.length || sandbox.packagePaths.length ? sandbox.allowedPackages : null,
    blockedAs: 'ImportError' as const,
  };
  if (sandbox.profile === 'none') {
    return {
      profile: 'none',
      policy: { required: [], setsid: true, namespaces: false, landlock: false, seccomp: false, limits, readPaths, listPaths: packagePaths, auditHook: false },
      missing: [],
      degraded: [],
      packagePaths,
      bwrap: false,
    };
  }
  const landlock = caps.landlock.abi >= 1;
  const bwrap = sandbox.bubblewrap && caps.bwrap !== null;
  const missing: string[] = [];
  const degraded: string[] = [];
  if (!caps.seccomp.available) missing.push(`seccomp (${caps.seccomp.reason ?? `actions available: ${caps.seccomp.actions.join(' ') || 'none'}`})`);
  if (!landlock && !bwrap)
    missing.push(`Landlock or bubblewrap (Landlock ABI ${caps.landlock.abi}; bwrap ${caps.bwrap ?? 'not on PATH'}${caps.bwrap && !sandbox.bubblewrap ? ', sandbox.bubblewrap is false' : ''})`);
  // seccomp refusing socket() is itself a network cut-off; namespaces and Landlock add to it.
  if (!caps.seccomp.available && !caps.userns && caps.landlock.abi < 4) missing.push('a network cut-off (network namespace, Landlock ABI ≥ 4 or seccomp)');
  if (!caps.userns) degraded.push(`user/network/IPC namespaces (${caps.usernsError ?? 'unshare refused'})`);
  if (caps.landlock.abi > 0 && caps.landlock.abi < 4) degraded.push(`Landlock TCP rules (ABI ${caps.landlock.abi} < 4)`);
  if (caps.landlock.abi > 0 && caps.landlock.abi < 6) degraded.push(`Landlock signal scoping (ABI ${caps.landlock.abi} < 6)`);
  if (sandbox.bubblewrap && !caps.bwrap) degraded.push('bubblewrap (sandbox.bubblewrap is true but bwrap is not on PATH)');
  // With bubblewrap the mount namespace is the file-system layer when Landlock is missing.
  const required = sandbox.profile === 'full' ? ['seccomp', ...(landlock ? ['landlock'] : [])] : [];
  return {
    profile: sandbox.profile,
    policy: { required, setsid: true, namespaces: caps.userns, landlock, seccomp: caps.seccomp.available, limits, readPaths, listPaths: packagePaths, auditHook: audit },
    missing: sandbox.profile === 'full' ? missing : [],
    degraded: sandbox.profile === 'full' ? degraded : [...missing, ...degraded],
    packagePaths,
    bwrap,
  };
}

/**
 * Confines a throwaway interpreter with the policy and tries what must fail. It runs
 * confine.py as the workers get it, compiled at start-up (python.ts): compiling the source
 * again cost this run ~10 ms of CPU while the workers start beside it on the same cores.
 */
export async function runCanary(launcher: Launcher, policy: Policy, confine: CompiledConfine): Promise<{ layers: string[]; canary: CanaryResult }> {
  // canary: true runs the probes inside apply(), after the kernel layers and before the audit
  // hook, so a refusal is the kernel's and not the tripwire's. Marshal data is only valid for
  // the interpreter version that wrote it (the workers check the same).
  const code = [
    'import json as _j, sys as _s, marshal as _m',
    '_p = _j.loads(_s.stdin.readline())',
    '_v, _c = _j.loads(_s.stdin.readline())',
    'if _v != _s.version: raise SystemExit("the Python interpreter changed since the agent started; restart the agent")',
    '_n = {"__name__": "skein_confine"}',
    'exec(_m.loads(bytes.fromhex(_c)), _n)',
    '_p["canary"] = True',
    '_l = _n["apply"](_p)',
    'print(_j.dumps({"layers": [l for l in _l if l != "canary"], "canary": _n["last_report"]["canary"]}))',
  ].join('\n');
  const input = `${JSON.stringify(policy)}\n${JSON.stringify([confine.pythonVersion, confine.code])}\n`;
  const result = JSON.parse(await runPython(launcher, code, input)) as { layers: string[]; canary: CanaryResult };
  if (launcher.wrapped) result.layers.unshift('bwrap');
  return result;
}

/** The probes that were not blocked. */
export function canaryFailures(result: CanaryResult): string[] {
  return CANARY_PROBES.filter((p) => result[p] !== 'blocked');
}

/**
 * Landlock read grants for allowed packages: only the entries of each package directory
 * that belong to an allowed package (pkg/, pkg.py, pkg.*.so, pkg-*.dist-info), so every
 * other package in the same site-packages is unreadable to routines.
 */
function packageGrants(sandbox: SandboxConfig): { readPaths: string[]; packagePaths: string[] } {
  const readPaths: string[] = [];
  for (const dir of sandbox.packagePaths) {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch (err) {
      throw configError('sandbox.packagePaths', `cannot read ${dir}: ${(err as Error).message}`, { cause: err });
    }
    for (const entry of entries) {
      const owner = entry.split(/[.-]/, 1)[0]!;
      if (sandbox.allowedPackages.includes(owner)) readPaths.push(join(dir, entry));
    }
  }
  return { readPaths, packagePaths: sandbox.packagePaths };
}

/** Runs a throwaway interpreter (asynchronously: the start-up spawns workers meanwhile) and returns its last line of output. */
function runPython(launcher: Launcher, code: string, input: string): Promise<string> {
  const failed = (why: string) => new SkeinError('SKEIN_ERR_SANDBOX', `sandbox self-test with ${launcher.command} failed: ${why}`);
  return new Promise((resolve, reject) => {
    const child = spawn(launcher.command, [...launcher.prefix, '-I', '-S', '-c', code], { env: { LC_ALL: 'C.UTF-8' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, 15_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // A child that exits before reading its input must not surface as an unhandled EPIPE.
    child.stdin.on('error', () => {});
    child.stdin.end(input);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(failed(err.message));
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      if (timedOut) reject(failed('timed out after 15 s'));
      else if (status !== 0) reject(failed(stderr.trim().split('\n').slice(-1)[0] || `exit ${status ?? signal}`));
      else resolve(stdout.trim().split('\n').pop() ?? '');
    });
  });
}
