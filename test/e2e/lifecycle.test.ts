/**
 * Worker lifecycle through the binary: deadlines kill and replace workers, a crashed worker
 * is replaced, the queue is bounded (503 + Retry-After), SIGTERM drains in-flight calls.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect, postJson } from '../helpers/h2.ts';
import { baseConfig, failure, FIXTURES, startAgent, stopAll } from '../helpers/agent.ts';

const FIX = join(FIXTURES, 'routines.py');
const single = (extra: Record<string, unknown> = {}) => baseConfig({ workers: { poolSize: 1 }, routines: { pid: { file: FIX }, slow_pid: { file: FIX }, spin: { file: FIX } }, ...extra });

afterAll(stopAll);

/** Child PIDs of a process, from /proc (workers are direct children of the agent). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // raced with an exit
    }
  }
  return out;
}

describe('deadlines', () => {
  it('kills a routine at its deadline (504) and the next call runs on a fresh worker', async () => {
    const agent = await startAgent({ config: single() });
    const client = agent.client();
    try {
      const before = await client.dispatch<number>('pid');
      const started = Date.now();
      const err = await failure(client.dispatch('spin', { timeoutMs: 300 }));
      expect(err.code).toBe('SKEIN_ERR_DEADLINE_EXCEEDED');
      expect(err.details.status).toBe(504);
      expect(Date.now() - started).toBeLessThan(3000);
      const after = await client.dispatch<number>('pid');
      expect(after).not.toBe(before);
      // The spinning worker is gone, not merely abandoned.
      expect(() => process.kill(before, 0)).toThrow();
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});

describe('crashes', () => {
  it('a worker killed with SIGKILL mid-call → 502 SKEIN_ERR_WORKER_CRASHED, and the pool recovers', async () => {
    const agent = await startAgent({ config: single() });
    const client = agent.client();
    try {
      const workerPid = await client.dispatch<number>('pid');
      expect(childrenOf(agent.pid)).toContain(workerPid);
      const call = failure(client.dispatch('slow_pid', { args: [5] }));
      await new Promise((r) => setTimeout(r, 300));
      process.kill(workerPid, 'SIGKILL');
      const err = await call;
      expect(err.code).toBe('SKEIN_ERR_WORKER_CRASHED');
      expect(err.details.status).toBe(502);
      expect(err.message).toMatch(/died during the call \(signal SIGKILL\)/);
      const replacement = await client.dispatch<number>('pid');
      expect(replacement).not.toBe(workerPid);
      await agent.waitForLog((l) => l.msg === 'worker exited; starting a replacement' && l.signal === 'SIGKILL');
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});

describe('backpressure', () => {
  it('beyond the workers and the queue → 503 SKEIN_ERR_OVERLOADED with Retry-After, at once', async () => {
    const agent = await startAgent({ config: single({ limits: { queueSize: 1 } }) });
    const session = connect(agent.port, agent.pki);
    try {
      const running = postJson(session, 'slow_pid', { args: [1] });
      await new Promise((r) => setTimeout(r, 150));
      const queued = postJson(session, 'slow_pid', { args: [0] });
      await new Promise((r) => setTimeout(r, 50));
      const started = Date.now();
      const rejected = await postJson(session, 'pid', {});
      expect(Date.now() - started).toBeLessThan(500);
      expect(rejected.status).toBe(503);
      expect(rejected.headers['retry-after']).toBe('1');
      expect(rejected.json.code).toBe('SKEIN_ERR_OVERLOADED');
      expect((await running).status).toBe(200);
      expect((await queued).status).toBe(200);
      expect((await postJson(session, 'pid', {})).status).toBe(200);
    } finally {
      session.close();
      await agent.stop();
    }
  });
});

describe('shutdown', () => {
  it('SIGTERM drains an in-flight call, then exits 0', async () => {
    const agent = await startAgent({ config: single() });
    const client = agent.client();
    try {
      const call = client.dispatch('sleep', { args: [1] });
      await new Promise((r) => setTimeout(r, 250));
      const exit = agent.stop('SIGTERM');
      expect(await call).toBe(1);
      expect(await exit).toBe(0);
      expect(agent.logs.map((l) => l.msg)).toEqual(expect.arrayContaining(['draining', 'stopped']));
    } finally {
      await client.destroy();
    }
  });

  it('workers do not outlive an agent killed with SIGKILL', async () => {
    const agent = await startAgent({ config: single() });
    const client = agent.client();
    const workerPid = await client.dispatch<number>('pid');
    await client.destroy();
    await agent.stop('SIGKILL');
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      await new Promise((r) => setTimeout(r, 50));
      try {
        process.kill(workerPid, 0);
      } catch {
        alive = false;
      }
    }
    expect(alive).toBe(false);
  });
});
