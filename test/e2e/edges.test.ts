/**
 * Edge cases from the outside audit, through the compiled binary over HTTP/2 + mTLS with real
 * Python workers: JSON values that would change without a word, an over-maximum deadline
 * header, an oversize header field, oversize discovery datagrams and the half-open circuit.
 * Each refusal is asserted by status, code and message, and the agent keeps serving.
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, postJson, request } from '../helpers/h2.ts';
import { dispatchHeaders, FLAG, FRAME, frame, hpack, rawConnect, type RawSession } from '../helpers/h2-raw.ts';
import { baseConfig, FIXTURES, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

const EDGES = join(FIXTURES, 'edges.py');

let agent: StartedAgent;

beforeAll(async () => {
  agent = await startAgent({
    config: baseConfig({
      limits: { maxTimeoutMs: 60_000 },
      routines: Object.fromEntries(['big_int', 'negative_zero', 'lone_surrogate', 'colliding_keys', 'exact'].map((r) => [r, { file: EDGES }])),
    }),
  });
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

const post = (session: ReturnType<typeof connect>, routine: string, body: string | Buffer, headers: Record<string, string> = {}) =>
  request(session, { ':method': 'POST', ':path': `/v1/dispatch/${routine}`, 'content-type': 'application/json', ...headers }, body).then((r) => ({ ...r, json: JSON.parse(r.body.toString()) }));

describe('JSON bodies are refused, never changed', () => {
  it.each([
    ['{"args":[1e400]}', 'body.args[0]: number 1e400 is out of range (beyond ±1.8e308)'],
    ['{"args":[1e-400]}', 'body.args[0]: number 1e-400 is out of range (underflows to 0)'],
    ['{"args":[9007199254740993]}', 'body.args[0]: integer 9007199254740993 cannot be represented exactly (it would arrive as 9007199254740992); send it as a string'],
    ['{"args":[1152921504606846976]}', 'body.args[0]: integer 1152921504606846976 cannot be represented exactly (it would arrive as 1152921504606847000); send it as a string'],
    ['{"args":[-0.0]}', 'body.args[0]: negative zero cannot be passed on exactly (JSON writes it as 0); send 0'],
    ['{"args":["\\ud800"]}', 'body.args[0]: lone surrogate \\ud800 in a string: strings must be valid Unicode'],
    ['{"args":[1],"kwargs":{"x":1,"x":2}}', 'body.kwargs: duplicate key "x": each key may appear once'],
  ])('%s → 400 naming the value', async (body, message) => {
    const session = connect(agent.port, agent.pki);
    try {
      const r = await post(session, 'echo', body);
      expect(r.status).toBe(400);
      expect(r.json.code).toBe('SKEIN_ERR_BAD_REQUEST');
      expect(r.json.message).toBe(message);
      // The same connection goes on serving.
      expect((await postJson(session, 'echo', { args: ['still here'] })).json).toEqual({ result: 'still here' });
    } finally {
      session.close();
    }
  });

  it('invalid UTF-8 → 400 with the offset of the first bad byte', async () => {
    const session = connect(agent.port, agent.pki);
    try {
      const r = await post(session, 'echo', Buffer.concat([Buffer.from('{"args":["ok'), Buffer.from([0xc3, 0x28]), Buffer.from('"]}')]));
      expect(r.status).toBe(400);
      expect(r.json.code).toBe('SKEIN_ERR_BAD_REQUEST');
      expect(r.json.message).toBe('body: invalid UTF-8 at byte 12');
    } finally {
      session.close();
    }
  });

  it('values a double holds exactly reach Python and come back digit for digit', async () => {
    const session = connect(agent.port, agent.pki);
    try {
      const text = '{"args":[9007199254740991,-9007199254740991,9007199254740994,100000000000000000000,1e300,0.1,5e-324,"\\ud83d\\ude00","é"]}';
      const r = await post(session, 'echo', text);
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('{"result":[9007199254740991,-9007199254740991,9007199254740994,100000000000000000000,1e+300,0.1,5e-324,"😀","é"]}');
    } finally {
      session.close();
    }
  });
});

describe('routine results are refused, never changed', () => {
  it.each([
    ['big_int', 'ResultNotSerializable: result[1]: integer 18446744073709551616 cannot be represented exactly (it would arrive as 18446744073709552000); send it as a string'],
    ['negative_zero', 'ResultNotSerializable: result.x: negative zero cannot be passed on exactly (JSON writes it as 0); send 0'],
    ['lone_surrogate', 'ResultNotSerializable: result: lone surrogate \\ud800 in a string: strings must be valid Unicode'],
    ['colliding_keys', 'ResultNotSerializable: result: duplicate key "1": each key may appear once'],
  ])('%s → 422 ResultNotSerializable; the worker lives on', async (routine, message) => {
    const session = connect(agent.port, agent.pki);
    try {
      const r = await postJson(session, routine, {});
      expect(r.status).toBe(422);
      expect(r.json.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
      expect(r.json.message).toBe(message);
      expect(r.json.meta.exception.type).toBe('ResultNotSerializable');
      expect((await postJson(session, 'exact', {})).json).toEqual({ result: [2 ** 53 - 1, 1e300, 0.1, '😀', -1.5] });
    } finally {
      session.close();
    }
  });
});

describe('x-skein-timeout-ms', () => {
  it('over limits.maxTimeoutMs → 400 naming the header and the maximum; at the maximum it runs', async () => {
    const session = connect(agent.port, agent.pki);
    try {
      const over = await postJson(session, 'echo', { args: [1] }, { 'x-skein-timeout-ms': '60001' });
      expect(over.status).toBe(400);
      expect(over.json.code).toBe('SKEIN_ERR_BAD_REQUEST');
      expect(over.json.message).toBe('x-skein-timeout-ms 60001 exceeds the maximum of 60000 ms (limits.maxTimeoutMs)');
      expect(over.json.meta).toMatchObject({ header: 'x-skein-timeout-ms', limit: 60_000 });
      const at = await postJson(session, 'echo', { args: [1] }, { 'x-skein-timeout-ms': '60000' });
      expect(at.status).toBe(200);
    } finally {
      session.close();
    }
  });
});

describe('half-open circuit', () => {
  it('calls that arrive during the trial wait for it and run when it succeeds; other routines are served meanwhile', async () => {
    const a = await startAgent({
      config: baseConfig({
        workers: { poolSize: 2, circuit: { failures: 2, windowMs: 60_000, cooldownMs: 1_500 } },
        routines: { flaky: { file: EDGES } },
      }),
    });
    const session = connect(a.port, a.pki);
    try {
      for (let i = 0; i < 2; i++) {
        const r = await postJson(session, 'flaky', { args: [true] });
        expect(r.json.code).toBe('SKEIN_ERR_WORKER_CRASHED');
      }
      const refused = await postJson(session, 'flaky', { args: [false] });
      expect(refused.status).toBe(503);
      expect(refused.json.code).toBe('SKEIN_ERR_CIRCUIT_OPEN');
      expect(refused.json.message).toMatch(/^routine "flaky" kept killing its workers; it is refused for [12] s more \(workers\.circuit\)$/);
      expect(['1', '2']).toContain(refused.headers['retry-after']);
      await new Promise((r) => setTimeout(r, 1_600));

      // The routine is fixed now: the first call is the trial and takes a second.
      const started = Date.now();
      const trial = postJson(session, 'flaky', { args: [false, 1] });
      await new Promise((r) => setTimeout(r, 300));
      const waiters = [0, 1, 2].map(() => postJson(session, 'flaky', { args: [false] }).then((r) => ({ ...r, at: Date.now() - started })));
      expect((await postJson(session, 'echo', { args: ['meanwhile'] })).json).toEqual({ result: 'meanwhile' });
      expect((await trial).json).toEqual({ result: 'ok' });
      for (const w of await Promise.all(waiters)) {
        expect(w.status).toBe(200);
        expect(w.json).toEqual({ result: 'ok' });
        expect(w.at).toBeGreaterThanOrEqual(950); // they waited for the trial rather than being refused
      }
      // Closed for everyone.
      expect((await postJson(session, 'flaky', { args: [false] })).status).toBe(200);
    } finally {
      session.close();
      await a.stop();
    }
  });

  it('a waiter whose deadline passes during the trial gets 504; a trial that kills its worker refuses the waiters', async () => {
    const a = await startAgent({
      config: baseConfig({
        workers: { poolSize: 2, circuit: { failures: 1, windowMs: 60_000, cooldownMs: 1_000 } },
        routines: { flaky: { file: EDGES } },
      }),
    });
    const session = connect(a.port, a.pki);
    try {
      expect((await postJson(session, 'flaky', { args: [true] })).json.code).toBe('SKEIN_ERR_WORKER_CRASHED');
      await new Promise((r) => setTimeout(r, 1_100));
      const trial = postJson(session, 'flaky', { args: [false, 1] });
      await new Promise((r) => setTimeout(r, 200));
      const impatient = await postJson(session, 'flaky', { args: [false] }, { 'x-skein-timeout-ms': '200' });
      expect(impatient.status).toBe(504);
      expect(impatient.json.code).toBe('SKEIN_ERR_DEADLINE_EXCEEDED');
      expect(impatient.json.message).toBe('the call waited 200 ms for the trial call of routine "flaky" (its circuit is half-open) and never started');
      expect((await trial).status).toBe(200);

      // Open it again; this time the trial crashes, and the call waiting for it is refused.
      expect((await postJson(session, 'flaky', { args: [true] })).json.code).toBe('SKEIN_ERR_WORKER_CRASHED');
      await new Promise((r) => setTimeout(r, 1_100));
      const crashingTrial = postJson(session, 'flaky', { args: [true, 0.5] });
      await new Promise((r) => setTimeout(r, 150));
      const waiter = postJson(session, 'flaky', { args: [false] });
      expect((await crashingTrial).json.code).toBe('SKEIN_ERR_WORKER_CRASHED');
      const refused = await waiter;
      expect(refused.status).toBe(503);
      expect(refused.json.code).toBe('SKEIN_ERR_CIRCUIT_OPEN');
      expect(refused.headers['retry-after']).toBe('1');
      expect((await postJson(session, 'echo', { args: [1] })).json).toEqual({ result: 1 });
    } finally {
      session.close();
      await a.stop();
    }
  });
});

describe('discovery: oversize datagrams', () => {
  it('are counted as skein_adverts_total{result="oversize"} without being read; the agent keeps serving', async () => {
    const keys = tempDir();
    expect((await runCli(['keygen', '--out', join(keys, 'edge.key')])).code).toBe(0);
    const group = `239.255.77.78:${40000 + Math.floor(Math.random() * 19000)}`;
    const a = await startAgent({
      config: baseConfig({
        discovery: {
          enabled: true,
          fleet: 'edge-fleet',
          signingKey: join(keys, 'edge.key'),
          trustedKeys: [readFileSync(join(keys, 'edge.key.pub'), 'utf8').trim()],
          groups: [group],
          intervalMs: 300,
          ttlMs: 1500,
        },
      }),
    });
    const scrape = async () => {
      const admin = String((await a.waitForLog((l) => l.msg === 'admin listening')).address);
      const text = await (await fetch(`http://${admin}/metrics`)).text();
      return Number(/^skein_adverts_total\{result="oversize"\} (\d+)$/m.exec(text)?.[1] ?? 'NaN');
    };
    try {
      expect(await scrape()).toBe(0);
      const socket = createSocket('udp4');
      await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
      socket.setMulticastInterface('127.0.0.1');
      const [address, port] = group.split(':');
      // Just over the limit, and far over it (junk: nothing in it may be decoded).
      for (const size of [1201, 9000]) await new Promise<void>((r) => socket.send(Buffer.alloc(size, 0xa5), Number(port), address!, () => r()));
      socket.close();
      const line = await a.waitForLog((l) => l.msg === 'advertisement rejected' && l.reason === 'oversize', 3000);
      expect(line.source).toBe('127.0.0.1');
      let counted = 0;
      for (let i = 0; i < 20 && counted < 2; i++) {
        counted = await scrape();
        if (counted < 2) await new Promise((r) => setTimeout(r, 100));
      }
      expect(counted).toBe(2);
      const session = connect(a.port, a.pki);
      try {
        const peers = await request(session, { ':method': 'GET', ':path': '/v1/peers' });
        expect(JSON.parse(peers.body.toString()).rejected.oversize).toBe(2);
        expect((await postJson(session, 'echo', { args: ['served'] })).json).toEqual({ result: 'served' });
      } finally {
        session.close();
      }
    } finally {
      await a.stop();
    }
  });
});

describe('one oversize header field', () => {
  const COMPRESSION_ERROR = 9;
  const ENHANCE_YOUR_CALM = 11;
  /** A header block as HEADERS + CONTINUATION frames of at most 16 KiB (the default frame size). */
  const headerFrames = (stream: number, block: Buffer): Buffer => {
    const parts: Buffer[] = [];
    for (let off = 0; off === 0 || off < block.length; off += 16_384) {
      const last = off + 16_384 >= block.length;
      parts.push(frame(off === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, last ? FLAG.END_HEADERS : 0, stream, block.subarray(off, off + 16_384)));
    }
    return Buffer.concat(parts);
  };
  const bigRequest = (size: number) =>
    hpack([
      [':method', 'POST'],
      [':scheme', 'https'],
      [':path', '/v1/dispatch/echo'],
      [':authority', '127.0.0.1'],
      ['content-type', 'application/json'],
      ['x-big', 'a'.repeat(size)],
    ]);
  const send = async (s: RawSession, stream: number, block: Buffer, body: string) => {
    await s.send(headerFrames(stream, block));
    await s.send(frame(FRAME.DATA, FLAG.END_STREAM, stream, Buffer.from(body)));
  };
  const until = async (pred: () => boolean, ms: number) => {
    for (let waited = 0; !pred() && waited < ms; waited += 25) await new Promise((r) => setTimeout(r, 25));
  };

  it('under 64 KiB but over http2.maxHeaderListBytes: only that stream is reset, the connection serves the next request', async () => {
    const s = await rawConnect(agent.port, { creds: agent.pki });
    try {
      await send(s, 1, bigRequest(60_000), '{}');
      await send(s, 3, dispatchHeaders('echo'), '{"args":[1]}');
      await until(() => s.frames.some((f) => f.type === FRAME.DATA && f.stream === 3 && (f.flags & FLAG.END_STREAM) !== 0), 5000);
      const rst = s.frames.find((f) => f.type === FRAME.RST_STREAM && f.stream === 1);
      expect(rst?.payload.readUInt32BE(0)).toBe(ENHANCE_YOUR_CALM);
      expect(s.frames.some((f) => f.type === FRAME.HEADERS && f.stream === 3)).toBe(true);
      expect(s.goawayCode()).toBeUndefined();
      expect(s.closed).toBe(false);
    } finally {
      s.destroy();
    }
  });

  it('over 64 KiB: Bun cannot decode it, so the connection ends with GOAWAY(COMPRESSION_ERROR); no response starts and the agent serves other connections', async () => {
    const s = await rawConnect(agent.port, { creds: agent.pki });
    try {
      await send(s, 1, bigRequest(70_000), '{}');
      expect(await s.waitClosed(5000)).toBe(true);
      const goaways = s.frames.filter((f) => f.type === FRAME.GOAWAY);
      // The first GOAWAY is the refusal, naming the reason; Bun's session teardown may follow
      // it with a second (INTERNAL_ERROR) before the socket closes (docs/operations.md).
      expect(goaways[0]!.payload.readUInt32BE(4)).toBe(COMPRESSION_ERROR);
      expect(goaways[0]!.payload.subarray(8).toString()).toBe('header block too large');
      expect(s.frames.some((f) => f.type === FRAME.HEADERS)).toBe(false);
    } finally {
      s.destroy();
    }
    const session = connect(agent.port, agent.pki);
    try {
      expect((await postJson(session, 'echo', { args: ['next connection'] })).json).toEqual({ result: 'next connection' });
    } finally {
      session.close();
    }
  });
});
