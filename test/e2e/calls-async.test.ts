/**
 * Async calls through the compiled binary (docs/calls.md): submit → 202 + location → fetch
 * with waitMs; typed errors; cancelling queued and running calls; the caller's list; other
 * identities get the same 404 as for an unknown id unless a plugin allows call.read; a full
 * store refuses with 503 + retry-after and keeps what it accepted; results expire; and
 * kill -9 + restart loses nothing (queued calls run, the running one is interrupted, or run
 * again for an idempotent routine). Raw node:http2 with the development PKI's certificates.
 */
import { decode as cborDecode } from 'cbor-x';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import type http2 from 'node:http2';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, request, type Creds, type RawResponse } from '../helpers/h2.ts';
import { BINARY, baseConfig, DEV_CLIENT, EXAMPLES, FIXTURES, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

afterAll(stopAll);

type Json = Record<string, any>;
const OTHER = 'spiffe://skein.local/client/other';
const READER = 'spiffe://skein.local/client/reader';
const UNKNOWN_ID = 'AAAAAAAAAAAAAAAAAAAAAAAA';

const json = (r: RawResponse): Json => (r.body.length ? JSON.parse(r.body.toString()) : {});

async function submit(s: http2.ClientHttp2Session, routine: string, body: unknown, extra: http2.OutgoingHttpHeaders = {}): Promise<RawResponse & { json: Json }> {
  const r = await request(s, { ':method': 'POST', ':path': `/v1/calls/${routine}`, 'content-type': 'application/json', ...extra }, JSON.stringify(body));
  return { ...r, json: json(r) };
}

async function call(s: http2.ClientHttp2Session, method: 'GET' | 'DELETE', path: string, extra: http2.OutgoingHttpHeaders = {}): Promise<RawResponse & { json: Json }> {
  const r = await request(s, { ':method': method, ':path': path, ...extra });
  return { ...r, json: (r.headers['content-type'] === 'application/json' ? json(r) : {}) as Json };
}

/** Waits (long-polls) for the call to finish and returns it. */
async function result(s: http2.ClientHttp2Session, id: string): Promise<Json> {
  const r = await call(s, 'GET', `/v1/calls/${id}?waitMs=20000`);
  expect(r.status, r.body.toString()).toBe(200);
  return r.json;
}

/** Polls until the call has the status (bounded). */
async function until(s: http2.ClientHttp2Session, id: string, status: string): Promise<Json> {
  for (let i = 0; i < 200; i++) {
    const r = await call(s, 'GET', `/v1/calls/${id}`);
    if (r.json?.status === status) return r.json;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`call ${id} never became ${status}`);
}

async function clientOf(agent: StartedAgent, name: string): Promise<Creds> {
  const r = await runCli(['pki', 'issue', '--dir', agent.pki.dir, '--name', name, '--kind', 'client']);
  expect(r.code, r.stderr).toBe(0);
  return { cert: join(agent.pki.dir, `client-${name}.crt`), key: join(agent.pki.dir, `client-${name}.key`), ca: agent.pki.ca };
}

describe('async calls: submit, fetch, cancel, list, and who may see them', () => {
  let agent: StartedAgent;
  let s: http2.ClientHttp2Session;
  let other: http2.ClientHttp2Session;
  let reader: http2.ClientHttp2Session;

  beforeAll(async () => {
    agent = await startAgent({
      config: baseConfig({
        workers: { poolSize: 2 },
        limits: { maxTimeoutMs: 60_000 },
        authorization: {
          allow: [
            { identities: [DEV_CLIENT], routines: ['*'] },
            { identities: [OTHER, READER], routines: ['echo'] },
          ],
        },
        plugins: { dir: join(FIXTURES, 'plugins'), enabled: [{ name: 'call-reader', options: { readers: [READER] } }] },
      }),
    });
    s = connect(agent.port, agent.pki);
    other = connect(agent.port, await clientOf(agent, 'other'));
    reader = connect(agent.port, await clientOf(agent, 'reader'));
  });
  afterAll(async () => {
    for (const x of [s, other, reader]) x?.close();
    await agent?.stop();
  });

  it('POST → 202 with the id and location; GET ?waitMs returns it succeeded with its result', async () => {
    const r = await submit(s, 'add', { args: [2, 3] }, { 'x-skein-priority': 'high' });
    expect(r.status).toBe(202);
    expect(r.json).toEqual({ id: expect.stringMatching(/^[A-Za-z0-9_-]{24}$/), status: 'queued' });
    expect(r.headers.location).toBe(`/v1/calls/${r.json.id}`);
    const done = await result(s, r.json.id);
    expect(done).toMatchObject({ id: r.json.id, routine: 'add', status: 'succeeded', priority: 'high', result: 5 });
    expect(Date.parse(done.finishedAt)).toBeGreaterThanOrEqual(Date.parse(done.startedAt));
    expect(Date.parse(done.startedAt)).toBeGreaterThanOrEqual(Date.parse(done.submittedAt));
    const line = await agent.waitForAudit((l) => l.event === 'call.submitted' && l.callId === r.json.id);
    expect(line).toMatchObject({ routine: 'add', shape: 'async', priority: 'high', caller: JSON.stringify([DEV_CLIENT]) });
    await agent.waitForAudit((l) => l.event === 'call.completed' && l.callId === r.json.id && l.outcome === 'ok');
  });

  it('a GET with accept: application/cbor is answered in CBOR', async () => {
    const r = await submit(s, 'echo', { args: ['cbor please'] });
    await result(s, r.json.id);
    const got = await call(s, 'GET', `/v1/calls/${r.json.id}`, { accept: 'application/cbor' });
    expect(got.headers['content-type']).toBe('application/cbor');
    expect(cborDecode(got.body)).toMatchObject({ status: 'succeeded', result: 'cbor please' });
  });

  it('a routine that raises: failed, with the typed error a sync call would get', async () => {
    const r = await submit(s, 'fail', { args: ['boom'] });
    const done = await result(s, r.json.id);
    expect(done.status).toBe('failed');
    expect(done.error).toMatchObject({ code: 'SKEIN_ERR_ROUTINE_RAISED', message: expect.stringContaining('boom'), meta: { exception: expect.objectContaining({ type: 'ValueError' }) } });
    expect(done.result).toBeUndefined();
  });

  it('DELETE cancels a queued call (it never runs) and a running one (its worker is stopped)', async () => {
    // Two workers: two sleeps run, the third waits in the store.
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await submit(s, 'sleep', { args: [30] })).json.id as string);
    await until(s, ids[0]!, 'running');
    await until(s, ids[1]!, 'running');
    expect((await call(s, 'GET', `/v1/calls/${ids[2]}`)).json.status).toBe('queued');
    const queued = await call(s, 'DELETE', `/v1/calls/${ids[2]}`);
    expect(queued.status).toBe(200);
    expect(queued.json).toMatchObject({ id: ids[2], status: 'cancelled' });
    expect(queued.json.startedAt).toBeUndefined();
    for (const id of ids.slice(0, 2)) {
      const running = await call(s, 'DELETE', `/v1/calls/${id}`);
      expect(running.json).toMatchObject({ id, status: 'cancelled', startedAt: expect.any(String) });
    }
    await agent.waitForAudit((l) => l.event === 'worker.kill' && l.reason === 'cancelled');
    // The workers serve again at once, and the cancelled ones stay cancelled.
    expect((await result(s, (await submit(s, 'add', { args: [1, 1] })).json.id)).result).toBe(2);
    for (const id of ids) expect((await call(s, 'GET', `/v1/calls/${id}`)).json.status).toBe('cancelled');
    // Cancelling a finished call answers it as it ended.
    expect((await call(s, 'DELETE', `/v1/calls/${ids[0]}`)).json.status).toBe('cancelled');
  });

  it("GET /v1/calls lists the caller's own calls, newest first, by status, limited", async () => {
    const a = (await submit(s, 'echo', { args: ['a'] })).json.id;
    const b = (await submit(s, 'echo', { args: ['b'] })).json.id;
    await result(s, a);
    await result(s, b);
    const all = await call(s, 'GET', '/v1/calls');
    expect(all.status).toBe(200);
    expect(all.json.calls.slice(0, 2).map((c: Json) => c.id)).toEqual([b, a]);
    expect(all.json.calls[0].result).toBeUndefined(); // results only from GET /v1/calls/<id>
    const cancelled = await call(s, 'GET', '/v1/calls?status=cancelled');
    expect(cancelled.json.calls.length).toBe(3);
    expect((await call(s, 'GET', '/v1/calls?limit=1')).json.calls.map((c: Json) => c.id)).toEqual([b]);
    expect((await call(other, 'GET', '/v1/calls')).json.calls).toEqual([]);
  });

  it("another identity gets the same 404 for someone's call as for an unknown id, to read and to cancel", async () => {
    const id = (await submit(s, 'echo', { args: ['mine'] })).json.id;
    await result(s, id);
    const shape = (r: RawResponse & { json: Json }, asked: string) => {
      expect(r.status).toBe(404);
      const { requestId, ...rest } = r.json;
      expect(requestId).toBe(r.headers['x-request-id']);
      return JSON.stringify(rest).split(asked).join('<id>');
    };
    const theirs = shape(await call(other, 'GET', `/v1/calls/${id}`), id);
    const unknown = shape(await call(other, 'GET', `/v1/calls/${UNKNOWN_ID}`), UNKNOWN_ID);
    expect(theirs).toBe(unknown);
    expect(JSON.parse(theirs)).toEqual({
      code: 'SKEIN_ERR_CALL_NOT_FOUND',
      message: "no async call <id> is visible to you: unknown, expired (calls.resultTtlMs), or another caller's",
      meta: { peer: OTHER, callId: '<id>' },
    });
    expect(shape(await call(other, 'DELETE', `/v1/calls/${id}`), id)).toBe(shape(await call(other, 'DELETE', `/v1/calls/${UNKNOWN_ID}`), UNKNOWN_ID));
    // Waiting does not help either.
    expect((await call(other, 'GET', `/v1/calls/${id}?waitMs=10`)).status).toBe(404);
    // The owner still reads it.
    expect((await call(s, 'GET', `/v1/calls/${id}`)).json.status).toBe('succeeded');
  });

  it('an authorize hook that allows call.read lets another identity read (and only read) the call', async () => {
    const id = (await submit(s, 'echo', { args: ['shared'] })).json.id;
    await result(s, id);
    const read = await call(reader, 'GET', `/v1/calls/${id}`);
    expect(read.status).toBe(200);
    expect(read.json).toMatchObject({ id, status: 'succeeded', result: 'shared' });
    const decision = await agent.waitForAudit((l) => l.event === 'authz.decision' && l.requestId === read.headers['x-request-id']);
    expect(decision).toMatchObject({ action: 'call.read', routine: 'echo', outcome: 'allow', rule: 'call-reader:readers', peer: READER });
    // The plugin allows reading echo calls, not cancelling them, nor reading other routines' calls.
    expect((await call(reader, 'DELETE', `/v1/calls/${id}`)).status).toBe(404);
    const add = (await submit(s, 'add', { args: [1] })).json.id;
    await result(s, add);
    expect((await call(reader, 'GET', `/v1/calls/${add}`)).status).toBe(404);
    // The config's allow rules (READER may run echo) open nobody's calls: OTHER may run echo too.
    expect((await call(other, 'GET', `/v1/calls/${id}`)).status).toBe(404);
  });

  it('malformed ids, waitMs, status and limit are refused with 400 and a message', async () => {
    const cases: Array<[string, RegExp]> = [
      ['/v1/calls/not-an-id', /^call id "not-an-id" is malformed: an id is 24 characters of A-Z a-z 0-9 - _/],
      [`/v1/calls/${UNKNOWN_ID}?waitMs=soon`, /^waitMs must be a whole number of milliseconds from 0 to 60000, got "soon"/],
      [`/v1/calls/${UNKNOWN_ID}?waitMs=-1`, /^waitMs must be a whole number/],
      [`/v1/calls/${UNKNOWN_ID}?waitMs=60001`, /^waitMs 60001 exceeds the maximum of 60000 ms \(limits\.maxTimeoutMs\)/],
      ['/v1/calls?status=done', /^status must be one of queued, running, succeeded, failed, cancelled, interrupted, got "done"/],
      ['/v1/calls?limit=0', /^limit must be a whole number from 1 to 1000, got "0"/],
      ['/v1/calls?limit=1001', /^limit must be a whole number from 1 to 1000/],
    ];
    for (const [path, message] of cases) {
      const r = await call(s, 'GET', path);
      expect(r.status, path).toBe(400);
      expect(r.json.code).toBe('SKEIN_ERR_BAD_REQUEST');
      expect(r.json.message).toMatch(message);
    }
    // A submission is admitted exactly as a dispatch: unknown routine, bad priority, bad body.
    expect((await submit(s, 'nope', {})).json.code).toBe('SKEIN_ERR_UNKNOWN_ROUTINE');
    expect((await submit(s, 'echo', {}, { 'x-skein-priority': 'urgent' })).json.message).toMatch(/x-skein-priority must be one of high, normal, low/);
    expect((await submit(s, 'echo', { argz: [] })).json.message).toMatch(/unknown body field "argz"/);
    expect((await submit(other, 'add', {})).status).toBe(403);
    // And the agent keeps serving.
    expect((await result(s, (await submit(s, 'add', { args: [4, 4] })).json.id)).result).toBe(8);
  });
});

