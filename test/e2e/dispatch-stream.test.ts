/**
 * POST /v1/dispatch is served two ways (agent/server/dispatch.ts): straight on the HTTP/2
 * stream when the request has the plain shape, through the compat layer and hono otherwise.
 * These pin what the stream path has to reproduce of the compat layer and the adapter, and
 * that a dispatch of an unusual shape still reaches the same route: the rest of the route's
 * behaviour is pinned by dispatch.test.ts and the other e2e suites, whichever path serves it.
 */
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, postJson, request } from '../helpers/h2.ts';
import { baseConfig, DEV_CLIENT, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';

const MiB = 1024 * 1024;
let agent: StartedAgent;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  agent = await startAgent({ config: baseConfig({ limits: { maxBodyBytes: 4096 } }) });
  session = connect(agent.port, agent.pki);
});
afterAll(async () => {
  session?.close();
  await agent?.stop();
  await stopAll();
});

/**
 * Writes up to `total` bytes of body with back-pressure until the agent closes the stream;
 * resolves with the status and how much the client got to send.
 */
function sendUntilClosed(path: string, total: number): Promise<{ status: number; sent: number }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json' });
    const chunk = Buffer.alloc(MiB, 0x20);
    let sent = 0;
    let status = 0;
    let closed = false;
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', () => {});
    stream.on('error', reject);
    stream.on('close', () => {
      closed = true;
      resolve({ status, sent });
    });
    const pump = () => {
      while (!closed && sent < total) {
        sent += chunk.length;
        if (!stream.write(chunk)) return void stream.once('drain', pump);
      }
      if (!closed) stream.end();
    };
    pump();
  });
}

describe('a dispatch answered before its body ended', () => {
  // The 413 goes once 16 MiB past the limit were read and dropped; a refusal before the body
  // is read (unknown routine) goes at once. Either way the stream is reset right after, as
  // the adapter does for hono's routes, so the caller stops sending: nothing reads the rest.
  it.each([
    ['a body far over the limit', '/v1/dispatch/echo', 413],
    ['an unknown routine', '/v1/dispatch/missing', 404],
  ])('%s: the stream is reset after the answer, so the caller stops sending', { timeout: 30_000 }, async (_name, path, status) => {
    const r = await sendUntilClosed(path, 64 * MiB);
    expect(r.status).toBe(status);
    expect(r.sent).toBeLessThan(32 * MiB);
    expect((await postJson(session, 'echo', { args: ['after'] })).json).toEqual({ result: 'after' });
  });
});

describe('a dispatch of an unusual shape goes through hono to the same route', () => {
  it.each([
    ['a query string', '/v1/dispatch/echo?trace=1', 200, { result: 'x' }],
    ['a percent-encoded name', '/v1/dispatch/ech%6F', 200, { result: 'x' }],
    ['a percent-encoded slash', '/v1/dispatch/a%2Fb', 404, { code: 'SKEIN_ERR_UNKNOWN_ROUTINE', message: expect.stringContaining('"a/b"') }],
    ['a trailing slash', '/v1/dispatch/echo/', 404, { code: 'SKEIN_ERR_NOT_FOUND', message: 'no endpoint POST /v1/dispatch/echo/' }],
    ['a dot segment', '/v1/dispatch/..', 404, { code: 'SKEIN_ERR_NOT_FOUND', message: 'no endpoint POST /v1/' }],
  ])('%s: %s → %i', async (_name, path, status, body) => {
    const r = await request(session, { ':method': 'POST', ':path': path, 'content-type': 'application/json', 'x-request-id': 'shape-1' }, JSON.stringify({ args: ['x'] }));
    expect(r.status).toBe(status);
    expect(r.headers['x-request-id']).toBe('shape-1');
    expect(JSON.parse(r.body.toString())).toMatchObject(body);
    if (status !== 200) expect(JSON.parse(r.body.toString())).toMatchObject({ requestId: 'shape-1', meta: { peer: DEV_CLIENT } });
  });

  it('expect: 100-continue is served; any other expectation is refused with 417 before any route', async () => {
    const ok = await postJson(session, 'echo', { args: ['go'] }, { expect: '100-continue' });
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ result: 'go' });
    const refused = await postJson(session, 'echo', { args: ['go'] }, { expect: 'something-else' });
    expect(refused.status).toBe(417);
    expect(refused.body.length).toBe(0);
  });

  it('a host the adapter cannot accept gets its 400 before any route', async () => {
    // "127.1" parses as the URL host 127.0.0.1: @hono/node-server refuses a host that does not
    // survive parsing unchanged.
    const r = await postJson(session, 'echo', { args: ['x'] }, { ':authority': '127.1' });
    expect(r.status).toBe(400);
    expect(r.body.length).toBe(0);
  });

  it('CONNECT is refused with 405, as node:http2 does for a request listener', async () => {
    const stream = session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' });
    const status = await new Promise<number>((resolve, reject) => {
      stream.on('response', (h) => resolve(Number(h[':status'])));
      stream.on('error', reject);
    });
    stream.close();
    expect(status).toBe(405);
  });
});
