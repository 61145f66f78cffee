/**
 * Generator routines through the pool API (WorkerPool/PoolSet.call with a CallHandler), with
 * real sandboxed Python workers started in the test process (test/helpers/pool.ts): items in
 * order, credits pausing the generator, a stop running its `finally`, the deadline mid-stream,
 * and the collected list for callers that do not stream. The HTTP streaming route builds on
 * exactly this.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SkeinError } from '../../common/errors/index.ts';
import type { CallControl, CallRequest } from '../../agent/workers/call.ts';
import { STOP_GRACE_MS } from '../../agent/workers/worker.ts';
import { FIXTURES, stopAll } from '../helpers/agent.ts';
import { startPools, type TestPools } from '../helpers/pool.ts';

const STREAMS = join(FIXTURES, 'streams.py');
const ROUTINES = [
  'count',
  'slow_count',
  'busy_between_yields',
  'ignores_exit',
  'chunks',
  'raises_after',
  'async_count',
  'async_sleeps',
  'async_awaits',
  'big_int_item',
  'bytes_items',
  'reverse_bytes',
  'pid',
  'forge_items',
];
const BUFFER = 4;

let t: TestPools;
beforeAll(async () => {
  t = await startPools({
    // One worker: every call lands on the worker the previous one used, unless it was replaced.
    workers: {
      poolSize: 1,
      isolation: 'shared',
      maxCallsPerWorker: 0,
      circuit: { failures: 1000, windowMs: 60_000, cooldownMs: 100 },
      stderr: { linesPerSecond: 10_000, bytesPerSecond: 1024 * 1024 },
    },
    limits: { maxResultBytes: 64 * 1024 },
    calls: { streamBufferItems: BUFFER },
    routines: Object.fromEntries(ROUTINES.map((r) => [r, { file: STREAMS }])),
  });
});
afterAll(async () => {
  await t?.pools.destroy();
  await stopAll();
});

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  items: unknown[];
  done: Promise<{ ok: true; value: unknown } | { ok: false; error: SkeinError }>;
  control: Promise<CallControl>;
  /** Whether onItem answers "keep going" (true) or "my buffer is full" (false). */
  accept: boolean;
}

function run(routine: string, args: unknown[], opts: Partial<CallRequest> = {}): Run {
  let gotControl!: (c: CallControl) => void;
  const r: Run = { items: [], accept: true, control: new Promise((res) => (gotControl = res)), done: undefined as never };
  r.done = new Promise((resolve) =>
    t.pools.call(
      { routine, args, kwargs: {}, timeoutMs: 10_000, stream: true, ...opts },
      {
        onStart: gotControl,
        onItem: (v) => {
          r.items.push(v);
          return r.accept;
        },
        onComplete: (value) => resolve({ ok: true, value }),
        onError: (error) => resolve({ ok: false, error }),
      },
    ),
  );
  return r;
}

/** stderr marks the routines wrote (`STREAM:<tag><text>`) with this tag, in order, without it. */
function marks(tag: string): string[] {
  const prefix = `STREAM:${tag}`;
  // A batch of stderr lines may be packed into one log record, joined by newlines.
  const lines = t.lines.filter((l) => l.msg === 'worker stderr').flatMap((l) => String(l.line).split('\n'));
  return lines.filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
}

async function waitFor<T>(get: () => T | undefined, ms = 3000): Promise<T> {
  for (const until = Date.now() + ms; Date.now() < until; await delay(10)) {
    const v = get();
    if (v !== undefined) return v;
  }
  throw new Error('timed out');
}

async function workerPid(): Promise<number> {
  const r = await t.pools.dispatch({ routine: 'pid', args: [], kwargs: {}, timeoutMs: 5000 });
  if (!r.ok) throw r.error;
  return r.value as number;
}

