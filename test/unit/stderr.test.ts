import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../agent/log/index.ts';
import { FLUSH_MS, MAX_RECORD_BYTES, NOTICE_INTERVAL_MS, StderrBudget, StderrRelay } from '../../agent/workers/stderr.ts';

type Rec = Record<string, unknown>;

function setup(limits = { linesPerSecond: 20, bytesPerSecond: 32 * 1024 }, workers = 1) {
  const records: Rec[] = [];
  const drops = { lines: 0, bytes: 0 };
  const clock = { t: 0 };
  const log = createLogger({ write: (l) => records.push(JSON.parse(l) as Rec) });
  const budget = new StderrBudget(limits, workers, { stderrDropped: (l, b) => ((drops.lines += l), (drops.bytes += b)) }, () => clock.t);
  const relay = new StderrRelay(log, budget);
  const lines = () => records.filter((r) => r.msg === 'worker stderr');
  const notices = () => records.filter((r) => r.msg === 'worker stderr dropped: over workers.stderr limits');
  return { relay, budget, records, lines, notices, drops, clock };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('worker stderr relay', () => {
  it('logs a few lines one record each, with the request id, after the batching window', () => {
    const s = setup();
    s.relay.push(Buffer.from('hello\nwor'), 'r1');
    s.relay.push(Buffer.from('ld\n'), 'r1');
    expect(s.lines()).toEqual([]);
    vi.advanceTimersByTime(FLUSH_MS);
    expect(s.lines().map((r) => [r.line, r.requestId, r.lines])).toEqual([
      ['hello', 'r1', undefined],
      ['world', 'r1', undefined],
    ]);
  });

  it('packs a flood into records of at most 4 KiB, each saying how many lines it holds', () => {
    const s = setup();
    s.relay.push(Buffer.from('x'.repeat(99).concat('\n').repeat(100)), 'r1');
    vi.advanceTimersByTime(FLUSH_MS);
    const recs = s.lines();
    expect(recs.length).toBe(3);
    for (const r of recs) expect(Buffer.byteLength(String(r.line))).toBeLessThanOrEqual(MAX_RECORD_BYTES);
    expect(recs.reduce((n, r) => n + Number(r.lines), 0)).toBe(100);
    expect(s.drops).toEqual({ lines: 0, bytes: 0 });
  });

  it('cuts a line at 4 KiB and counts the rest as dropped bytes', () => {
    const s = setup();
    s.relay.push(Buffer.from('L'.repeat(10_000)), undefined);
    s.relay.push(Buffer.from('L'.repeat(10_000) + '\n'), undefined);
    vi.advanceTimersByTime(FLUSH_MS);
    expect(s.lines()).toEqual([expect.objectContaining({ line: 'L'.repeat(MAX_RECORD_BYTES), truncated: true })]);
    expect(s.drops).toEqual({ lines: 0, bytes: 20_000 - MAX_RECORD_BYTES });
  });

  it('keeps to the lines rate with a 10 s burst, counts every dropped line, and notices once per interval', () => {
    const s = setup({ linesPerSecond: 2, bytesPerSecond: 1024 * 1024 });
    for (let i = 0; i < 100; i++) {
      s.relay.push(Buffer.from(`line ${i}\n`), undefined);
      vi.advanceTimersByTime(FLUSH_MS); // one line per batch: one record each
    }
    expect(s.lines()).toHaveLength(20); // the burst: 2/s × 10 s
    expect(s.drops.lines).toBe(80);
    expect(s.notices()).toHaveLength(1);
    expect(s.notices()[0]).toMatchObject({ droppedLines: 1, droppedBytes: 'line 20'.length, linesPerSecond: 2 });
    // 5 s later: 10 more fit, the rest is dropped without a notice (not due yet).
    s.clock.t += NOTICE_INTERVAL_MS / 2;
    for (let i = 0; i < 30; i++) {
      s.relay.push(Buffer.from('again\n'), undefined);
      vi.advanceTimersByTime(FLUSH_MS);
    }
    expect(s.lines()).toHaveLength(30);
    expect(s.drops.lines).toBe(100);
    expect(s.notices()).toHaveLength(1);
    // Once due, the next notice carries everything dropped since the first one.
    s.clock.t += NOTICE_INTERVAL_MS / 2;
    s.relay.end();
    expect(s.notices()).toHaveLength(2);
    expect(s.notices()[1]).toMatchObject({ droppedLines: 99 });
  });

  it('counts a flood without building its lines once nothing fits, and accounts for every line', () => {
    const s = setup({ linesPerSecond: 1, bytesPerSecond: 1024 });
    const chunk = Buffer.from('abc\n'.repeat(10_000));
    for (let i = 0; i < 20; i++) s.relay.push(chunk, undefined);
    s.relay.end();
    const relayed = s.lines().reduce((n, r) => n + (typeof r.lines === 'number' ? r.lines : 1), 0);
    expect(relayed + s.drops.lines).toBe(200_000);
    expect(relayed * 3 + s.drops.bytes).toBe(600_000);
    expect(s.lines().length).toBeLessThanOrEqual(10);
  });

  it("shares the budget between a pool's workers, so a replacement gets no fresh burst", () => {
    const s = setup({ linesPerSecond: 1, bytesPerSecond: 1024 * 1024 }, 2);
    const log = createLogger({ write: () => {} });
    for (let w = 0; w < 5; w++) {
      const relay = new StderrRelay(log, s.budget);
      for (let i = 0; i < 10; i++) {
        relay.push(Buffer.from('x\n'), undefined);
        vi.advanceTimersByTime(FLUSH_MS);
      }
      relay.end();
    }
    expect(s.drops.lines).toBe(50 - 2 * 10);
  });
});
