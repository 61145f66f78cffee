/**
 * Sandbox profiles through the binary: full (the default) applies and proves every layer,
 * refuses to start on a host that lacks them, standard degrades with warnings, none warns
 * loudly, bubblewrap wraps workers when enabled, and `skein doctor` reports it all.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, baseConfig, failure, FIXTURES, runCli, startAgent, startMustFail, stopAll, tempDir } from '../helpers/agent.ts';
import { requires, tool } from '../helpers/requires.ts';

const BARE_HOST_PYTHON = join(FIXTURES, 'bare-host/python3');
const REAL_PYTHON = execFileSync('python3', ['-I', '-S', '-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
const withBwrap = requires(tool('bwrap', 'bubblewrap'));
const FIX = join(FIXTURES, 'routines.py');

afterAll(stopAll);

function writeConfig(config: Record<string, unknown>): string {
  const dir = tempDir();
  const path = join(dir, 'agent.config.json');
  writeFileSync(path, JSON.stringify(config));
  return path;
}

/**
 * An interpreter that records each run (next to itself: workers and the canary run with a
 * cleared environment) and, like a version-manager shim, is resolved by the start-up
 * inspection to an executable: here itself, so every later run is recorded too (workers
 * with their pid). `canary`, when given, is printed as the canary's report instead of running it.
 */
function countingPython(canary?: object): { python: string; runs: () => string[] } {
  const dir = tempDir();
  const python = join(dir, 'python3');
  const log = join(dir, 'runs.log');
  writeFileSync(
    python,
    `#!/bin/bash
REAL='${REAL_PYTHON}'
case "$*" in
  *'out["caps"] = ns["probe"]()'*) echo inspect >> '${log}'; set -o pipefail
    "$REAL" "$@" | "$REAL" -I -S -c 'import sys, json; o = json.loads(sys.stdin.read().strip().splitlines()[-1]); o["executable"] = sys.argv[1]; print(json.dumps(o))' "$0"; exit $? ;;
  *'_p["canary"] = True'*) echo canary >> '${log}'${canary ? `; echo '${JSON.stringify(canary)}'; exit 0` : ''} ;;
  *) echo "other $$" >> '${log}' ;;
esac
exec "$REAL" "$@"
`,
  );
  chmodSync(python, 0o755);
  return { python, runs: () => readFileSync(log, 'utf8').trim().split('\n') };
}

describe('start-up', () => {
  it('runs the configured interpreter once before the canary and the workers, every layer still proven', async () => {
    const { python, runs } = countingPython();
    const agent = await startAgent({ config: baseConfig({ workers: { poolSize: 2, python } }) });
    try {
      const sandbox = await agent.waitForLog((l) => l.msg === 'sandbox ready');
      expect(sandbox.canary).toBe('all blocked');
      await agent.waitForLog((l) => l.msg === 'workers ready');
      // One inspection (executable, host probe, compiled confine.py), the canary, one per worker.
      expect(
        runs()
          .map((r) => r.split(' ')[0])
          .sort(),
      ).toEqual(['canary', 'inspect', 'other', 'other']);
      const client = agent.client();
      expect(await client.dispatch('add', { args: [1, 2] })).toBe(3);
      await client.close();
    } finally {
      await agent.stop();
    }
  });

  it('a canary probe that gets through still refuses "full", and the workers started meanwhile are stopped', async () => {
    const canary = { layers: ['seccomp'], canary: { socket: 'allowed', fork: 'blocked', readEtcPasswd: 'blocked', writeTmp: 'blocked', signalParent: 'blocked' } };
    const { python, runs } = countingPython(canary);
    const stderr = await startMustFail(baseConfig({ workers: { poolSize: 2, python } }));
    expect(stderr).toMatch(/error \[SKEIN_ERR_SANDBOX\]: sandbox canary: a confined test worker could still socket; refusing to start with sandbox.profile "full"/);
    expect(stderr).not.toMatch(/"msg":"listening"/);
    const workers = runs()
      .filter((r) => r.startsWith('other '))
      .map((r) => Number(r.split(' ')[1]));
    // The workers spawn while the canary runs: they were started, and are gone.
    expect(workers.length).toBeGreaterThan(0);
    for (const pid of workers) expect(alive(pid)).toBe(false);
  });
});