describe('streaming a generator through the pool', () => {
  it('delivers the items in order, then completes with undefined; the worker serves the next call', async () => {
    const before = await workerPid();
    const r = run('count', [50]);
    expect(await r.done).toEqual({ ok: true, value: undefined });
    expect(r.items).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(await workerPid()).toBe(before);
  });

  it('pauses the generator when the consumer is full: it gets only the credit granted, and resume() lets it finish', async () => {
    const r = run('count', [40, 'credit:']);
    r.accept = false; // the first item fills the consumer
    const control = await r.control;
    await waitFor(() => (r.items.length >= BUFFER ? true : undefined));
    await delay(300);
    // The generator ran to the yield of its last credited item and no further: the worker
    // blocks at the next item without credit.
    expect(r.items).toEqual([0, 1, 2, 3]);
    expect(marks('credit:')).toEqual(['yield 0', 'yield 1', 'yield 2', 'yield 3']);
    r.accept = true;
    control.resume();
    expect(await r.done).toEqual({ ok: true, value: undefined });
    expect(r.items).toHaveLength(40);
  });

  it('a cancelled stream stops the generator at its yield: GeneratorExit runs its finally and the worker lives on', async () => {
    const before = await workerPid();
    const abort = new AbortController();
    const r = run('count', [1000, 'cancel:'], { signal: abort.signal });
    r.accept = false;
    await waitFor(() => (r.items.length >= BUFFER ? true : undefined));
    abort.abort();
    const out = await r.done;
    expect(out.ok).toBe(false);
    expect(!out.ok && out.error.code).toBe('SKEIN_ERR_ABORTED');
    expect(!out.ok && out.error.message).toMatch(/generator was stopped/);
    await waitFor(() => (marks('cancel:').includes('finally') ? true : undefined));
    expect(marks('cancel:')).not.toContain('exhausted');
    expect(await workerPid()).toBe(before);
  });

  it('the deadline mid-stream stops the generator (SKEIN_ERR_DEADLINE_EXCEEDED), its finally runs, the worker lives on', async () => {
    const before = await workerPid();
    const r = run('slow_count', [1000, 0.01, 'deadline:'], { timeoutMs: 400 });
    const out = await r.done;
    expect(!out.ok && out.error.code).toBe('SKEIN_ERR_DEADLINE_EXCEEDED');
    expect(r.items.length).toBeGreaterThan(3);
    await waitFor(() => (marks('deadline:').includes('finally') ? true : undefined));
    expect(await workerPid()).toBe(before);
  });

  it(`a generator busy between yields is killed ${STOP_GRACE_MS} ms after the stop`, async () => {
    const before = await workerPid();
    const abort = new AbortController();
    const r = run('busy_between_yields', [5], { signal: abort.signal });
    await waitFor(() => (r.items.length ? true : undefined));
    await delay(50);
    const t0 = performance.now();
    abort.abort();
    const out = await r.done;
    const took = performance.now() - t0;
    expect(!out.ok && out.error.code).toBe('SKEIN_ERR_ABORTED');
    expect(took).toBeGreaterThanOrEqual(STOP_GRACE_MS - 5);
    expect(took).toBeLessThan(STOP_GRACE_MS + 1000);
    await waitFor(() => (t.lines.some((l) => l.msg === 'generator did not stop in time; killing its worker') ? true : undefined));
    expect(await workerPid()).not.toBe(before);
  });

  it('a generator that ignores GeneratorExit still ends the call with the stop, and its worker is kept', async () => {
    const abort = new AbortController();
    const r = run('ignores_exit', [], { signal: abort.signal });
    r.accept = false;
    await waitFor(() => (r.items.length >= 1 ? true : undefined));
    await delay(100);
    abort.abort();
    const out = await r.done;
    expect(!out.ok && out.error.code).toBe('SKEIN_ERR_ABORTED');
    expect(await t.pools.dispatch({ routine: 'pid', args: [], kwargs: {}, timeoutMs: 5000 })).toMatchObject({ ok: true });
  });

  it('an exception after some items ends the stream with the routine error', async () => {
    const r = run('raises_after', [3]);
    const out = await r.done;
    expect(r.items).toEqual([0, 1, 2]);
    expect(!out.ok && out.error.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
    expect(!out.ok && out.error.message).toBe('ValueError: after 3 items');
  });

  it('an item the caller cannot be given exactly stops the stream with ResultNotSerializable', async () => {
    const r = run('big_int_item', []);
    const out = await r.done;
    expect(r.items).toEqual([1]);
    expect(!out.ok && out.error.message).toBe(
      'ResultNotSerializable: result[1]: integer 1152921504606846977 cannot be represented exactly (it would arrive as 1152921504606847000); send it as a string',
    );
  });

  it('bytes items arrive as Uint8Array', async () => {
    const r = run('bytes_items', [3]);
    expect(await r.done).toEqual({ ok: true, value: undefined });
    expect(r.items.map((b) => Array.from(b as Uint8Array))).toEqual([
      [0, 0, 0],
      [1, 1, 1],
      [2, 2, 2],
    ]);
    expect(r.items.every((b) => b instanceof Uint8Array && b.constructor === Uint8Array)).toBe(true);
  });

  it('a non-generator result with stream: true is one item, then completion', async () => {
    const r = run('reverse_bytes', [new Uint8Array([1, 2, 3])]);
    expect(await r.done).toEqual({ ok: true, value: undefined });
    expect(r.items).toEqual([new Uint8Array([3, 2, 1])]);
  });

  it('async generators that never wait stream; one that awaits a real suspension is refused clearly', async () => {
    const ok = run('async_count', [5]);
    expect(await ok.done).toEqual({ ok: true, value: undefined });
    expect(ok.items).toEqual([0, 1, 2, 3, 4]);
    const awaits = run('async_awaits', []);
    const out = await awaits.done;
    expect(awaits.items).toEqual(['before']);
    expect(!out.ok && out.error.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
    expect(!out.ok && out.error.message).toMatch(/^EventLoopUnavailable: an async generator awaited something that needs an event loop/);
    // asyncio itself cannot be imported in the sandbox (it imports the blocked socket module).
    const asyncio = await run('async_sleeps', []).done;
    expect(!asyncio.ok && asyncio.error.message).toMatch(/socket/);
  });
});

describe('a failing consumer', () => {
  it('an onItem that throws stops the generator (SKEIN_ERR_INTERNAL); the pool and its worker go on', async () => {
    const before = await workerPid();
    const out = await new Promise<{ code: string }>((resolve) =>
      t.pools.call(
        { routine: 'count', args: [100, 'throws:'], kwargs: {}, timeoutMs: 5000, stream: true },
        {
          onItem: () => {
            throw new Error('consumer bug');
          },
          onComplete: () => resolve({ code: 'completed' }),
          onError: (e) => resolve({ code: e.code }),
        },
      ),
    );
    expect(out.code).toBe('SKEIN_ERR_INTERNAL');
    await waitFor(() => (marks('throws:').includes('finally') ? true : undefined));
    expect(await workerPid()).toBe(before);
  });
});

describe('credits are enforced', () => {
  it('a worker sending items beyond the granted credit is a protocol violation: SKEIN_ERR_WORKER_PROTOCOL, the worker killed', async () => {
    const before = await workerPid();
    const r = run('forge_items', [BUFFER + 1]);
    r.accept = false;
    const out = await r.done;
    expect(!out.ok && out.error.code).toBe('SKEIN_ERR_WORKER_PROTOCOL');
    expect(r.items).toHaveLength(BUFFER);
    expect(t.lines.some((l) => l.msg === 'worker protocol violation; killing worker' && l.what === 'an item beyond the granted credit')).toBe(true);
    expect(await workerPid()).not.toBe(before);
  });
});

describe('a generator called without stream', () => {
  it('returns the collected list', async () => {
    expect(await t.pools.dispatch({ routine: 'count', args: [100], kwargs: {}, timeoutMs: 5000 })).toEqual({ ok: true, value: Array.from({ length: 100 }, (_, i) => i) });
  });

  it('past limits.maxResultBytes: SKEIN_ERR_RESULT_TOO_LARGE, the generator is closed and the worker kept', async () => {
    const before = await workerPid();
    // 100 items of 1 KiB: 100 KiB of items against a 64 KiB limit.
    const out = await t.pools.dispatch({ routine: 'chunks', args: [100, 1024], kwargs: {}, timeoutMs: 5000 });
    expect(!out.ok && out.error.code).toBe('SKEIN_ERR_RESULT_TOO_LARGE');
    expect(!out.ok && out.error.message).toBe("the generator's items passed limits.maxResultBytes (65536 bytes) before it ended; it was stopped (ask for a stream to read them one at a time)");
    expect(await workerPid()).toBe(before);
  });
});
