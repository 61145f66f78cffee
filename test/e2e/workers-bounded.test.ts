/**
 * Workers stay bounded (findings of the outside audit), through the binary: what a call
 * leaves running does not outlive it, a routine's stderr cannot flood the agent log, a reply
 * that is cheap to send but costly to decode is refused before it is decoded, and a
 * protocol violation is logged once.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, baseConfig, failure, FIXTURES, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';
import { requires, tool } from '../helpers/requires.ts';

const BOUNDED = join(FIXTURES, 'bounded.py');
const ROUTINES = join(FIXTURES, 'routines.py');
const fixture = (names: string[]) => Object.fromEntries(names.map((n) => [n, { file: BOUNDED }]));
const MiB = 1024 * 1024;

afterAll(stopAll);

async function metric(agent: StartedAgent, series: string): Promise<number> {
  const admin = String((await agent.waitForLog((l) => l.msg === 'admin listening')).address);
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** CPU seconds (user + system) a process has used, from /proc; undefined once it is gone. */
function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

function procStatusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return Number(m![1]);
}

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  for (const until = Date.now() + timeoutMs; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) if (cond()) return true;
  return cond();
}

describe('a call leaves nothing running behind', () => {
  let agent: StartedAgent;
  beforeAll(async () => {
    agent = await startAgent({
      config: baseConfig({
        // One shared worker: every call below lands in the worker the previous call used,
        // unless it was retired.
        workers: { poolSize: 1, isolation: 'shared', maxCallsPerWorker: 0, circuit: { failures: 1000, windowMs: 60_000, cooldownMs: 100 } },
        routines: fixture(['pid', 'spin', 'spy', 'victim', 'stolen', 'joined_thread']),
      }),
    });
  });
  afterAll(() => agent?.stop());

  it.each(['thread', '_thread'])('a %s left spinning stops burning CPU: its worker is retired after the call', async (kind) => {
    const client = agent.client();
    try {
      const pid = await client.dispatch<number>('spin', { args: [kind], timeoutMs: 2_000 });
      const start = cpuSeconds(pid);
      await new Promise((r) => setTimeout(r, 1_500));
      const later = cpuSeconds(pid);
      // Gone, or at least not burning: under 0.2 CPU-seconds in 1.5 s (it was ~1 per second).
      if (start !== undefined && later !== undefined) expect(later - start).toBeLessThan(0.2);
      expect(await waitUntil(() => !alive(pid), 2_000)).toBe(true);
      expect(await client.dispatch<number>('pid')).not.toBe(pid);
      const recycle = await agent.waitForAudit((a) => a.event === 'worker.recycle' && a.pid === pid);
      expect(recycle).toMatchObject({ reason: 'leftovers', routine: 'spin', threads: 1 });
    } finally {
      await client.close();
    }
  });

  it.each(['thread', '_thread', 'timer', 'profile'])("a %s left behind cannot read the next call's arguments", async (kind) => {
    const client = agent.client();
    try {
      const spyPid = await client.dispatch<number>('spy', { args: [kind] });
      const secret = `secret-${kind}-${Date.now()}`;
      expect(await client.dispatch('victim', { args: [secret] })).toBe('done');
      const report = await client.dispatch<{ pid: number; stolen: string[] }>('stolen');
      expect(report.stolen).not.toContain(secret);
      expect(report.pid).not.toBe(spyPid);
      const recycle = await agent.waitForAudit((a) => a.event === 'worker.recycle' && a.pid === spyPid);
      expect(recycle.reason).toBe('leftovers');
      if (kind === 'timer' || kind === 'profile') expect(recycle.activity).toEqual([kind === 'timer' ? 'timer' : 'trace']);
    } finally {
      await client.close();
    }
  });

  it('a thread started and joined within the call keeps its worker', async () => {
    const client = agent.client();
    try {
      const pids = [];
      for (let i = 0; i < 20; i++) pids.push(await client.dispatch<number>('joined_thread'));
      expect(new Set(pids).size).toBe(1);
      expect(await client.dispatch<number>('pid')).toBe(pids[0]);
    } finally {
      await client.close();
    }
  });

  it('counts recycles by reason', async () => {
    expect(await metric(agent, 'skein_worker_recycles_total{reason="leftovers"}')).toBeGreaterThanOrEqual(6);
  });
});

