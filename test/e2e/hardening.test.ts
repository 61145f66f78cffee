/**
 * HTTP/2 hardening through the compiled binary (Bun's node:http2, not Node's): rapid reset,
 * stream and header limits, connections per client address, idle and handshake timeouts.
 * Every client is a raw node:http2 (or net) client in the test process on 127.0.0.1.
 */
import http2 from 'node:http2';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, postJson, request } from '../helpers/h2.ts';
import { closedWithin } from '../helpers/h2-raw.ts';
import { baseConfig, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';

const { NGHTTP2_CANCEL } = http2.constants;

let agent: StartedAgent; // rapid reset and header limit
let small: StartedAgent; // concurrent streams, per-address cap, idle and handshake timeouts

beforeAll(async () => {
  [agent, small] = await Promise.all([
    startAgent({
      config: baseConfig({
        http2: { maxHeaderListBytes: 4096, maxResetsPerSecond: 200 },
      }),
    }),
    startAgent({
      config: baseConfig({
        http2: { maxConcurrentStreams: 4, maxConnectionsPerIp: 3, idleTimeoutMs: 1000, handshakeTimeoutMs: 1000 },
      }),
    }),
  ]);
}, 30_000);
afterAll(async () => {
  await Promise.all([agent?.stop(), small?.stop()]);
  await stopAll();
});

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

/** Resolves with how the session ended: 'goaway:<code>', an error code, or 'close'. */
function ended(session: http2.ClientHttp2Session, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('still open'), timeoutMs);
    const done = (how: string) => {
      clearTimeout(timer);
      resolve(how);
    };
    session.once('goaway', (code) => done(`goaway:${code}`));
    session.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    session.once('close', () => done('close'));
  });
}

const opened = (session: http2.ClientHttp2Session) =>
  new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });

describe('rapid reset (CVE-2023-44487)', () => {
  it('closes the flooding session, keeps memory bounded and keeps serving others', async () => {
    const good = connect(agent.port, agent.pki);
    const bad = connect(agent.port, agent.pki);
    bad.on('error', () => {});
    try {
      await Promise.all([opened(good), opened(bad)]);
      expect((await postJson(good, 'echo', { args: ['before'] })).json).toEqual({ result: expect.anything() });
      const rssBefore = rssKb(agent.pid);
      const end = ended(bad, 10_000);

      // The well-behaved client keeps dispatching while the flood runs.
      let stop = false;
      const goodAnswers: unknown[] = [];
      const goodLoop = (async () => {
        for (let i = 0; i < 200 && !stop; i++) {
          const r = await postJson(good, 'add', { args: [i, 1] });
          expect(r.status).toBe(200);
          goodAnswers.push(r.json);
        }
      })();

      // Batches of 100 requests, each cancelled once its HEADERS frame has been written (a
      // stream cancelled before that never reaches the wire: nghttp2 drops its HEADERS).
      let sent = 0;
      while (sent < 5000 && !bad.closed && !bad.destroyed) {
        const batch: http2.ClientHttp2Stream[] = [];
        try {
          for (let k = 0; k < 100; k++, sent++) {
            // A dispatch whose body never ends: the stream is in flight when it is reset. (echo,
            // because a call reset while its body is read may still be queued to a worker.)
            const s = bad.request({ ':method': 'POST', ':path': '/v1/dispatch/echo', 'content-type': 'application/json' });
            s.on('error', () => {});
            batch.push(s);
          }
        } catch {
          break; // the session went away under us
        }
        await new Promise((r) => setImmediate(r));
        await new Promise((r) => setImmediate(r));
        for (const s of batch) s.close(NGHTTP2_CANCEL);
        await new Promise((r) => setImmediate(r));
      }
      const how = await end;

      stop = true;
      await goodLoop;

      // GOAWAY(ENHANCE_YOUR_CALM) long before the 5,000th stream.
      expect(how).toBe(`goaway:${http2.constants.NGHTTP2_ENHANCE_YOUR_CALM}`);
      expect(sent).toBeLessThan(5000);
      expect(agent.logs.some((l) => l.msg === 'session closed: flood' && l.reason === 'http2.maxResetsPerSecond')).toBe(true);
      expect(rssKb(agent.pid) - rssBefore).toBeLessThan(100 * 1024);
      expect(goodAnswers.length).toBeGreaterThan(0);
      // After the flood, the good session still gets correct answers.
      const after = await postJson(good, 'add', { args: [40, 2] });
      expect(after.status).toBe(200);
      expect(after.json.result).toBe(42);
    } finally {
      bad.destroy();
      good.close();
    }
  }, 20_000);
});

