import fc from 'fast-check';
import { encode as cborEncode } from 'cbor-x';
import { describe, expect, it } from 'vitest';
import { CONTAINER_COST, decodeBudget } from '../../agent/workers/decode-cost.ts';
import { FrameReader, type Frame, type Refusal } from '../../agent/workers/frame-reader.ts';
import { ENC, encodeFrame, HEADER_BYTES, KIND } from '../../agent/workers/frames.ts';

const MiB = 1024 * 1024;

/** Feeds `chunks` and returns the frames and any refusal. */
function read(chunks: Buffer[], maxBytes = MiB): { frames: Frame[]; refused?: Refusal } {
  const reader = new FrameReader(maxBytes);
  const frames: Frame[] = [];
  for (const c of chunks) {
    const refused = reader.push(c, (f) => {
      frames.push(f);
      return true;
    });
    if (refused) return { frames, refused };
  }
  return { frames };
}

/** Independent depth of a decoded value (1 for a flat array or object). */
function depthOf(v: unknown): number {
  if (typeof v !== 'object' || v === null) return 0;
  const children = Array.isArray(v) ? v : Object.values(v);
  return 1 + Math.max(0, ...children.map(depthOf));
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, buf.length]) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  return out;
}

/** A header by hand: length, kind, encoding, id. */
function header(length: number, kind: number, enc: number, id = 1): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  b.writeUInt32BE(length, 0);
  b[4] = kind;
  b[5] = enc;
  b.writeUInt32BE(id, 6);
  return b;
}

