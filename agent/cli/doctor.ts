/** `skein doctor`: what this host offers for confining workers, and what each profile would do. */
import { loadConfig } from '../config/load.ts';
import type { SandboxConfig } from '../config/schema.ts';
import { canaryFailures, planProfile, runCanary, type Plan } from '../sandbox/index.ts';
import { planSandbox } from '../sandbox/prepare.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

export const DOCTOR_USAGE = `Usage: skein doctor [--config PATH] [--json]

Prints the host's sandbox capabilities (seccomp actions, Landlock ABI, unprivileged user
namespaces, bubblewrap, Python version), what each sandbox profile would apply here, and the
result of the canary (socket, fork, read /etc/passwd, write /tmp, signal the agent — each
must be blocked) for the configured profile.
Exit codes: 0 the configured profile can run here, 1 it cannot, 2 usage or config error.`;

const PROFILES: SandboxConfig['profile'][] = ['full', 'standard', 'none'];

export async function runDoctor(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, { config: { type: 'string' }, json: { type: 'boolean' } });
  if (values.help) {
    io.out(DOCTOR_USAGE);
    return 0;
  }
  const { config, source } = loadConfig({ path: values.config });
  const limits = { memoryBytes: config.workers.memoryLimitMb * 1024 * 1024, openFiles: config.workers.maxOpenFiles };
  const { python: pythonInfo, caps, launcher, confine } = planSandbox(config, limits);
  const python = pythonInfo.executable;
  const plans = Object.fromEntries(PROFILES.map((p) => [p, planProfile({ ...config.sandbox, profile: p }, caps, limits)])) as Record<string, Plan>;
  const configured = plans[config.sandbox.profile]!;
  const canary = configured.missing.length === 0 && config.sandbox.profile !== 'none' ? await runCanary(launcher, configured.policy, confine) : undefined;
  const failures = canary ? canaryFailures(canary.canary) : [];
  const ok = configured.missing.length === 0 && (config.sandbox.profile !== 'full' || failures.length === 0);

  if (values.json) {
    io.out(JSON.stringify({ config: source, python, host: caps, profiles: plans, configured: config.sandbox.profile, canary, ok }, null, 2));
    return ok ? 0 : 1;
  }
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  const lines = [
    `skein doctor (config: ${source})`,
    '',
    'Host',
    `  python            ${caps.python} (${python})`,
    `  kernel            ${caps.kernel} ${caps.arch}`,
    `  seccomp           ${yes(caps.seccomp.available)} (actions: ${caps.seccomp.actions.join(' ') || 'none'}${caps.seccomp.mode === 2 ? '; this process is already filtered' : ''})`,
    `  Landlock ABI      ${caps.landlock.abi || 'unavailable'}${caps.landlock.abi >= 4 ? ' (TCP rules)' : ''}${caps.landlock.abi >= 6 ? ' (signal/socket scoping)' : ''}`,
    `  user namespaces   ${yes(caps.userns)}${caps.usernsError ? ` (${caps.usernsError})` : ''}`,
    `  bubblewrap        ${caps.bwrap ?? 'not on PATH'}`,
    `  running as uid    ${caps.uid}`,
    '',
    'Profiles',
    ...PROFILES.map((p) => {
      const plan = plans[p]!;
      const layers = layerNames(plan);
      const status = plan.missing.length ? `cannot run: missing ${plan.missing.join('; ')}` : `would apply ${layers.join(', ')}`;
      const extra = plan.degraded.length ? `\n${' '.repeat(20)}unavailable here: ${plan.degraded.join('; ')}` : '';
      return `  ${(p + (p === config.sandbox.profile ? ' *' : '')).padEnd(18)}${status}${extra}`;
    }),
    '',
    canary
      ? `Canary (${config.sandbox.profile}): ${Object.entries(canary.canary)
          .filter(([k]) => k !== 'errno')
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`
      : `Canary: not run (${config.sandbox.profile === 'none' ? 'profile none confines nothing' : 'the profile cannot run here'})`,
    canary ? `Layers applied by a test worker: ${canary.layers.join(', ')}` : '',
    '',
    ok ? `OK: sandbox.profile "${config.sandbox.profile}" can run on this host.` : `NOT OK: sandbox.profile "${config.sandbox.profile}" cannot run on this host.`,
  ];
  io.out(lines.filter((l, i, a) => l !== '' || a[i - 1] !== '').join('\n'));
  return ok ? 0 : 1;
}

function layerNames(plan: Plan): string[] {
  const p = plan.policy;
  return [
    'rlimits',
    ...(plan.bwrap ? ['bubblewrap'] : []),
    ...(p.namespaces ? ['user/net/ipc namespaces'] : []),
    ...(p.landlock ? ['Landlock'] : []),
    ...(p.seccomp ? ['seccomp'] : []),
    ...(p.auditHook ? ['audit hook'] : []),
  ];
}