describe('what /proc says about a worker, read after its calls', () => {
  it('a child process left behind is counted from /proc: the worker and the child are gone before the next call', async () => {
    // Without the sandbox's seccomp layer, which refuses fork: the count is the agent's own
    // reading of /proc, whatever the layers.
    const agent = await startAgent({
      config: baseConfig({ workers: { poolSize: 1, isolation: 'shared', maxCallsPerWorker: 0 }, sandbox: { profile: 'none' }, routines: fixture(['pid', 'fork_child']) }),
    });
    const client = agent.client();
    try {
      const left = await client.dispatch<{ pid: number; child: number }>('fork_child');
      const recycle = await agent.waitForAudit((a) => a.event === 'worker.recycle' && a.pid === left.pid);
      expect(recycle).toMatchObject({ reason: 'leftovers', routine: 'fork_child', children: 1 });
      expect(recycle).not.toHaveProperty('threads');
      expect(await waitUntil(() => !alive(left.child) && !alive(left.pid), 2_000)).toBe(true);
      expect(await client.dispatch<number>('pid')).not.toBe(left.pid);
    } finally {
      await client.close();
      await agent.stop();
    }
  });

  it('a worker whose CPU time nears sandbox.cpuSeconds is replaced before the backstop kills it', async () => {
    // sandbox.cpuSeconds 2: the worker is retired past 1 CPU-second, checked every 8th call.
    const agent = await startAgent({
      config: baseConfig({ workers: { poolSize: 1, isolation: 'shared', maxCallsPerWorker: 0 }, sandbox: { cpuSeconds: 2 }, routines: fixture(['pid', 'burn']) }),
    });
    const client = agent.client();
    try {
      const first = await client.dispatch<number>('burn', { args: [1.2], timeoutMs: 10_000 });
      for (let i = 0; i < 6; i++) expect(await client.dispatch<number>('pid')).toBe(first);
      await client.dispatch('pid');
      const recycle = await agent.waitForAudit((a) => a.event === 'worker.recycle' && a.pid === first);
      expect(recycle).toMatchObject({ reason: 'cpu', calls: 8 });
      expect(recycle.cpuSeconds).toBeGreaterThan(1);
      expect(await client.dispatch<number>('pid')).not.toBe(first);
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});

requires(tool('bwrap', 'bubblewrap')).describe('a call leaves nothing running behind, under bubblewrap', () => {
  it('the threads of the interpreter (under bwrap and its pid-1 reaper) are the ones counted', async () => {
    const agent = await startAgent({
      config: baseConfig({
        workers: { poolSize: 1, isolation: 'shared', maxCallsPerWorker: 0 },
        sandbox: { bubblewrap: true },
        routines: fixture(['pid', 'spin', 'joined_thread']),
      }),
    });
    const client = agent.client();
    try {
      for (let i = 0; i < 5; i++) await client.dispatch('joined_thread');
      await client.dispatch('pid');
      expect(agent.audit.filter((a) => a.event === 'worker.recycle')).toEqual([]);
      await client.dispatch('spin', { args: ['_thread'] });
      expect(await agent.waitForAudit((a) => a.event === 'worker.recycle')).toMatchObject({ reason: 'leftovers', threads: 1 });
      await agent.waitForLog((l) => l.msg === 'worker exited; starting a replacement' && l.reason === 'recycle');
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});

describe("a routine's stderr cannot flood the agent log", () => {
  it('200,000 lines / 50 MB of stderr become a bounded number of log lines; the drop is counted and noticed; calls are served', async () => {
    const agent = await startAgent({
      config: baseConfig({
        workers: { poolSize: 2, isolation: 'shared' },
        routines: fixture(['stderr_flood', 'echo']),
      }),
    });
    const client = agent.client();
    try {
      const started = Date.now();
      const logsBefore = agent.logs.length;
      const bytesBefore = Buffer.byteLength(agent.stderr());
      const flood = client.dispatch('stderr_flood', { args: [200_000, 50 * MiB], timeoutMs: 60_000 });
      // Another call is served meanwhile (the other worker).
      expect(await client.dispatch('echo', { args: ['during'] })).toBe('during');
      expect(await flood).toBe('flooded');
      await agent.waitForLog((l) => l.msg === 'worker stderr dropped: over workers.stderr limits');
      await new Promise((r) => setTimeout(r, 300)); // the last batch (20 ms) and any straggler
      const seconds = (Date.now() - started) / 1000;
      const records = agent.logs.slice(logsBefore).filter((l) => l.msg === 'worker stderr');
      const logBytes = Buffer.byteLength(agent.stderr()) - bytesBefore;
      // workers.stderr defaults: 20 lines and 32 KiB a second per worker, 10 s bursts, two
      // workers in the pool; a record carries ~250 bytes of fields besides the text.
      const maxLines = 2 * 20 * (10 + seconds);
      expect(records.length).toBeLessThanOrEqual(maxLines);
      expect(logBytes).toBeLessThan(2 * 32 * 1024 * (10 + seconds) + 300 * (maxLines + 50));
      const relayed = records.reduce((n, l) => n + (typeof l.lines === 'number' ? l.lines : 1), 0);
      const dropped = await metric(agent, 'skein_worker_stderr_dropped_total');
      expect(dropped).toBeGreaterThan(150_000);
      expect(relayed + dropped).toBe(200_000);
      expect(await metric(agent, 'skein_worker_stderr_dropped_bytes_total')).toBeGreaterThan(40 * MiB);
      // Noticed, at most once per 10 s.
      const notices = agent.logs.filter((l) => l.msg === 'worker stderr dropped: over workers.stderr limits');
      expect(notices.length).toBeLessThanOrEqual(Math.ceil(seconds / 10) + 1);
      expect(notices[0]).toMatchObject({ level: 'warn', linesPerSecond: 20, bytesPerSecond: 32768 });
      expect(await client.dispatch('echo', { args: ['after'] })).toBe('after');
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});

describe('a reply is bounded by what decoding it costs, not only its bytes', () => {
  it('5 million empty lists: SKEIN_ERR_RESULT_TOO_LARGE quickly, agent memory within the documented bound, other calls not delayed', async () => {
    const agent = await startAgent({
      config: baseConfig({
        // limits.maxResultBytes stays at its default (16 MiB): the reply (15 MB) is under it.
        workers: { poolSize: 3, isolation: 'shared', circuit: { failures: 1000, windowMs: 60_000, cooldownMs: 100 } },
        routines: fixture(['many_lists', 'echo']),
      }),
    });
    const client = agent.client();
    try {
      expect(await client.dispatch('echo', { args: [1] })).toBe(1);
      const hwmBefore = procStatusKiB(agent.pid, 'VmHWM');
      // Unrelated calls keep going on the third worker while two such replies arrive at once.
      let stop = false;
      let worst = 0;
      const probe = (async () => {
        while (!stop) {
          const t = performance.now();
          await client.dispatch('echo', { args: ['probe'] });
          worst = Math.max(worst, performance.now() - t);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const t = performance.now();
      let errors;
      try {
        errors = await Promise.all([0, 1].map(() => failure(client.dispatch('many_lists', { args: [5_000_000], timeoutMs: 30_000 }))));
        await new Promise((r) => setTimeout(r, 200));
      } finally {
        stop = true;
        await probe;
      }
      const elapsed = performance.now() - t;
      for (const err of errors) {
        expect(err.code).toBe('SKEIN_ERR_RESULT_TOO_LARGE');
        expect(err.details.status).toBe(502);
        expect(err.message).toMatch(/more than 134217728 bytes of agent memory to decode \(8 × limits\.maxResultBytes, at least 64 MiB\)/);
      }
      expect(elapsed).toBeLessThan(5_000);
      // docs/protocol.md: decoding one reply costs at most 8 × limits.maxResultBytes (128 MiB
      // here); two at once stayed far below that together (unbounded, they took 1.2 GiB).
      const grownMiB = (procStatusKiB(agent.pid, 'VmHWM') - hwmBefore) / 1024;
      expect(grownMiB).toBeLessThan(128);
      expect(worst).toBeLessThan(1_000);
      expect(await client.dispatch('echo', { args: ['after'] })).toBe('after');
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});

describe('protocol violations', () => {
  it('one oversize reply logs its violation exactly once', async () => {
    const agent = await startAgent({
      config: baseConfig({
        workers: { poolSize: 1, isolation: 'shared' },
        limits: { maxResultBytes: 1 * MiB },
        routines: { forge: { file: ROUTINES }, pid: { file: ROUTINES } },
      }),
    });
    const client = agent.client();
    try {
      const before = await client.dispatch<number>('pid');
      const err = await failure(client.dispatch('forge', { args: ['oversize'] }));
      expect(err.code).toBe('SKEIN_ERR_RESULT_TOO_LARGE');
      expect(await waitUntil(() => !alive(before), 2_000)).toBe(true);
      await agent.waitForLog((l) => l.msg === 'worker exited; starting a replacement');
      expect(await client.dispatch<number>('pid')).not.toBe(before);
      const violations = agent.logs.filter((l) => l.msg === 'worker protocol violation; killing worker');
      expect(violations).toHaveLength(1);
      // Refused from the frame's header, before a byte of its payload was kept.
      expect(violations[0]).toMatchObject({ reason: 'oversize', what: `frame of ${2.5 * MiB} bytes announced (limit ${MiB})` });
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});
