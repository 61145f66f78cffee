/**
 * The scheduler inside a real pool (buildPools from a loaded config, real Python workers):
 * a saturated pool serves queued calls by priority and fairly between callers, and
 * routines.<name>.maxConcurrency holds a routine's calls back while other routines use the
 * idle workers.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nullAudit } from '../../agent/audit/index.ts';
import { loadConfig } from '../../agent/config/load.ts';
import { createLogger } from '../../agent/log/index.ts';
import { prepareSandbox } from '../../agent/sandbox/prepare.ts';
import { loadRoutines } from '../../agent/sources/routines.ts';
import type { PoolSet } from '../../agent/workers/pool-set.ts';
import type { DispatchRequest } from '../../agent/workers/pool.ts';
import { buildPools, workerLimits } from '../../agent/workers/pools.ts';
import { baseConfig, FIXTURES, stopAll, tempDir } from '../helpers/agent.ts';
import { childrenOf } from '../lifecycle/in-process.ts';

afterAll(stopAll);

const log = createLogger({ level: 'error', write: () => {} });

/** The pools the agent would build for baseConfig + overrides, started. */
async function pools(overrides: Record<string, unknown>): Promise<PoolSet> {
  const dir = tempDir();
  const path = join(dir, 'agent.config.json');
  writeFileSync(path, JSON.stringify(baseConfig(overrides)), { mode: 0o600 });
  const config = loadConfig({ path, env: {} }).config;
  const { sources } = await loadRoutines(config, log, false, nullAudit);
  const { sandbox } = await prepareSandbox(config, workerLimits(config), log, async () => undefined);
  const cwd = join(dir, 'empty');
  mkdirSync(cwd);
  const set = buildPools(config, sources, sandbox, cwd, log);
  await set.start();
  return set;
}

/** Dispatches and records the label when the call ends (with its outcome). */
function track(set: PoolSet, order: string[]) {
  return (label: string, req: Partial<DispatchRequest>) =>
    set.dispatch({ routine: 'echo', args: [label], kwargs: {}, timeoutMs: 20_000, ...req }).then((outcome) => {
      order.push(outcome.ok ? label : `${label}:${outcome.error.code}`);
      return outcome;
    });
}

describe('WorkerPool with the scheduler (real workers)', () => {
  it('one busy worker: queued calls run high first, callers alternate within a level, low last', async () => {
    const set = await pools({ workers: { poolSize: 1, isolation: 'shared' } });
    try {
      const order: string[] = [];
      const call = track(set, order);
      // Occupies the only worker while the rest queue behind it.
      const calls = [call('blocker', { routine: 'sleep', args: [0.6] })];
      calls.push(call('low-a1', { priority: 'low', caller: 'a' }));
      for (let i = 1; i <= 3; i++) calls.push(call(`normal-a${i}`, { priority: 'normal', caller: 'a' }));
      calls.push(call('normal-b1', { priority: 'normal', caller: 'b' }));
      calls.push(call('high-b1', { priority: 'high', caller: 'b' }));
      calls.push(call('normal-anon', {}));
      expect(set.stats.queued).toBe(7);
      expect(set.queueDepth()).toEqual({ high: 1, normal: 5, low: 1 });
      await Promise.all(calls);
      expect(order).toEqual(['blocker', 'high-b1', 'normal-a1', 'normal-b1', 'normal-anon', 'normal-a2', 'normal-a3', 'low-a1']);
      expect(set.queueDepth()).toEqual({ high: 0, normal: 0, low: 0 });
    } finally {
      await set.destroy();
    }
  });

  it('a cancelled queued call leaves the queue at once; the others still run in order', async () => {
    const set = await pools({ workers: { poolSize: 1, isolation: 'shared' } });
    try {
      const order: string[] = [];
      const call = track(set, order);
      const abort = new AbortController();
      const calls = [call('blocker', { routine: 'sleep', args: [0.4] }), call('a1', { caller: 'a' }), call('cancelled', { caller: 'a', signal: abort.signal }), call('a3', { caller: 'a' })];
      abort.abort();
      expect(set.stats.queued).toBe(2);
      await Promise.all(calls);
      expect(order).toEqual(['cancelled:SKEIN_ERR_ABORTED', 'blocker', 'a1', 'a3']);
    } finally {
      await set.destroy();
    }
  });

  it('routines.<name>.maxConcurrency: the capped routine waits while another routine takes the idle worker', async () => {
    const set = await pools({ workers: { poolSize: 2, isolation: 'shared' }, routines: { sleep: { maxConcurrency: 1 } } });
    try {
      const order: string[] = [];
      const call = track(set, order);
      const t0 = performance.now();
      const calls = [call('sleep1', { routine: 'sleep', args: [0.5] }), call('sleep2', { routine: 'sleep', args: [0.5] })];
      // One worker is idle, but sleep is at its cap: sleep2 waits in the queue.
      expect(set.stats).toMatchObject({ queued: 1, idle: 1 });
      calls.push(call('echo', {}));
      expect(set.stats).toMatchObject({ queued: 1, idle: 0 });
      await Promise.all(calls);
      expect(order).toEqual(['echo', 'sleep1', 'sleep2']);
      // Run one after the other, not side by side on the two workers.
      expect(performance.now() - t0).toBeGreaterThanOrEqual(1000);
    } finally {
      await set.destroy();
    }
    expect(childrenOf(process.pid)).toEqual([]);
  });

  it('maxConcurrency: when a capped call ends on a worker that dies, the call it held back takes the idle worker at once', async () => {
    const file = join(FIXTURES, 'routines.py');
    const set = await pools({ workers: { poolSize: 2, isolation: 'shared' }, routines: { pid: { file }, slow_pid: { file, maxConcurrency: 1 } } });
    try {
      // Both workers' pids (through the uncapped routine: slow_pid runs on one worker at a time).
      const both = await Promise.all([0, 1].map(() => set.dispatch({ routine: 'pid', args: [], kwargs: {}, timeoutMs: 20_000 })));
      const live = new Set(both.map((o) => (o.ok ? o.value : undefined)));
      expect(live.size).toBe(2);
      // The first call is killed at its deadline; its worker is replaced (a new pid) only later.
      const killed = set.dispatch({ routine: 'slow_pid', args: [30], kwargs: {}, timeoutMs: 400 });
      const held = set.dispatch({ routine: 'slow_pid', args: [0], kwargs: {}, timeoutMs: 20_000 });
      expect(set.stats).toMatchObject({ queued: 1, idle: 1 });
      expect((await killed).ok).toBe(false);
      const outcome = await held;
      expect(outcome.ok).toBe(true);
      // It ran on the worker that was idle all along, not on the replacement.
      expect(live.has(outcome.ok ? outcome.value : undefined)).toBe(true);
    } finally {
      await set.destroy();
    }
  });
});
