/**
 * Start-up of the sandbox: resolve the interpreter, probe the host, plan the configured
 * profile, refuse profile "full" when it cannot be had, and prove the layers with the canary
 * before any worker serves a call.
 */
import type { AgentConfig } from '../config/schema.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { bwrapLauncher, directLauncher, type Launcher } from './bwrap.ts';
import { CONFINE_SOURCE, canaryFailures, planProfile, runCanary, type CanaryResult, type HostCapabilities, type Plan } from './index.ts';
import { inspectPython, type CompiledConfine, type PythonInfo } from './python.ts';

export interface PreparedSandbox {
  python: PythonInfo;
  caps: HostCapabilities;
  plan: Plan;
  launcher: Launcher;
  /** What the worker bootstrap needs to confine itself (code: marshalled confine.py, hex). */
  confine: { code: string; pythonVersion: string; policy: unknown; packagePaths: string[] };
  /** The start-up canary's result (absent under profile "none"). */
  canary?: CanaryResult;
}

/** Plans the profile on this host without starting anything (also used by `skein doctor`). */
export function planSandbox(config: AgentConfig, limits: Record<string, number>): { python: PythonInfo; caps: HostCapabilities; plan: Plan; launcher: Launcher; confine: CompiledConfine } {
  // One run of the configured interpreter (often a slow version-manager shim): executable,
  // host probe and compiled confine.py; every later spawn uses the resolved executable.
  const { python, caps, confine } = inspectPython<HostCapabilities>(config.workers.python, CONFINE_SOURCE);
  const plan = planProfile(config.sandbox, caps, limits);
  const launcher = plan.bwrap && caps.bwrap ? bwrapLauncher(caps.bwrap, python, plan.packagePaths) : directLauncher(python);
  return { python, caps, plan, launcher, confine };
}

/**
 * Prepares the sandbox and starts the workers with it (`start`, which must record what it
 * starts for the caller to stop). The canary runs while `start` spawns the workers: they
 * are confined by the same layers, serve nothing until this returns, and its verdict is
 * awaited first, so a failing canary still refuses the start with its own error (after
 * `start` has settled, its workers left to the caller's clean-up).
 */
export async function prepareSandbox<T>(
  config: AgentConfig,
  limits: Record<string, number>,
  log: Logger,
  start: (sandbox: PreparedSandbox) => Promise<T>,
): Promise<{ sandbox: PreparedSandbox; started: T }> {
  const { profile } = config.sandbox;
  const { python, caps, plan, launcher, confine } = planSandbox(config, limits);
  const prepared: PreparedSandbox = { python, caps, plan, launcher, confine: { ...confine, policy: plan.policy, packagePaths: plan.packagePaths } };
  if (plan.missing.length) {
    throw new SkeinError(
      'SKEIN_ERR_SANDBOX',
      `sandbox.profile "full" cannot be provided on this host; missing:\n${plan.missing.map((m) => `  - ${m}`).join('\n')}\n` +
        'Run "skein doctor" for the host\'s capabilities, or set sandbox.profile to "standard" to run with what it offers.',
      { missing: plan.missing },
    );
  }
  if (profile === 'none') {
    log.warn('SANDBOX DISABLED: sandbox.profile is "none"; routines run with the agent\'s privileges, network and file system. Use only for debugging.', { profile });
    return { sandbox: prepared, started: await start(prepared) };
  }
  for (const layer of plan.degraded) log.warn('sandbox layer unavailable on this host', { profile, layer });
  const proving = runCanary(launcher, plan.policy, confine);
  const starting = (async () => start(prepared))();
  // Observed now: a worker failing before the canary's verdict must not be an unhandled rejection.
  starting.catch(() => {});
  let proven: Awaited<typeof proving>;
  try {
    proven = await proving;
  } catch (err) {
    await starting.catch(() => {});
    throw err;
  }
  const { layers, canary } = proven;
  prepared.canary = canary;
  const failures = canaryFailures(canary);
  if (failures.length && profile === 'full') {
    await starting.catch(() => {});
    throw new SkeinError('SKEIN_ERR_SANDBOX', `sandbox canary: a confined test worker could still ${failures.join(', ')}; refusing to start with sandbox.profile "full"`, { canary });
  }
  for (const probe of failures) log.warn('sandbox canary: a confined worker can still do this', { profile, probe });
  log.info('sandbox ready', { profile, layers, canary: failures.length ? canary : 'all blocked' });
  return { sandbox: prepared, started: await starting };
}
