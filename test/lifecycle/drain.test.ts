/**
 * Double close during a drain, through the pool and agent APIs with real Python workers: a
 * second close() (concurrent, or later while the first still drains) waits for the same
 * drain, so the slow call in flight completes; destroy() during a drain cuts it short.
 * Regression: WorkerPool.close() called again during a drain skipped the wait and killed
 * the workers under the in-flight call.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nullAudit } from '../../agent/audit/index.ts';
import { loadConfig } from '../../agent/config/load.ts';
import { createLogger } from '../../agent/log/index.ts';
import { prepareSandbox } from '../../agent/sandbox/prepare.ts';
import { loadRoutines } from '../../agent/sources/routines.ts';
import { WorkerPool } from '../../agent/workers/pool.ts';
import { workerLimits } from '../../agent/workers/pools.ts';
import { baseConfig, stopAll, tempDir } from '../helpers/agent.ts';
import { childrenOf, inProcessAgent, trackResources } from './in-process.ts';

afterAll(stopAll);

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = createLogger({ level: 'error', write: () => {} });

/** One WorkerPool of one worker serving examples.sleep, built as workers/pools.ts builds them. */
async function sleepPool(drainTimeoutMs: number): Promise<WorkerPool> {
  const dir = tempDir();
  const path = join(dir, 'agent.config.json');
  writeFileSync(path, JSON.stringify(baseConfig({ workers: { poolSize: 1 } })), { mode: 0o600 });
  const config = loadConfig({ path, env: {} }).config;
  const { sources } = await loadRoutines(config, log, false, nullAudit);
  const limits = workerLimits(config);
  const { sandbox } = await prepareSandbox(config, limits, log, async () => undefined);
  const cwd = join(dir, 'empty');
  mkdirSync(cwd);
  const pool = new WorkerPool({
    size: 1,
    queueSize: 4,
    agingMs: config.calls.agingMs,
    drainTimeoutMs,
    log,
    circuit: config.workers.circuit,
    stderr: config.workers.stderr,
    maxCallsPerWorker: 0,
    recycleRssBytes: 0,
    recycleCpuSeconds: 0,
    spec: {
      launcher: sandbox.launcher,
      cwd,
      routines: { sleep: sources.sleep! },
      limits,
      confine: { ...sandbox.confine, policy: { ...(sandbox.confine.policy as object), limits } },
      maxReplyBytes: config.limits.maxResultBytes,
      startTimeoutMs: config.workers.startTimeoutMs,
    },
  });
  await pool.start();
  return pool;
}

const slowCall = (pool: Pick<WorkerPool, 'dispatch'>) => pool.dispatch({ routine: 'sleep', args: [0.8], kwargs: {}, timeoutMs: 10_000 });

describe('WorkerPool: close twice during a drain', () => {
  it('two concurrent close() calls: the in-flight call completes, then the worker is gone', async () => {
    const pool = await sleepPool(10_000);
    const call = slowCall(pool);
    await delay(200);
    const [a, b] = [pool.close(), pool.close()];
    expect(await call).toEqual({ ok: true, value: 0.8 });
    await Promise.all([a, b]);
    expect(pool.stats.workers).toBe(0);
    expect(childrenOf(process.pid)).toEqual([]);
  });

  it('a second close() while the first drains waits for the same drain (it does not kill the call)', async () => {
    const pool = await sleepPool(10_000);
    const call = slowCall(pool);
    await delay(200);
    const first = pool.close();
    await delay(100);
    const second = pool.close();
    const outcome = await call;
    expect(outcome).toEqual({ ok: true, value: 0.8 });
    await Promise.all([first, second]);
    // Calls after close are refused with the typed error.
    expect(await slowCall(pool)).toMatchObject({ ok: false, error: { code: 'SKEIN_ERR_SHUTTING_DOWN' } });
  });

  it('destroy() during the drain kills at once: the call fails, and both promises settle', async () => {
    const pool = await sleepPool(10_000);
    const call = slowCall(pool);
    await delay(200);
    const closing = pool.close();
    const started = Date.now();
    await Promise.all([pool.destroy(), pool.destroy(), closing]);
    const outcome = await call;
    expect(outcome.ok).toBe(false);
    expect(Date.now() - started).toBeLessThan(700);
    expect(childrenOf(process.pid)).toEqual([]);
  });
});

describe('the agent: close twice during a drain', () => {
  it('agent.close() twice, concurrently, while a slow call runs: the call completes and nothing is left behind', async () => {
    const tracked = trackResources();
    const agent = await inProcessAgent({ workers: { poolSize: 1 }, limits: { drainTimeoutMs: 10_000 }, admin: { enabled: true, listen: '127.0.0.1:0' } }).start();
    const call = slowCall(agent.pool);
    await delay(200);
    await Promise.all([agent.close(), agent.close()]);
    expect(await call).toEqual({ ok: true, value: 0.8 });
    await delay(100);
    for (let t = 0; t < 3; t++) await new Promise((r) => setImmediate(r));
    tracked.stop();
    expect(childrenOf(process.pid)).toEqual([]);
    expect(tracked.live()).toEqual([]);
  });
});
