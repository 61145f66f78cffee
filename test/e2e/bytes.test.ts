/**
 * Protocol v2 through the compiled binary, over the sync route POST /v1/dispatch/:routine
 * (real HTTP/2 + mTLS, real sandboxed workers): bytes both ways (CBOR byte strings are
 * Python bytes; bytes results are CBOR byte strings, or {"$bytes": base64} for JSON), and a
 * generator called without a stream (its collected list, bounded by limits.maxResultBytes).
 */
import { join } from 'node:path';
import { decode, Encoder } from 'cbor-x';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, postJson, request } from '../helpers/h2.ts';
import { baseConfig, EXAMPLES, FIXTURES, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';

const STREAMS = join(FIXTURES, 'streams.py');
const MiB = 1024 * 1024;
// Untagged byte strings (cbor-x tags a bare Uint8Array as a typed array unless told not to).
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });

let agent: StartedAgent;
beforeAll(async () => {
  agent = await startAgent({
    config: baseConfig({
      workers: { poolSize: 1, isolation: 'shared', maxCallsPerWorker: 0 },
      limits: { maxBodyBytes: 2 * MiB, maxResultBytes: 2 * MiB },
      routines: {
        reverse_bytes: { file: EXAMPLES },
        countdown: { file: EXAMPLES },
        ...Object.fromEntries(['byte_info', 'make_bytes', 'make_bytearray', 'mixed_keys', 'dup_keys_bytes', 'chunks', 'pid'].map((r) => [r, { file: STREAMS }])),
      },
    }),
  });
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

async function postCbor(routine: string, body: unknown): Promise<{ status: number; value: any }> {
  const session = connect(agent.port, agent.pki);
  try {
    const r = await request(session, { ':method': 'POST', ':path': `/v1/dispatch/${routine}`, 'content-type': 'application/cbor' }, Buffer.from(cbor.encode(body)));
    expect(r.headers['content-type']).toBe('application/cbor');
    return { status: r.status, value: decode(r.body) };
  } finally {
    session.close();
  }
}

async function postJsonOnce(routine: string, body: unknown) {
  const session = connect(agent.port, agent.pki);
  try {
    return await postJson(session, routine, body);
  } finally {
    session.close();
  }
}

describe('bytes', () => {
  it('1 MiB each way with CBOR: a byte string reaches Python as bytes and bytes come back as a byte string', async () => {
    const data = Buffer.alloc(MiB);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
    const { status, value } = await postCbor('reverse_bytes', { args: [data] });
    expect(status).toBe(200);
    expect(Buffer.isBuffer(value.result)).toBe(true); // cbor-x: a byte string (major type 2)
    expect(Buffer.compare(value.result, Buffer.from(data).reverse())).toBe(0);
  });

  it('Python receives bytes (not a list, not a str), also inside lists and dicts', async () => {
    const { value } = await postCbor('byte_info', { args: [[Buffer.from([1, 2, 3]), { k: Buffer.alloc(0) }, 'text']] });
    expect(value.result).toEqual([{ type: 'bytes', len: 3 }, { k: { type: 'bytes', len: 0 } }, 'str']);
  });

  it('bytes and bytearray results in a JSON response are {"$bytes": "<base64, padded>"}', async () => {
    expect((await postJsonOnce('make_bytes', { args: [5, 255] })).json).toEqual({ result: { $bytes: '//////8=' } });
    expect((await postJsonOnce('make_bytearray', { args: [2] })).json).toEqual({ result: { $bytes: 'AAA=' } });
    // Keys as json writes them (1 → "1"), whether or not the value holds bytes.
    expect((await postJsonOnce('mixed_keys', {})).json).toEqual({ result: { '1': { $bytes: 'YQ==' }, x: [{ $bytes: '' }, { k: { $bytes: 'eg==' } }] } });
    // The same result in CBOR: byte strings.
    const { value } = await postCbor('mixed_keys', {});
    expect(value.result).toEqual({ '1': Buffer.from('a'), x: [Buffer.alloc(0), { k: Buffer.from('z') }] });
  });

  it('a JSON request cannot carry bytes: an object shaped like {"$bytes": …} arrives as a dict', async () => {
    const r = await postJsonOnce('byte_info', { args: [{ $bytes: 'AAE=' }] });
    expect(r.json).toEqual({ result: { $bytes: 'str' } });
  });

  it('keys that collide once converted to text are refused as in JSON (ResultNotSerializable), the worker kept', async () => {
    const before = (await postJsonOnce('pid', {})).json.result;
    const r = await postJsonOnce('dup_keys_bytes', {});
    expect(r.status).toBe(422);
    expect(r.json.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
    expect(r.json.message).toBe('ResultNotSerializable: routine returned a value that is not JSON-serialisable: duplicate key "1": each key may appear once');
    expect((await postJsonOnce('pid', {})).json.result).toBe(before);
  });
});

describe('a generator called without a stream', () => {
  it('returns the collected list', async () => {
    expect((await postJsonOnce('countdown', { args: [5] })).json).toEqual({ result: [5, 4, 3, 2, 1] });
  });

  it('past limits.maxResultBytes: 502 SKEIN_ERR_RESULT_TOO_LARGE, the generator closed, the same worker serves the next call', async () => {
    const before = (await postJsonOnce('pid', {})).json.result;
    // 40 items of 64 KiB: 2.5 MiB against a 2 MiB limit; each item alone is far under it.
    const r = await postJsonOnce('chunks', { args: [40, 64 * 1024] });
    expect(r.status).toBe(502);
    expect(r.json.code).toBe('SKEIN_ERR_RESULT_TOO_LARGE');
    expect(r.json.message).toBe(`the generator's items passed limits.maxResultBytes (${2 * MiB} bytes) before it ended; it was stopped (ask for a stream to read them one at a time)`);
    expect((await postJsonOnce('pid', {})).json.result).toBe(before);
    expect((await postJsonOnce('countdown', { args: [2] })).json).toEqual({ result: [2, 1] });
  });
});
