/**
 * Hostile or unlucky routines versus the pool: forged protocol frames, cancellation, the
 * per-routine circuit breaker and worker recycling, each asserted through the binary with
 * the agent still serving afterwards.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, postJson } from '../helpers/h2.ts';
import { alive, baseConfig, failure, FIXTURES, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';

const FIX = join(FIXTURES, 'routines.py');
const FORGERIES = ['wrong_id', 'not_json', 'bad_kind', 'bad_cbor', 'oversize', 'late'];
const routines = {
  ...Object.fromEntries(['pid', 'slow_pid', 'crash', 'hoard'].map((r) => [r, { file: FIX }])),
  // One routine name per forgery: the circuit breaker counts kills per routine name.
  ...Object.fromEntries(FORGERIES.map((kind) => [`forge_${kind}`, { file: FIX, function: 'forge' }])),
};

let agent: StartedAgent;
beforeAll(async () => {
  agent = await startAgent({
    config: baseConfig({
      workers: { poolSize: 1, maxCallsPerWorker: 0, recycleMemoryMb: 0, circuit: { failures: 3, windowMs: 60_000, cooldownMs: 1_500 } },
      limits: { maxResultBytes: 1024 * 1024 },
      routines,
    }),
  });
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe('worker replies are untrusted', () => {
  const PROTOCOL = /malformed or unexpected reply/;
  it.each([
    ['wrong_id', 'SKEIN_ERR_WORKER_PROTOCOL', PROTOCOL, /^reply for call 999999999 while call \d+ was running$/],
    ['not_json', 'SKEIN_ERR_WORKER_PROTOCOL', PROTOCOL, /^payload is not JSON$/],
    ['bad_kind', 'SKEIN_ERR_WORKER_PROTOCOL', PROTOCOL, /^frame of unknown kind "Z"$/],
    ['bad_cbor', 'SKEIN_ERR_WORKER_PROTOCOL', PROTOCOL, /^CBOR payload: a tag at byte 0$/],
    ['oversize', 'SKEIN_ERR_RESULT_TOO_LARGE', /exceeded limits.maxResultBytes \(1048576 bytes\)/, /^frame of 2621440 bytes announced \(limit 1048576\)$/],
  ])('a forged %s frame kills the worker → %s', async (kind, code, message, what) => {
    const client = agent.client();
    try {
      const before = await client.dispatch<number>('pid');
      const err = await failure(client.dispatch(`forge_${kind}`, { args: [kind] }));
      expect(err.code).toBe(code);
      expect(err.details.status).toBe(502);
      expect(err.message).toMatch(message);
      await agent.waitForLog((l) => l.msg === 'worker protocol violation; killing worker' && what.test(String(l.what)));
      expect(await gone(before)).toBe(true);
      expect(await client.dispatch<number>('pid')).not.toBe(before);
    } finally {
      await client.close();
    }
  });

  it('a frame sent while no call runs kills the idle worker', async () => {
    const client = agent.client();
    try {
      const before = await client.dispatch<number>('pid');
      expect(await client.dispatch('forge_late', { args: ['late'] })).toBe('late');
      await agent.waitForLog((l) => l.msg === 'worker protocol violation; killing worker' && l.what === 'reply while no call was running');
      expect(await gone(before)).toBe(true);
      expect(await client.dispatch<number>('pid')).not.toBe(before);
    } finally {
      await client.close();
    }
  });
});

describe('call frames into the worker', () => {
  it('a call frame larger than one read of the worker (175 KB of UTF-8, non-ASCII) arrives whole, in JSON and CBOR; the next small call too', async () => {
    const client = agent.client();
    try {
      const pid = await client.dispatch<number>('pid');
      const text = 'é😀x'.repeat(25_000);
      for (const encoding of ['json', 'cbor'] as const) {
        expect(await client.dispatch('echo', { args: [text], kwargs: { k: 'ü' }, encoding })).toEqual({ args: [text], kwargs: { k: 'ü' } });
        expect(await client.dispatch('echo', { args: ['small'], encoding })).toBe('small');
      }
      expect(await client.dispatch<number>('pid')).toBe(pid);
    } finally {
      await client.close();
    }
  });
});

describe('cancellation', () => {
  it('a reset stream kills the worker running the call; the routine does not keep running', async () => {
    const client = agent.client();
    try {
      const workerPid = await client.dispatch<number>('pid');
      const controller = new AbortController();
      const call = failure(client.dispatch('slow_pid', { args: [30], signal: controller.signal }));
      await new Promise((r) => setTimeout(r, 300));
      controller.abort();
      expect((await call).code).toBe('SKEIN_ERR_ABORTED');
      expect(await gone(workerPid)).toBe(true);
      await agent.waitForLog((l) => l.msg === 'worker exited; starting a replacement' && l.reason === 'cancelled');
      expect(await client.dispatch<number>('pid')).not.toBe(workerPid);
    } finally {
      await client.close();
    }
  });

  it('a closed connection cancels its calls too', async () => {
    const session = connect(agent.port, agent.pki);
    const first = await postJson(session, 'pid', {});
    const workerPid = first.json.result as number;
    postJson(session, 'slow_pid', { args: [30] }).catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    session.destroy();
    expect(await gone(workerPid)).toBe(true);
  });
});

describe('circuit breaker', () => {
  it('a routine that keeps crashing its worker is refused with 503 SKEIN_ERR_CIRCUIT_OPEN; others run', async () => {
    const session = connect(agent.port, agent.pki);
    try {
      for (let i = 0; i < 3; i++) {
        const r = await postJson(session, 'crash', {});
        expect(r.status).toBe(502);
        expect(r.json.code).toBe('SKEIN_ERR_WORKER_CRASHED');
        expect(r.json.message).toMatch(/exit code 13/);
      }
      const refused = await postJson(session, 'crash', {});
      expect(refused.status).toBe(503);
      expect(refused.json.code).toBe('SKEIN_ERR_CIRCUIT_OPEN');
      expect(refused.headers['retry-after']).toBe('2');
      // Other routines are unaffected.
      expect((await postJson(session, 'pid', {})).status).toBe(200);
      // After the cool-down one trial call runs again.
      await new Promise((r) => setTimeout(r, 1_600));
      expect((await postJson(session, 'crash', {})).json.code).toBe('SKEIN_ERR_WORKER_CRASHED');
      expect((await postJson(session, 'crash', {})).json.code).toBe('SKEIN_ERR_CIRCUIT_OPEN');
    } finally {
      session.close();
    }
  });
});

describe('recycling', () => {
  it('a worker is replaced after workers.maxCallsPerWorker calls', async () => {
    const a = await startAgent({ config: baseConfig({ workers: { poolSize: 1, maxCallsPerWorker: 3 }, routines }) });
    const client = a.client();
    try {
      const pids = [];
      for (let i = 0; i < 6; i++) pids.push(await client.dispatch<number>('pid'));
      expect(pids[0]).toBe(pids[2]);
      expect(pids[3]).not.toBe(pids[2]);
      expect(pids[3]).toBe(pids[5]);
    } finally {
      await client.close();
      await a.stop();
    }
  });

  it('a worker whose memory passes workers.recycleMemoryMb is replaced', async () => {
    const a = await startAgent({ config: baseConfig({ workers: { poolSize: 1, recycleMemoryMb: 64 }, routines }) });
    const client = a.client();
    try {
      const first = await client.dispatch<number>('pid');
      await client.dispatch('hoard', { args: [100] });
      // RSS is checked every 8th call of a worker.
      for (let i = 0; i < 6; i++) expect(await client.dispatch<number>('pid')).toBe(first);
      await a.waitForLog((l) => l.msg === 'worker over workers.recycleMemoryMb; recycling');
      expect(await client.dispatch<number>('pid')).not.toBe(first);
    } finally {
      await client.close();
      await a.stop();
    }
  });
});