describe('reset calls never queue work', () => {
  it('sleep calls reset before their body ended are not run, and others stay fast', async () => {
    const bad = connect(agent.port, agent.pki);
    bad.on('error', () => {});
    const good = connect(agent.port, agent.pki);
    try {
      await opened(bad);
      // Fewer than the rapid-reset limit per second: this is about the queue, not the flood guard.
      for (let round = 0; round < 6; round++) {
        const batch: http2.ClientHttp2Stream[] = [];
        for (let k = 0; k < 25; k++) {
          const s = bad.request({ ':method': 'POST', ':path': '/v1/dispatch/sleep', 'content-type': 'application/json' });
          s.on('error', () => {});
          s.write('{"args": [2]}'); // the body is never ended: the call is reset mid-body
          batch.push(s);
        }
        await new Promise((r) => setImmediate(r));
        for (const s of batch) s.close(NGHTTP2_CANCEL);
        await new Promise((r) => setTimeout(r, 200));
      }
      const started = Date.now();
      const r = await postJson(good, 'add', { args: [1, 1] });
      expect(r.json.result).toBe(2);
      expect(Date.now() - started).toBeLessThan(2500);
      const health = JSON.parse((await request(good, { ':method': 'GET', ':path': '/healthz' })).body.toString());
      expect(health.queued).toBe(0);
    } finally {
      bad.destroy();
      good.close();
    }
  }, 20_000);
});

describe('stream and header limits', () => {
  it('refuses streams beyond maxConcurrentStreams while the earlier ones complete', async () => {
    const s = connect(small.port, small.pki);
    try {
      // Fire 8 sleeping calls before the server's SETTINGS arrive: the client cannot hold
      // them back, so the agent itself must refuse what is beyond its limit of 4.
      const calls = Array.from({ length: 8 }, () =>
        postJson(s, 'sleep', { args: [0.3] }).then(
          (r) => ({ ok: r.status }),
          (e: NodeJS.ErrnoException) => ({ err: e.code, msg: e.message }),
        ),
      );
      await opened(s);
      const results = await Promise.all(calls);
      const ok = results.filter((r) => 'ok' in r && r.ok === 200);
      const refused = results.filter((r) => 'err' in r && /REFUSED_STREAM/.test(String(r.msg)));
      expect(ok.length).toBeGreaterThanOrEqual(4);
      expect(refused.length).toBeGreaterThan(0);
      expect(ok.length + refused.length).toBe(8);
      // The session survives.
      expect((await postJson(s, 'add', { args: [1, 2] })).json.result).toBe(3);
    } finally {
      s.close();
    }
  });

  it('resets a request whose header list is too large, and the session keeps serving', async () => {
    const s = connect(agent.port, agent.pki);
    s.on('error', () => {});
    try {
      await opened(s);
      const err = await request(s, { ':method': 'POST', ':path': '/v1/dispatch/echo', 'content-type': 'application/json', 'x-big': 'a'.repeat(8000) }, '{}').then(
        (r) => r.status,
        (e: Error) => e.message,
      );
      // Bun answers with RST_STREAM(ENHANCE_YOUR_CALM) rather than 431.
      expect(String(err)).toMatch(/ENHANCE_YOUR_CALM|431/);
      expect((await postJson(s, 'add', { args: [2, 2] })).json.result).toBe(4);
    } finally {
      s.close();
    }
  });
});

describe('connections', () => {
  it('refuses connections beyond maxConnectionsPerIp; existing ones keep working', async () => {
    const keep = Array.from({ length: 3 }, () => connect(small.port, small.pki));
    try {
      await Promise.all(keep.map(opened));
      const extra = connect(small.port, small.pki);
      extra.on('error', () => {});
      const how = await Promise.race([
        opened(extra).then(
          () => 'connected',
          (e: NodeJS.ErrnoException) => e.code ?? e.message,
        ),
        ended(extra, 5000),
      ]);
      extra.destroy();
      expect(how).not.toBe('connected');
      await small.waitForLog((l) => l.msg === 'connection refused' && l.reason === 'http2.maxConnectionsPerIp', 5000);
      for (const s of keep) expect((await postJson(s, 'add', { args: [1, 1] })).json.result).toBe(2);
    } finally {
      for (const s of keep) s.destroy();
    }
    // Once they are gone, a new connection is accepted again.
    await new Promise((r) => setTimeout(r, 200));
    const again = connect(small.port, small.pki);
    try {
      await opened(again);
      expect((await postJson(again, 'add', { args: [3, 4] })).json.result).toBe(7);
    } finally {
      again.close();
    }
  });

  it('closes an idle session after idleTimeoutMs', async () => {
    const s = connect(small.port, small.pki);
    s.on('error', () => {});
    await opened(s);
    expect((await postJson(s, 'echo', { args: [1] })).status).toBe(200);
    const t0 = Date.now();
    const how = await ended(s, 6000);
    const took = Date.now() - t0;
    s.destroy();
    expect(how).not.toBe('still open');
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5000);
  });

  it('destroys a TCP connection that never starts the TLS handshake', async () => {
    const t0 = Date.now();
    const sock = net.connect(small.port, '127.0.0.1');
    sock.on('error', () => {});
    const closed = await closedWithin(sock, 6000);
    sock.destroy();
    expect(closed).toBe(true);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5000);
  });
});
