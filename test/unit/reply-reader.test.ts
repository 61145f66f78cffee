import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CONTAINER_COST, decodeBudget, ReplyReader, type Refusal, type ReplyLine } from '../../agent/workers/reply-reader.ts';

const MiB = 1024 * 1024;

/** Feeds `chunks` and returns the lines (as text, with depth) and any refusal. */
function read(chunks: Buffer[], maxBytes = MiB): { lines: Array<{ text: string; depth: number }>; refused?: Refusal } {
  const reader = new ReplyReader(maxBytes);
  const lines: Array<{ text: string; depth: number }> = [];
  for (const c of chunks) {
    const refused = reader.push(c, (r: ReplyLine) => {
      lines.push({ text: r.line.toString('utf8'), depth: r.depth });
      return true;
    });
    if (refused) return { lines, refused };
  }
  return { lines };
}

/** Independent depth of a decoded JSON value (1 for a flat array or object). */
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

describe('ReplyReader', () => {
  it('measures nesting outside strings, however the line is split into chunks', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.array(fc.nat(), { maxLength: 8 }), (value, cuts) => {
        const line = JSON.stringify({ id: 1, ok: value });
        const { lines, refused } = read(splitAt(Buffer.from(`${line}\n`), cuts));
        expect(refused).toBeUndefined();
        expect(lines).toEqual([{ text: line, depth: 1 + depthOf(value) }]);
      }),
      { numRuns: 300 },
    );
  });

  it('ignores brackets, commas and colons inside strings, escaped quotes and backslashes included', () => {
    const line = JSON.stringify({ id: 1, ok: ['[[[{{{', 'a\\"b:[,', '\\', '"]]]'] });
    expect(read([Buffer.from(`${line}\n`)]).lines).toEqual([{ text: line, depth: 2 }]);
  });

  it('reads several lines from one chunk and a line from many', () => {
    const { lines } = read([Buffer.from('{"id":1,"ok":1}\n{"id":2,'), Buffer.from('"ok":[2]}\n{"id"'), Buffer.from(':3}\n')]);
    expect(lines.map((l) => l.text)).toEqual(['{"id":1,"ok":1}', '{"id":2,"ok":[2]}', '{"id":3}']);
  });

  it('refuses a line over the byte limit, complete or not', () => {
    expect(read([Buffer.from(`"${'x'.repeat(2000)}"\n`)], 1024).refused).toEqual({ limit: 'bytes', what: 'reply of 2002 bytes' });
    expect(read([Buffer.alloc(600, 0x78), Buffer.alloc(600, 0x78)], 1024).refused).toEqual({ limit: 'bytes', what: 'partial reply over 1024 bytes' });
  });

  it('refuses 5 million empty lists (15 MB, under a 16 MiB limit) for their decode cost, after ~3 MB', () => {
    const chunk = Buffer.from('[],'.repeat(65536 / 3));
    const reader = new ReplyReader(16 * MiB);
    expect(reader.budget).toBe(128 * MiB);
    reader.push(Buffer.from('{"id":1,"ok":['), () => true);
    let fed = 0;
    let refused: Refusal | undefined;
    while (!refused && fed < 15e6) {
      refused = reader.push(chunk, () => true);
      fed += chunk.length;
    }
    expect(refused?.limit).toBe('decode');
    expect(fed).toBeLessThan(4 * MiB);
  });

  it('keeps the budget at 8 × the byte limit, never under 64 MiB', () => {
    expect(decodeBudget(16 * MiB)).toBe(128 * MiB);
    expect(decodeBudget(MiB)).toBe(64 * MiB);
    // A 100,000-level nest in 200 KB fits the floor: it is reported as too deep, not refused.
    expect(100_000 * CONTAINER_COST).toBeLessThan(decodeBudget(MiB));
  });
});
