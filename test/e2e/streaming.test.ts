/**
 * Streaming calls through the binary (docs/calls.md#stream): frames as items are produced,
 * end-to-end back-pressure, cancellation and deadlines stopping the generator, errors after
 * the first frame, and curl --no-buffer seeing items as they arrive.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { join } from 'node:path';
import { decodeMultiple, Encoder } from 'cbor-x';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, curlMtls, FIXTURES, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';
import { connect, request } from '../helpers/h2.ts';
import { requires, tool } from '../helpers/requires.ts';

const STREAMS = join(FIXTURES, 'http-streams.py');
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true });
const NDJSON = 'application/x-ndjson';
const routines = Object.fromEntries(['countdown', 'endless', 'raises_after', 'raises_first', 'slow', 'plain'].map((r) => [r, { file: STREAMS }]));

let agent: StartedAgent;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  // One worker per routine: the test after a cancellation is served by the same process.
  agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1, isolation: 'routine' }, routines, calls: { streamBufferItems: 4 } }) });
  session = connect(agent.port, agent.pki);
});
afterAll(async () => {
  session?.close();
  await stopAll();
});

function post(routine: string, args: unknown[], accept: string, extra: http2.OutgoingHttpHeaders = {}) {
  return request(session, { ':method': 'POST', ':path': `/v1/dispatch/${routine}`, 'content-type': 'application/json', accept, ...extra }, JSON.stringify({ args }));
}
const lines = (body: Buffer) =>
  body
    .toString()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

describe('a generator routine with accept: application/x-ndjson', () => {
  it('sends one frame per item, then done with the count', async () => {
    const res = await post('countdown', [3], NDJSON);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe(NDJSON);
    expect(lines(res.body)).toEqual([{ item: 3 }, { item: 2 }, { item: 1 }, { done: true, items: 3 }]);
  });

  it('as an RFC 8742 CBOR sequence with accept: application/cbor-seq', async () => {
    const res = await request(session, { ':method': 'POST', ':path': '/v1/dispatch/countdown', 'content-type': 'application/cbor', accept: 'application/cbor-seq' }, cbor.encode({ args: [2] }));
    expect(res.headers['content-type']).toBe('application/cbor-seq');
    expect(decodeMultiple(res.body)).toEqual([{ item: 2 }, { item: 1 }, { done: true, items: 2 }]);
  });

  it('ends with an error frame when the routine raises after the first item', async () => {
    const frames = lines((await post('raises_after', [2], NDJSON)).body);
    expect(frames.slice(0, 2)).toEqual([{ item: 0 }, { item: 1 }]);
    expect(frames[2].error).toMatchObject({ code: 'SKEIN_ERR_ROUTINE_RAISED', message: 'ValueError: gave up after 2' });
    expect(frames).toHaveLength(3);
  });

  it('answers an ordinary error response when the call fails before the first item', async () => {
    const res = await post('raises_first', [], NDJSON);
    expect(res.status).toBe(422);
    expect(res.headers['content-type']).toBe('application/json');
    expect(JSON.parse(res.body.toString())).toMatchObject({ code: 'SKEIN_ERR_ROUTINE_RAISED', message: "KeyError: 'nothing to stream'" });
  });

  it('streams a plain return value as one item', async () => {
    expect(lines((await post('plain', [7], NDJSON)).body)).toEqual([{ item: { plain: 7 } }, { done: true, items: 1 }]);
  });

  it('without accept, answers the collected list', async () => {
    const res = await post('countdown', [3], 'application/json');
    expect(JSON.parse(res.body.toString())).toEqual({ result: [3, 2, 1] });
  });

  it('ends with a deadline error frame when the deadline passes mid-stream, and the generator is stopped', async () => {
    const res = await post('slow', [50, 0.1], NDJSON, { 'x-skein-timeout-ms': '450' });
    const frames = lines(res.body);
    expect(frames.length).toBeGreaterThanOrEqual(2);
    expect(frames.at(-1).error).toMatchObject({ code: 'SKEIN_ERR_DEADLINE_EXCEEDED' });
    expect(frames.slice(0, -1).every((f: { item?: number }) => typeof f.item === 'number')).toBe(true);
    await agent.waitForLog((l) => String(l.line ?? l.msg).includes('slow finally ran') || JSON.stringify(l).includes('slow finally ran'), 5000);
    // The routine keeps serving.
    expect(lines((await post('slow', [1, 0], NDJSON)).body)).toEqual([{ item: 0 }, { done: true, items: 1 }]);
  });
});

describe('back-pressure and cancellation', () => {
  it('a caller that stops reading pauses the generator, and a reset runs its finally; the worker serves the next call', async () => {
    const spawnsBefore = agent.audit.filter((l) => l.event === 'worker.spawn').length;
    const stream = session.request({ ':method': 'POST', ':path': '/v1/dispatch/endless', 'content-type': 'application/json', accept: NDJSON });
    stream.end(JSON.stringify({ args: [4096, 'paused'] }));
    let received = 0;
    await new Promise<void>((resolve) => {
      stream.on('data', (c: Buffer) => {
        received += c.length;
        if (received > 0) {
          stream.pause(); // stop reading: flow control fills, then the agent's buffer, then credits
          resolve();
        }
      });
    });
    const rssBefore = rssOf(agent.pid);
    await new Promise((r) => setTimeout(r, 1500));
    const produced = progress(agent, 'paused');
    // Infinite generator, 4 KiB items: without back-pressure it would be far past this in 1.5 s.
    expect(produced).toBeLessThan(400);
    await new Promise((r) => setTimeout(r, 500));
    expect(progress(agent, 'paused')).toBe(produced); // and it stays paused
    expect(rssOf(agent.pid) - rssBefore).toBeLessThan(32 * 1024 * 1024);
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await agent.waitForLog((l) => JSON.stringify(l).includes('paused finally ran'), 5000);
    // The same worker takes the next call: read a little of another stream, then reset it.
    const again = session.request({ ':method': 'POST', ':path': '/v1/dispatch/endless', 'content-type': 'application/json', accept: NDJSON });
    again.end(JSON.stringify({ args: [16, 'again'] }));
    await new Promise<void>((resolve) => again.once('data', () => resolve()));
    again.close(http2.constants.NGHTTP2_CANCEL);
    await agent.waitForLog((l) => JSON.stringify(l).includes('again finally ran'), 5000);
    // Stopped cleanly both times: no worker was killed or replaced.
    expect(agent.audit.filter((l) => l.event === 'worker.kill' && l.routine === 'endless')).toEqual([]);
    expect(agent.audit.filter((l) => l.event === 'worker.spawn').length).toBe(spawnsBefore);
  });
});

const withCurl = requires(tool('curl', 'curl'));

describe('curl --no-buffer', () => {
  withCurl.it('shows the first item before the generator has finished', async () => {
    const started = performance.now();
    const curl = spawn('curl', [
      '--http2',
      '--no-buffer',
      '--silent',
      '--show-error',
      ...curlMtls(agent),
      '-H',
      'content-type: application/json',
      '-H',
      `accept: ${NDJSON}`,
      '-d',
      JSON.stringify({ args: [5, 0.3] }),
      `https://127.0.0.1:${agent.port}/v1/dispatch/countdown`,
    ]);
    const seen: Array<{ at: number; line: string }> = [];
    let pending = '';
    curl.stdout.setEncoding('utf8');
    curl.stdout.on('data', (t: string) => {
      pending += t;
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        seen.push({ at: performance.now() - started, line: pending.slice(0, nl) });
        pending = pending.slice(nl + 1);
      }
    });
    const code = await new Promise<number | null>((r) => curl.on('exit', r));
    expect(code).toBe(0);
    expect(seen.map((s) => JSON.parse(s.line))).toEqual([{ item: 5 }, { item: 4 }, { item: 3 }, { item: 2 }, { item: 1 }, { done: true, items: 5 }]);
    // Five items 0.3 s apart: the first is out ~1.2 s before the last.
    expect(seen.at(-1)!.at - seen[0]!.at).toBeGreaterThan(900);
  });
});

function rssOf(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

/** The last "<tag> produced N" the generator reported through its stderr. */
function progress(agent: StartedAgent, tag: string): number {
  let n = 0;
  for (const l of agent.logs) {
    const m = new RegExp(`${tag} produced (\\d+)`).exec(JSON.stringify(l));
    if (m) n = Math.max(n, Number(m[1]));
  }
  return n;
}
