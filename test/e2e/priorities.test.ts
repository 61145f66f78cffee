/**
 * Priorities and fair queues through the compiled binary (docs/calls.md): a saturated pool of
 * one worker serves x-skein-priority high before normal before low, callers with their own
 * client certificates take turns whatever one of them has queued, calls.weights gives a
 * caller its share, aging lets an old low call pass fresh high ones, maxConcurrency holds a
 * routine back while another routine uses the idle worker, and a bad header is a 400.
 *
 * Service order is read from the call.completed audit lines (their seq), one worker serving
 * one call at a time; the queued calls are submitted (call.submitted) while a sleep blocks it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, postJson, type Creds } from '../helpers/h2.ts';
import { baseConfig, runCli, startAgent, startMustFail, stopAll, type StartedAgent } from '../helpers/agent.ts';

afterAll(stopAll);

const CLIENTS = 'spiffe://skein.local/client/*';
let nextId = 0;

/** Issues a client certificate (spiffe://skein.local/client/<name>) from the agent's development CA, as a user would. */
async function issueClient(pkiDir: string, name: string): Promise<Creds> {
  const r = await runCli(['pki', 'issue', '--dir', pkiDir, '--name', name, '--kind', 'client']);
  expect(r.code, r.stderr).toBe(0);
  return { cert: join(pkiDir, `client-${name}.crt`), key: join(pkiDir, `client-${name}.key`), ca: join(pkiDir, 'ca.crt') };
}

/** A call labelled by its request id; resolves with the response. */
function call(session: http2.ClientHttp2Session, label: string, routine: string, args: unknown[], priority?: string) {
  return postJson(session, routine, { args }, { 'x-request-id': label, ...(priority ? { 'x-skein-priority': priority } : {}) });
}

type Labelled = Promise<unknown> & { label: string };
const labelled = (label: string, p: Promise<unknown>): Labelled => Object.assign(p, { label });

/**
 * Blocks the worker with a 1.5 s sleep, queues `queue()`'s calls behind it, then `later()`'s
 * (each seen submitted before the sleep ends), and returns the labels in the order they were served.
 */
async function servedOrder(agent: StartedAgent, session: http2.ClientHttp2Session, queue: () => Labelled[], later: () => Promise<Labelled[]> = async () => []): Promise<string[]> {
  const run = `run${nextId++}`;
  const blocker = call(session, `${run}-blocker`, 'sleep', [1.5]);
  await agent.waitForAudit((l) => l.event === 'call.submitted' && l.requestId === `${run}-blocker`);
  const calls = queue();
  calls.push(...(await later()));
  for (const c of calls) await agent.waitForAudit((l) => l.event === 'call.submitted' && l.requestId === c.label);
  const responses = await Promise.all([blocker, ...calls]);
  for (const r of responses) expect((r as { status: number }).status).toBe(200);
  const labels = new Set(calls.map((c) => c.label));
  for (const c of calls) await agent.waitForAudit((l) => l.event === 'call.completed' && l.requestId === c.label);
  return agent.audit
    .filter((l) => l.event === 'call.completed' && labels.has(l.requestId as string))
    .sort((a, b) => (a.seq as number) - (b.seq as number))
    .map((l) => l.requestId as string);
}

