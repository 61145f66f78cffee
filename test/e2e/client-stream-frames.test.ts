/**
 * The streaming client against a scripted HTTP/2 server (h2c on loopback) that sends what an
 * agent would not: frames too large, a body cut before its last frame, an unknown frame, and a
 * generator that never ends. Through the TypeScript client (items, back-pressure, reset on
 * break) and through the compiled binary (`skein dispatch --stream`: lines and exit codes).
 * The same shapes against a real agent are in client-calls.test.ts.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Encoder } from 'cbor-x';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SkeinClient } from '../../agent/client/index.ts';
import { failure, runCli, stopAll } from '../helpers/agent.ts';

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });

interface Script {
  /** Writes the answer; `accept` is what the client asked for. */
  (stream: http2.ServerHttp2Stream, accept: string): void;
}

let server: http2.Http2Server | undefined;
let resets: number[] = [];

async function serve(script: Script): Promise<string> {
  resets = [];
  server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.on('close', () => resets.push(stream.rstCode));
    stream.on('error', () => {});
    // Read the request body fully before answering, as the agent does.
    stream.resume();
    stream.on('end', () => script(stream, String(headers.accept ?? '')));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterEach(async () => {
  const s = server;
  server = undefined;
  if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
});
afterAll(stopAll);

const frame = (accept: string, value: unknown) => (accept === 'application/x-ndjson' ? Buffer.from(`${JSON.stringify(value)}\n`) : Buffer.from(cbor.encode(value)));

function answer(stream: http2.ServerHttp2Stream, accept: string): void {
  stream.respond({ ':status': 200, 'content-type': accept, 'x-request-id': 'scripted-1' });
}

const clientFor = (peer: string, maxFrameBytes?: number) => new SkeinClient({ peer, plaintext: true, ...(maxFrameBytes ? { maxFrameBytes } : {}) });

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) out.push(v);
  return out;
}