describe('a bounded store: full → 503 STORE_FULL, nothing accepted is dropped, results expire', () => {
  let agent: StartedAgent;
  let s: http2.ClientHttp2Session;

  beforeAll(async () => {
    agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1 }, calls: { maxStored: 3, resultTtlMs: 1000 } }) });
    s = connect(agent.port, agent.pki);
  });
  afterAll(async () => {
    s?.close();
    await agent?.stop();
  });

  it('refuses the call past calls.maxStored with retry-after; the accepted ones all finish; after the TTL they are gone and there is room', async () => {
    const ids = [];
    ids.push((await submit(s, 'sleep', { args: [0.5] })).json.id);
    ids.push((await submit(s, 'echo', { args: ['two'] })).json.id);
    ids.push((await submit(s, 'echo', { args: ['three'] })).json.id);
    const full = await submit(s, 'echo', { args: ['four'] });
    expect(full.status).toBe(503);
    expect(full.json.code).toBe('SKEIN_ERR_STORE_FULL');
    expect(full.json.message).toMatch(/the async results store is full: it holds 3 calls \(calls\.maxStored 3\); accepted calls are never dropped/);
    expect(Number(full.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const done: Json[] = [];
    for (const id of ids) done.push(await result(s, id));
    expect(done.map((d) => [d.status, d.result])).toEqual([
      ['succeeded', 0.5],
      ['succeeded', 'two'],
      ['succeeded', 'three'],
    ]);
    // /metrics shows what the store holds, by status.
    const admin = String((await agent.waitForLog((l) => l.msg === 'admin listening')).address);
    const metrics = await (await fetch(`http://${admin}/metrics`)).text();
    expect(metrics).toMatch(/^skein_async_calls\{status="succeeded"\} 3$/m);
    expect(metrics).toMatch(/^skein_async_calls\{status="queued"\} 0$/m);
    expect(Number(/^skein_async_store_bytes (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    // resultTtlMs after the last finished, every one of them reads as unknown, and there is room.
    await new Promise((r) => setTimeout(r, Date.parse(done[2]!.finishedAt) + 1100 - Date.now()));
    for (const id of ids) expect((await call(s, 'GET', `/v1/calls/${id}`)).json.code).toBe('SKEIN_ERR_CALL_NOT_FOUND');
    expect((await submit(s, 'echo', { args: ['four'] })).status).toBe(202);
  });
});

describe('kill -9 and restart: nothing accepted is lost', () => {
  it('queued calls run after the restart; the running one is interrupted, or run again when its routine is idempotent', async () => {
    const dir = tempDir();
    const config = baseConfig({
      workers: { poolSize: 1 },
      routines: { echo: { file: EXAMPLES }, sleep: { file: EXAMPLES }, again: { file: EXAMPLES, function: 'sleep', idempotent: true } },
    });
    let agent = await startAgent({ dir, config });
    let s = connect(agent.port, agent.pki);
    const running = (await submit(s, 'sleep', { args: [30] })).json.id as string;
    await until(s, running, 'running');
    const queued: string[] = [];
    for (let i = 0; i < 5; i++) queued.push((await submit(s, 'echo', { args: [`q${i}`] })).json.id);
    s.close();
    agent.proc.kill('SIGKILL');
    await agent.stop();

    agent = await startAgent({ dir, config });
    s = connect(agent.port, agent.pki);
    const cut = (await call(s, 'GET', `/v1/calls/${running}`)).json;
    expect(cut).toMatchObject({ status: 'interrupted', error: { code: 'SKEIN_ERR_SHUTTING_DOWN', message: expect.stringMatching(/not declared idempotent/) } });
    for (const [i, id] of queued.entries()) expect(await result(s, id)).toMatchObject({ status: 'succeeded', result: `q${i}` });

    // An idempotent routine cut off by kill -9 runs again after the restart.
    const rerun = (await submit(s, 'again', { args: [1] })).json.id as string;
    await until(s, rerun, 'running');
    s.close();
    agent.proc.kill('SIGKILL');
    await agent.stop();
    agent = await startAgent({ dir, config });
    s = connect(agent.port, agent.pki);
    expect(await result(s, rerun)).toMatchObject({ status: 'succeeded', result: 1 });
    // Every id still answers.
    for (const id of [running, ...queued]) expect((await call(s, 'GET', `/v1/calls/${id}`)).status).toBe(200);
    s.close();
    await agent.stop();
  });

  it('a graceful stop leaves queued calls queued for the next start', async () => {
    const dir = tempDir();
    const config = baseConfig({ workers: { poolSize: 1 }, limits: { drainTimeoutMs: 200 } });
    let agent = await startAgent({ dir, config });
    let s = connect(agent.port, agent.pki);
    const first = (await submit(s, 'sleep', { args: [30] })).json.id as string;
    await until(s, first, 'running');
    const waiting = (await submit(s, 'echo', { args: ['later'] })).json.id as string;
    s.close();
    expect(await agent.stop('SIGTERM')).toBe(0);
    agent = await startAgent({ dir, config });
    s = connect(agent.port, agent.pki);
    expect((await call(s, 'GET', `/v1/calls/${first}`)).json.status).toBe('interrupted');
    expect(await result(s, waiting)).toMatchObject({ status: 'succeeded', result: 'later' });
    s.close();
    await agent.stop();
  });
});

describe('skein validate checks the store', () => {
  it('a store in a read-only folder: exit 2 naming calls.store', async () => {
    const etc = tempDir();
    const pki = join(etc, 'pki');
    for (const args of [
      ['pki', 'init', '--dir', pki],
      ['pki', 'issue', '--dir', pki, '--name', 't', '--kind', 'agent'],
    ])
      expect((await runCli(args)).code).toBe(0);
    const ro = join(etc, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o755);
    const path = join(etc, 'agent.config.json');
    writeFileSync(
      path,
      JSON.stringify({
        agent: { name: 't', listen: '127.0.0.1:0', stateDir: join(etc, 'state') },
        log: { format: 'json' },
        workers: { poolSize: 1 },
        tls: { cert: join(pki, 'agent-t.crt'), key: join(pki, 'agent-t.key'), ca: join(pki, 'ca.crt') },
        routines: { echo: { file: EXAMPLES } },
        calls: { store: join(ro, 'calls.db') },
      }),
    );
    // A read-only bind mount (root and util-linux's unshare, as in CI): root ignores mode bits.
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const script = `mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" validate --config "$3"`;
      const proc = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ro, BINARY, path], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      proc.stderr!.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      proc.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(
      new RegExp(
        `error \\[SKEIN_ERR_CONFIG\\]: cannot open ${ro}/calls\\.db \\(calls\\.store is "${ro}/calls\\.db"\\): read-only file system \\(EROFS\\): point calls\\.store at a file in a writable folder`,
      ),
    );
  });
});