describe('full (the default)', () => {
  it('applies every kernel layer in each worker and proves them with the canary', async () => {
    const agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1 } }) });
    try {
      const sandbox = await agent.waitForLog((l) => l.msg === 'sandbox ready');
      expect(sandbox.profile).toBe('full');
      expect(sandbox.canary).toBe('all blocked');
      const ready = await agent.waitForLog((l) => l.msg === 'workers ready');
      expect(ready.layers).toEqual(expect.arrayContaining(['pdeathsig', 'userns', 'netns', 'rlimits', 'landlock', 'seccomp', 'audit']));
      const client = agent.client();
      expect(await client.dispatch('add', { args: [1, 2] })).toBe(3);
      await client.close();
    } finally {
      await agent.stop();
    }
  });

  it('refuses to start on a host without the layers, exit 2, listing each missing one', async () => {
    const path = writeConfig(baseConfig({ agent: { listen: '127.0.0.1:0', stateDir: 'state' }, workers: { python: BARE_HOST_PYTHON } }));
    const r = await runCli(['agent', '--config', path], { env: { SKEIN_TEST_REAL_PYTHON: REAL_PYTHON } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/error \[SKEIN_ERR_SANDBOX\]: sandbox.profile "full" cannot be provided on this host; missing:/);
    expect(r.stderr).toMatch(/ {2}- seccomp \(actions available: allow\)/);
    expect(r.stderr).toMatch(/ {2}- Landlock or bubblewrap \(Landlock ABI 0; bwrap not on PATH\)/);
    expect(r.stderr).toMatch(/skein doctor/);
  });
});

describe('"strict" was the old name of "full" (it now means only security.strict)', () => {
  it.each([
    ['the config file', { sandbox: { profile: 'strict' } }, {}, 'in '],
    ['SKEIN_SANDBOX_PROFILE', {}, { SKEIN_SANDBOX_PROFILE: 'strict' }, 'in environment'],
  ] as const)('sandbox.profile "strict" in %s is refused, exit 2, naming "full"', async (_where, sandbox, env, source) => {
    const path = writeConfig(baseConfig({ agent: { listen: '127.0.0.1:0', stateDir: 'state' }, ...sandbox }));
    for (const args of [
      ['agent', '--config', path],
      ['validate', '--config', path],
    ]) {
      const r = await runCli(args, { env });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('[SKEIN_ERR_CONFIG]');
      expect(r.stderr).toContain(`config key "sandbox.profile" (${source}`);
      expect(r.stderr).toContain('"strict" was renamed to "full" (same behaviour); write "full"');
    }
  });
});

describe('standard and none', () => {
  it('standard on a bare host starts, naming each missing layer and each canary that got through', async () => {
    const agent = await startAgent({
      config: baseConfig({ workers: { poolSize: 1, python: BARE_HOST_PYTHON }, sandbox: { profile: 'standard' } }),
      env: { SKEIN_TEST_REAL_PYTHON: REAL_PYTHON },
    });
    try {
      const missing = agent.logs.filter((l) => l.msg === 'sandbox layer unavailable on this host').map((l) => String(l.layer));
      expect(missing.join('\n')).toMatch(/seccomp/);
      expect(missing.join('\n')).toMatch(/Landlock or bubblewrap/);
      expect(missing.join('\n')).toMatch(/namespaces/);
      const leaks = agent.logs.filter((l) => l.msg === 'sandbox canary: a confined worker can still do this').map((l) => l.probe);
      expect(leaks).toEqual(expect.arrayContaining(['socket', 'fork', 'readEtcPasswd']));
      const client = agent.client();
      expect(await client.dispatch('echo', { args: ['ok'] })).toBe('ok');
      await client.close();
    } finally {
      await agent.stop();
    }
  });

  it('none warns loudly on every start and confines nothing but rlimits', async () => {
    const agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1 }, sandbox: { profile: 'none' }, routines: { pid: { file: FIX } } }) });
    try {
      const warning = await agent.waitForLog((l) => l.msg.startsWith('SANDBOX DISABLED'));
      expect(warning.level).toBe('warn');
      const ready = await agent.waitForLog((l) => l.msg === 'workers ready');
      expect(ready.layers).not.toContain('seccomp');
      expect(ready.layers).toContain('rlimits');
    } finally {
      await agent.stop();
    }
  });
});