describe('client.stream against a scripted server', () => {
  it.each(['cbor', 'json'] as const)('%s: items (split across chunks, several per chunk), then done', async (encoding) => {
    const peer = await serve((stream, accept) => {
      answer(stream, accept);
      const body = Buffer.concat([{ item: 1 }, { item: 'two' }, { item: { three: [3] } }, { item: null }, { done: true, items: 4 }].map((f) => frame(accept, f)));
      // One byte at a time for the first half, then the rest at once.
      const half = body.length >> 1;
      for (let i = 0; i < half; i++) stream.write(body.subarray(i, i + 1));
      stream.end(body.subarray(half));
    });
    const client = clientFor(peer);
    try {
      const s = client.stream('gen', { encoding });
      expect(await collect(s)).toEqual([1, 'two', { three: [3] }, null]);
      expect(s.requestId).toBe('scripted-1');
    } finally {
      await client.destroy();
    }
  });

  it('an error frame throws its SkeinError after the items before it', async () => {
    const peer = await serve((stream, accept) => {
      answer(stream, accept);
      stream.end(Buffer.concat([frame(accept, { item: 1 }), frame(accept, { error: { code: 'SKEIN_ERR_ROUTINE_RAISED', message: 'ValueError: no', requestId: 'r-1' } })]));
    });
    const client = clientFor(peer);
    const seen: unknown[] = [];
    const err = await failure(
      (async () => {
        for await (const v of client.stream('gen')) seen.push(v);
      })(),
    );
    await client.destroy();
    expect(seen).toEqual([1]);
    expect(err).toMatchObject({ code: 'SKEIN_ERR_ROUTINE_RAISED', message: 'ValueError: no', details: { requestId: 'r-1' } });
  });

  it.each([
    ['a body that ends without done or error', (s: http2.ServerHttp2Stream, a: string) => s.end(frame(a, { item: 1 })), /ended without a done or error frame after 1 items: it was cut/],
    [
      'a body cut inside a frame',
      (s: http2.ServerHttp2Stream, a: string) => s.end(frame(a, { item: 'x'.repeat(100) }).subarray(0, 50)),
      /ended without a done or error frame after 0 items \(50 bytes of an unfinished frame\)/,
    ],
    [
      'a done frame that miscounts',
      (s: http2.ServerHttp2Stream, a: string) => s.end(Buffer.concat([frame(a, { item: 1 }), frame(a, { done: true, items: 2 })])),
      /the done frame counts 2 items, 1 arrived/,
    ],
    ['an unknown frame', (s: http2.ServerHttp2Stream, a: string) => s.end(frame(a, { result: 1 })), /unexpected stream frame with keys \["result"\]/],
    ['an error frame with an unknown code', (s: http2.ServerHttp2Stream, a: string) => s.end(frame(a, { error: { code: 'NOPE', message: 'x' } })), /an error frame without a known code/],
  ])('%s is SKEIN_ERR_BAD_RESPONSE', async (_name, write, message) => {
    const peer = await serve((stream, accept) => {
      answer(stream, accept);
      write(stream, accept);
    });
    const client = clientFor(peer);
    const err = await failure(collect(client.stream('gen')));
    await client.destroy();
    expect(err.code).toBe('SKEIN_ERR_BAD_RESPONSE');
    expect(err.message).toMatch(message);
  });

  it.each(['cbor', 'json'] as const)('%s: a frame over maxFrameBytes is refused before it is whole, and the stream is reset', async (encoding) => {
    const peer = await serve((stream, accept) => {
      answer(stream, accept);
      stream.write(frame(accept, { item: 'small' }));
      // An item that never ends: 1 KiB writes for as long as the client reads.
      const big = frame(accept, { item: 'y'.repeat(1 << 20) });
      stream.write(big.subarray(0, big.length - 10));
    });
    const client = clientFor(peer, 64 * 1024);
    const seen: unknown[] = [];
    const err = await failure(
      (async () => {
        for await (const v of client.stream('gen', { encoding })) seen.push(v);
      })(),
    );
    await client.destroy();
    expect(seen).toEqual(['small']);
    expect(err).toMatchObject({ code: 'SKEIN_ERR_BAD_RESPONSE', details: { limit: 65536 } });
    expect(err.message).toMatch(/a stream frame is larger than 65536 bytes/);
    await until(() => resets.length > 0);
    expect(resets).toEqual([http2.constants.NGHTTP2_CANCEL]);
  });

  it('a slow consumer pauses the stream: the server cannot write ahead unboundedly; break resets it', async () => {
    let written = 0;
    let blocked = false;
    const peer = await serve((stream, accept) => {
      answer(stream, accept);
      const item = frame(accept, { item: 'z'.repeat(1000) });
      // A generator that never ends, writing while HTTP/2 flow control lets it.
      const pump = () => {
        while (!stream.closed && !stream.destroyed) {
          written += item.length;
          if (!stream.write(item)) {
            blocked = true;
            return void stream.once('drain', pump);
          }
        }
      };
      pump();
    });
    const client = clientFor(peer);
    try {
      const s = client.stream<string>('gen');
      const first = await s.next();
      expect(first.value).toHaveLength(1000);
      // The consumer stops pulling: what the server could write stays bounded (the client's
      // 16 held items, node's stream buffer, and the HTTP/2 windows), nowhere near what an
      // unpaused reader would have taken by now.
      await new Promise((r) => setTimeout(r, 500));
      expect(blocked).toBe(true);
      const stalled = written;
      expect(stalled).toBeLessThan(1024 * 1024);
      await new Promise((r) => setTimeout(r, 300));
      expect(written).toBe(stalled);
      // Pulling again lets it go on.
      for (let i = 0; i < 200; i++) await s.next();
      expect(written).toBeGreaterThan(stalled);
      // Leaving the loop resets the stream (RST_STREAM CANCEL), so the generator stops.
      await s.return();
      await until(() => resets.length > 0);
      expect(resets).toEqual([http2.constants.NGHTTP2_CANCEL]);
    } finally {
      await client.destroy();
    }
  });

  it('an abort signal rejects the pending next() with SKEIN_ERR_ABORTED and resets the stream', async () => {
    const peer = await serve((stream, accept) => {
      answer(stream, accept);
      stream.write(frame(accept, { item: 1 }));
    });
    const client = clientFor(peer);
    const ac = new AbortController();
    const s = client.stream('gen', { signal: ac.signal });
    expect(await s.next()).toEqual({ value: 1, done: false });
    const pending = s.next();
    ac.abort();
    expect(await failure(pending)).toMatchObject({ code: 'SKEIN_ERR_ABORTED' });
    expect(await s.next()).toEqual({ value: undefined, done: true });
    await until(() => resets.length > 0);
    expect(resets).toEqual([http2.constants.NGHTTP2_CANCEL]);
    await client.destroy();
  });

  it('an ordinary error answer before the first frame throws its code; a non-stream answer is a bad response', async () => {
    let n = 0;
    const peer = await serve((stream, accept) => {
      if (n++ === 0) {
        stream.respond({ ':status': 404, 'content-type': 'application/json' });
        return void stream.end(JSON.stringify({ code: 'SKEIN_ERR_UNKNOWN_ROUTINE', message: 'no routine named "gen"', meta: { routine: 'gen' } }));
      }
      void accept;
      stream.respond({ ':status': 200, 'content-type': 'application/cbor' });
      stream.end(cbor.encode({ result: [1, 2] }));
    });
    const client = clientFor(peer);
    expect(await failure(collect(client.stream('gen')))).toMatchObject({ code: 'SKEIN_ERR_UNKNOWN_ROUTINE', details: { status: 404, routine: 'gen' } });
    const err = await failure(collect(client.stream('gen')));
    expect(err.code).toBe('SKEIN_ERR_BAD_RESPONSE');
    expect(err.message).toMatch(/asked for a stream \(application\/cbor-seq\), the agent answered application\/cbor/);
    await client.destroy();
  });
});

describe('skein dispatch --stream against a scripted server (the compiled binary)', () => {
  it('prints one JSON line per item; a cut stream exits 6 naming SKEIN_ERR_BAD_RESPONSE', async () => {
    const peer = await serve((stream, accept) => {
      answer(stream, accept);
      stream.end(Buffer.concat([frame(accept, { item: { n: 1 } }), frame(accept, { item: 'two' })]));
    });
    const r = await runCli(['dispatch', 'gen', '--stream', '--plaintext', '--peer', peer]);
    expect(r.stdout).toBe('{"n":1}\n"two"\n');
    expect(r.stderr).toMatch(/error \[SKEIN_ERR_BAD_RESPONSE\]: .*ended without a done or error frame after 2 items/);
    expect(r.code).toBe(6);
  });
});

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !cond(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > end) throw new Error('condition not met in time');
  }
}