describe('a saturated pool of one worker', () => {
  let agent: StartedAgent;
  let a: http2.ClientHttp2Session;
  let b: http2.ClientHttp2Session;
  let heavy: http2.ClientHttp2Session;

  beforeAll(async () => {
    agent = await startAgent({
      config: baseConfig({
        workers: { poolSize: 1, isolation: 'shared' },
        authorization: { allow: [{ identities: [CLIENTS], routines: ['*'] }] },
        // Long enough that nothing ages while a test's calls wait.
        calls: { agingMs: 600_000, weights: [{ identities: ['spiffe://skein.local/client/heavy'], weight: 3 }] },
      }),
    });
    a = connect(agent.port, await issueClient(agent.pki.dir, 'alice'));
    b = connect(agent.port, await issueClient(agent.pki.dir, 'bob'));
    heavy = connect(agent.port, await issueClient(agent.pki.dir, 'heavy'));
  });
  afterAll(async () => {
    for (const s of [a, b, heavy]) s?.close();
    await agent?.stop();
  });

  it('serves high, then normal, then low, FIFO within a caller and level, whatever order they arrived in', async () => {
    const order = await servedOrder(agent, a, () =>
      [
        ['low1', 'low'],
        ['normal1', undefined],
        ['high1', 'high'],
        ['low2', 'low'],
        ['normal2', 'normal'],
        ['high2', 'high'],
      ].map(([label, priority]) => labelled(label!, call(a, label!, 'sleep', [0.02], priority))),
    );
    expect(order).toEqual(['high1', 'high2', 'normal1', 'normal2', 'low1', 'low2']);
  });

  it('a caller with 30 calls queued first does not hold back another caller: they alternate', async () => {
    const order = await servedOrder(agent, a, () => [
      ...Array.from({ length: 30 }, (_, i) => labelled(`flood${i}`, call(a, `flood${i}`, 'sleep', [0.01]))),
      ...Array.from({ length: 3 }, (_, i) => labelled(`light${i}`, call(b, `light${i}`, 'sleep', [0.01]))),
    ]);
    expect(order.slice(0, 6)).toEqual(['flood0', 'light0', 'flood1', 'light1', 'flood2', 'light2']);
    expect(order.filter((l) => l.startsWith('flood'))).toEqual(Array.from({ length: 30 }, (_, i) => `flood${i}`));
  });

  it('calls.weights: a caller of weight 3 gets three calls per turn of a caller of weight 1', async () => {
    const order = await servedOrder(agent, a, () => [
      ...Array.from({ length: 12 }, (_, i) => labelled(`w3-${i}`, call(heavy, `w3-${i}`, 'sleep', [0.01]))),
      ...Array.from({ length: 12 }, (_, i) => labelled(`w1-${i}`, call(b, `w1-${i}`, 'sleep', [0.01]))),
    ]);
    // H: the weight-3 caller, b: the weight-1 one; once H's 12 are served, b's rest follow.
    const shape = order.map((l) => (l.startsWith('w3') ? 'H' : 'b'));
    expect(shape.join('')).toBe('HHHb'.repeat(4) + 'b'.repeat(8));
  });

  it('calls.weights applies on SIGHUP: after the reload the two callers alternate; a malformed pattern is refused and the weights stay', async () => {
    const reloadWith = (weights: unknown[]) => {
      const config = JSON.parse(readFileSync(agent.configPath, 'utf8')) as { calls: { weights: unknown[] } };
      config.calls.weights = weights;
      writeFileSync(agent.configPath, JSON.stringify(config), { mode: 0o600 });
      const mark = agent.logs.length;
      agent.proc.kill('SIGHUP');
      return agent.waitForLog((l) => agent.logs.indexOf(l) >= mark && String(l.msg).startsWith('config reload'));
    };
    const shape = async (round: string) => {
      const order = await servedOrder(agent, a, () => [
        ...Array.from({ length: 6 }, (_, i) => labelled(`${round}-H${i}`, call(heavy, `${round}-H${i}`, 'sleep', [0.01]))),
        ...Array.from({ length: 6 }, (_, i) => labelled(`${round}-b${i}`, call(b, `${round}-b${i}`, 'sleep', [0.01]))),
      ]);
      return order.map((l) => (l.startsWith(`${round}-H`) ? 'H' : 'b')).join('');
    };
    try {
      const bad = await reloadWith([{ identities: ['spiffe://skein.local/**/x'], weight: 1 }]);
      expect(bad).toMatchObject({ msg: 'config reload refused; the running configuration stays', code: 'SKEIN_ERR_CONFIG' });
      expect(String(bad.error)).toContain('calls.weights[0].identities[0]');
      expect(await shape('before')).toBe('HHHbHHHbbbbb');
      const applied = await reloadWith([{ identities: ['spiffe://skein.local/client/heavy'], weight: 1 }]);
      expect(applied).toMatchObject({ msg: 'config reloaded', applied: ['calls.weights'], pending: [] });
      expect(await shape('after')).toBe('HbHbHbHbHbHb');
    } finally {
      await reloadWith([{ identities: ['spiffe://skein.local/client/heavy'], weight: 3 }]);
    }
  });

  it('an unknown x-skein-priority is a 400 naming the levels, and the agent keeps serving', async () => {
    const res = await postJson(a, 'echo', { args: [1] }, { 'x-skein-priority': 'urgent' });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: 'SKEIN_ERR_BAD_REQUEST', message: 'x-skein-priority must be one of high, normal, low; got "urgent"' });
    const ok = await postJson(a, 'echo', { args: [1] }, { 'x-skein-priority': 'low' });
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ result: 1 });
  });
});