withBwrap.describe('bubblewrap outer layer (sandbox.bubblewrap)', () => {
  it('wraps every worker in bwrap, with the kernel layers inside', async () => {
    const agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1 }, sandbox: { bubblewrap: true }, routines: { pid: { file: FIX }, chatty: { file: FIX } } }) });
    const client = agent.client();
    try {
      const ready = await agent.waitForLog((l) => l.msg === 'workers ready');
      expect(ready.layers).toEqual(expect.arrayContaining(['bwrap', 'landlock', 'seccomp']));
      // Inside bwrap's pid namespace the interpreter is a low pid, not the host pid.
      expect(await client.dispatch<number>('pid')).toBeLessThan(10);
      expect(await client.dispatch('chatty', { args: ['hello from bwrap'] })).toBe('printed');
      const err = await failure(client.dispatch('sleep', { args: [5], timeoutMs: 200 }));
      expect(err.code).toBe('SKEIN_ERR_DEADLINE_EXCEEDED');
      expect(await client.dispatch('add', { args: [2, 2] })).toBe(4);
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});

describe('per-routine limits', () => {
  it('a routine with its own limits runs in its own pool under them; others keep the defaults', async () => {
    const agent = await startAgent({
      config: baseConfig({
        workers: { poolSize: 1, memoryLimitMb: 1024 },
        routines: {
          hog: { file: FIX },
          small_hog: { file: FIX, function: 'hog', limits: { memoryMb: 96 } },
          few_files: { file: FIX, function: 'open_many', limits: { openFiles: 20 }, workers: 2 },
          open_many: { file: FIX },
        },
      }),
    });
    const client = agent.client();
    try {
      expect(await client.dispatch('hog', { args: [128] })).toBe(128 * 1024 * 1024);
      const mem = await failure(client.dispatch('small_hog', { args: [128] }));
      expect(mem.details.exception.type).toBe('MemoryError');
      expect(await client.dispatch('open_many', { args: [40] })).toBe(40);
      const fds = await failure(client.dispatch('few_files', { args: [40] }));
      expect(fds.details.exception.message).toMatch(/Too many open files/);
      // main pool (1) + small_hog (1) + few_files (2)
      expect((await client.health()).workers).toBe(4);
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});

describe('skein doctor', () => {
  it('prints host capabilities, each profile and the canary; exit 0 when the profile can run', async () => {
    const r = await runCli(['doctor', '--config', writeConfig({})]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/seccomp\s+yes \(actions: .*errno/);
    expect(r.stdout).toMatch(/Landlock ABI\s+\d/);
    expect(r.stdout).toMatch(/full \*\s+would apply rlimits.*Landlock, seccomp/);
    expect(r.stdout).toMatch(/Canary \(full\): socket blocked, fork blocked, readEtcPasswd blocked, writeTmp blocked, signalParent blocked/);
    const json = JSON.parse((await runCli(['doctor', '--json', '--config', writeConfig({})])).stdout);
    expect(json.ok).toBe(true);
    expect(json.host.seccomp.available).toBe(true);
  });

  it('exit 1 and says why on a host that cannot run full', async () => {
    const r = await runCli(['doctor', '--config', writeConfig({ workers: { python: BARE_HOST_PYTHON } })], { env: { SKEIN_TEST_REAL_PYTHON: REAL_PYTHON } });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/full \*\s+cannot run: missing seccomp/);
    expect(r.stdout).toMatch(/NOT OK/);
  });
});
