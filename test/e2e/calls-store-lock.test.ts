/**
 * One agent per async calls store: a second agent started on the same store (the same
 * agent.stateDir, another port) would run the first one's queued calls too. It stops at
 * start with SKEIN_ERR_CONFIG naming calls.store (as does `skein validate`), the first keeps
 * serving, and the lock goes with the process: after kill -9 of the first, the second starts
 * and runs the call the first had accepted.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { baseConfig, EXAMPLES, runCli, startAgent, stopAll } from '../helpers/agent.ts';

afterAll(stopAll);

describe('calls.store is held by one agent', () => {
  it('a second agent on the same store exits 2 naming calls.store; the first serves on; after kill -9 the second takes over the queued call', async () => {
    // sleep runs one at a time, and the runner hands the pool about one async call per worker
    // (two): the third submission stays queued in the store while the other worker answers
    // sync calls.
    const config = baseConfig({ routines: { sleep: { file: EXAMPLES, maxConcurrency: 1 } } });
    const a = await startAgent({ config });
    const store = `${a.dir}/state/calls.db`;
    const client = a.client();
    await client.submit('sleep', { args: [20] });
    await client.submit('sleep', { args: [0.25] });
    const queued = await client.submit('sleep', { args: [0.5] });

    const message = `error [SKEIN_ERR_CONFIG]: the calls store ${store} (calls.store) is in use by another agent: two agents must not share one store (each would run the other's queued calls); give each its own agent.stateDir or calls.store`;
    for (const command of ['agent', 'validate']) {
      const r = await runCli([command, '--config', a.configPath], { cwd: a.dir, timeoutMs: 20_000 });
      expect({ command, code: r.code }).toEqual({ command, code: 2 });
      expect(r.stderr).toContain(message);
    }
    expect(await client.dispatch('echo', { args: ['still here'] }).catch((e: Error) => e.message)).toBe('still here');
    await client.close();

    expect(await a.stop('SIGKILL')).toBe('SIGKILL');
    const b = await startAgent({ config, dir: a.dir });
    const c = b.client();
    try {
      expect(await c.wait(queued.id, { timeoutMs: 20_000 })).toMatchObject({ status: 'succeeded', result: 0.5 });
    } finally {
      await c.close();
      await b.stop();
    }
  }, 90_000);
});