describe('aging and maxConcurrency (two workers, sleep capped at one)', () => {
  let agent: StartedAgent;
  let session: http2.ClientHttp2Session;

  beforeAll(async () => {
    agent = await startAgent({
      config: baseConfig({ workers: { poolSize: 2, isolation: 'shared' }, calls: { agingMs: 200 }, routines: { sleep: { maxConcurrency: 1 } } }),
    });
    session = connect(agent.port, agent.pki);
  });
  afterAll(async () => {
    session?.close();
    await agent?.stop();
  });

  it('routines.sleep.maxConcurrency 1: a second sleep waits while echo takes the idle worker', async () => {
    const t0 = performance.now();
    const done: string[] = [];
    const track = (label: string, p: Promise<{ status: number }>) => p.then((r) => (expect(r.status).toBe(200), done.push(label)));
    const sleeps = [track('sleep1', call(session, 'cap-sleep1', 'sleep', [0.8])), track('sleep2', call(session, 'cap-sleep2', 'sleep', [0.8]))];
    await agent.waitForAudit((l) => l.event === 'call.submitted' && l.requestId === 'cap-sleep2');
    await track('echo', call(session, 'cap-echo', 'echo', [1]));
    expect(done).toEqual(['echo']);
    await Promise.all(sleeps);
    expect(done).toEqual(['echo', 'sleep1', 'sleep2']);
    // One after the other, though two workers were there.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1600);
  });

  it('a low call that waited 2 × calls.agingMs goes before high calls that arrived after it', async () => {
    const order = await servedOrder(
      agent,
      session,
      () => {
        const low = labelled('aged-low', call(session, 'aged-low', 'sleep', [0.01], 'low'));
        return [low];
      },
      async () => {
        // The high calls arrive 600 ms (3 × calls.agingMs) after the low one: the low one has
        // aged to high and waited longer, so it goes first; without aging it would go last.
        await new Promise((r) => setTimeout(r, 600));
        return [0, 1].map((i) => labelled(`fresh-high${i}`, call(session, `fresh-high${i}`, 'sleep', [0.01], 'high')));
      },
    );
    expect(order).toEqual(['aged-low', 'fresh-high0', 'fresh-high1']);
  });
});

describe('calls.weights patterns', () => {
  it('a malformed pattern stops start-up (exit 2) naming its key, before any worker starts', async () => {
    const stderr = await startMustFail(baseConfig({ calls: { weights: [{ identities: ['spiffe://skein.local/**/x'], weight: 2 }] } }));
    expect(stderr).toContain(
      'error [SKEIN_ERR_CONFIG]: config key "calls.weights[0].identities[0]": "spiffe://skein.local/**/x" "**" is only allowed as the last path segment (spiffe://td/client/**) or alone',
    );
    expect(stderr).not.toContain('workers ready');
  });
});