describe('FrameReader', () => {
  it('reads frames however the stream is split, and measures JSON nesting outside strings', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.array(fc.nat(), { maxLength: 8 }), (value, cuts) => {
        const text = JSON.stringify(value);
        const stream = Buffer.concat([encodeFrame(KIND.ITEM, ENC.JSON, 7, text), encodeFrame(KIND.DONE, ENC.NONE, 7)]);
        const { frames, refused } = read(splitAt(stream, cuts));
        expect(refused).toBeUndefined();
        expect(frames.map((f) => ({ kind: f.kind, id: f.id, text: f.payload.toString(), depth: f.depth }))).toEqual([
          { kind: KIND.ITEM, id: 7, text, depth: depthOf(value) },
          { kind: KIND.DONE, id: 7, text: '', depth: 0 },
        ]);
      }),
      { numRuns: 300 },
    );
  });

  it('measures CBOR nesting like JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const { frames, refused } = read([encodeFrame(KIND.RESULT, ENC.CBOR, 1, cborEncode(value))]);
        expect(refused).toBeUndefined();
        expect(frames[0]!.depth).toBe(depthOf(value));
      }),
      { numRuns: 200 },
    );
  });

  it('ignores brackets, commas and colons inside strings, escaped quotes and backslashes included', () => {
    const text = JSON.stringify(['[[[{{{', 'a\\"b:[,', '\\', '"]]]']);
    expect(read([encodeFrame(KIND.RESULT, ENC.JSON, 1, text)]).frames.map((f) => f.depth)).toEqual([1]);
  });

  it('refuses a frame whose announced length is over the limit from its header alone, before its payload arrives', () => {
    // 0x78787878: what 2.5 MiB of "x" would announce; nothing after the header is needed.
    expect(read([Buffer.from('xxxxRj\0\0\0\x01')], MiB).refused).toEqual({ limit: 'bytes', what: `frame of ${0x78787878} bytes announced (limit ${MiB})` });
    expect(read([header(1025, KIND.RESULT, ENC.JSON)], 1024).refused).toEqual({ limit: 'bytes', what: 'frame of 1025 bytes announced (limit 1024)' });
    expect(read([header(1024, KIND.RESULT, ENC.JSON)], 1024).refused).toBeUndefined();
  });

  it('refuses a header split across chunks as soon as it is complete', () => {
    const h = header(0xffffffff, KIND.ITEM, ENC.CBOR);
    const reader = new FrameReader(1024);
    expect(reader.push(h.subarray(0, 3), () => true)).toBeUndefined();
    expect(reader.push(h.subarray(3), () => true)).toEqual({ limit: 'bytes', what: 'frame of 4294967295 bytes announced (limit 1024)' });
  });

  it.each([
    ['an unknown kind', header(2, 0x5a, ENC.JSON), 'frame of unknown kind "Z"'],
    ['a kind only the agent sends', header(0, KIND.STOP, ENC.NONE), 'frame of unknown kind "S"'],
    ['a JSON line of protocol v1', Buffer.from('{"id":1,"ok":"forged"}\n'), 'frame of unknown kind 0x22'],
    ['an unknown encoding', header(2, KIND.RESULT, 0x78), 'frame of kind "R" with encoding "x"'],
    ['CBOR where only JSON is allowed', header(2, KIND.ERROR, ENC.CBOR), 'frame of kind "E" with encoding "c"'],
    ['a payload on a frame that has none', header(3, KIND.DONE, ENC.NONE), 'frame of kind "D" with a 3-byte payload'],
    ['a non-printable kind', header(0, 0x00, ENC.NONE), 'frame of unknown kind 0x00'],
  ])('refuses %s as malformed', (_name, bytes, what) => {
    expect(read([bytes]).refused).toEqual({ limit: 'protocol', what });
  });

  it.each([
    ['a tag (a date)', Buffer.from([0xc1, 0x1a, 0, 0, 0, 1]), 'CBOR payload: a tag at byte 0'],
    ['tag 64 (a typed array)', Buffer.from([0xd8, 0x40, 0x41, 1]), 'CBOR payload: a tag at byte 0'],
    ['undefined', Buffer.from([0xf7]), 'CBOR payload: simple value 23 at byte 0'],
    ['an indefinite-length array', Buffer.from([0x9f, 0x01, 0xff]), 'CBOR payload: additional information 31 (indefinite length or reserved) at byte 0'],
    ['an integer map key', Buffer.from([0xa1, 0x01, 0x02]), 'CBOR payload: a map key of major type 0 at byte 1; keys are text'],
    ['invalid UTF-8 in a text string', Buffer.from([0x62, 0xc3, 0x28]), 'CBOR payload: invalid UTF-8 in a text string at byte 1'],
    ['a string past the end', Buffer.from([0x5a, 0, 1, 0, 0, 1, 2]), 'CBOR payload: a string runs past the end'],
    ['an array count past the end (no allocation for it)', Buffer.from([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 'CBOR payload: a container holds more items than bytes remain'],
    ['a truncated item', Buffer.from([0x82, 0x19, 0x01]), 'CBOR payload: truncated'],
    ['trailing bytes', Buffer.from([0x01, 0x02]), 'CBOR payload: 1 bytes after the value'],
  ])('refuses a CBOR payload with %s', (_name, payload, what) => {
    expect(read([encodeFrame(KIND.RESULT, ENC.CBOR, 1, payload)]).refused).toEqual({ limit: 'protocol', what });
  });

  it('reads several frames from one chunk, one frame from many, and stops when told', () => {
    const stream = Buffer.concat([encodeFrame(KIND.ITEM, ENC.JSON, 1, '1'), encodeFrame(KIND.ITEM, ENC.JSON, 1, '[2]'), encodeFrame(KIND.DONE, ENC.NONE, 1)]);
    expect(read([stream]).frames.map((f) => f.payload.toString())).toEqual(['1', '[2]', '']);
    expect(read([...stream].map((b) => Buffer.from([b]))).frames.map((f) => f.kind)).toEqual([KIND.ITEM, KIND.ITEM, KIND.DONE]);
    const reader = new FrameReader(MiB);
    let n = 0;
    reader.push(stream, () => ++n < 2);
    expect(n).toBe(2);
  });

  it('refuses 5 million empty lists (15 MB, under a 16 MiB limit) for their decode cost, after ~3 MB', () => {
    const chunk = Buffer.from('[],'.repeat(65536 / 3));
    const reader = new FrameReader(16 * MiB);
    expect(reader.budget).toBe(128 * MiB);
    reader.push(Buffer.concat([header(15e6, KIND.RESULT, ENC.JSON), Buffer.from('[')]), () => true);
    let fed = 0;
    let refused: Refusal | undefined;
    while (!refused && fed < 15e6) {
      refused = reader.push(chunk, () => true);
      fed += chunk.length;
    }
    expect(refused?.limit).toBe('decode');
    expect(fed).toBeLessThan(4 * MiB);
  });

  it('refuses a CBOR payload of 15 million empty arrays (one byte each) for its decode cost, before decoding', () => {
    const n = 15_000_000;
    const payload = Buffer.alloc(5 + n, 0x80);
    payload[0] = 0x9a; // array of n items, 4-byte count
    payload.writeUInt32BE(n, 1);
    expect(read([encodeFrame(KIND.RESULT, ENC.CBOR, 1, payload)], 16 * MiB).refused).toEqual({ limit: 'decode', what: `CBOR payload would cost over ${128 * MiB} bytes to decode` });
  });

  it('keeps the budget at 8 × the byte limit, never under 64 MiB', () => {
    expect(decodeBudget(16 * MiB)).toBe(128 * MiB);
    expect(decodeBudget(MiB)).toBe(64 * MiB);
    // A 100,000-level nest in 200 KB fits the floor: it is reported as too deep, not refused.
    expect(100_000 * CONTAINER_COST).toBeLessThan(decodeBudget(MiB));
  });
});
