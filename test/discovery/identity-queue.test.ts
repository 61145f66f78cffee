import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { IdentityCheckQueue } from '../../agent/discovery/identity-queue.ts';

describe('IdentityCheckQueue: paced identity checks', () => {
  beforeEach(() => vi.useFakeTimers({ now: 1_800_000_000_000 }));
  afterEach(() => vi.useRealTimers());

  /** A check that finishes when the test says so, recording when it started. */
  function harness(concurrency: number, perSecond: number) {
    const q = new IdentityCheckQueue({ concurrency, perSecond, now: Date.now });
    const started: Array<{ key: string; at: number }> = [];
    const finish = new Map<string, () => void>();
    const add = (key: string) =>
      q.enqueue(key, () => {
        started.push({ key, at: Date.now() });
        return new Promise<void>((r) => finish.set(key, r));
      });
    return { q, started, finish, add };
  }

  it('runs at most `concurrency` at once, the rest in the order peers were met', async () => {
    const { q, started, finish, add } = harness(3, 1000);
    for (let i = 0; i < 10; i++) add(`p${i}`);
    expect(started.map((s) => s.key)).toEqual(['p0', 'p1', 'p2']);
    expect(q.waiting).toBe(7);
    finish.get('p1')!();
    await vi.advanceTimersByTimeAsync(5);
    expect(started.map((s) => s.key)).toEqual(['p0', 'p1', 'p2', 'p3']);
    expect(q.running).toBe(3);
  });

  it('starts at most `perSecond` per second once the initial burst is spent', async () => {
    const { started, finish, add } = harness(4, 2);
    for (let i = 0; i < 12; i++) add(`p${i}`);
    // Checks finish at once: only the rate holds them back.
    const drain = () => {
      for (const [k, f] of finish) {
        f();
        finish.delete(k);
      }
    };
    for (let t = 0; t < 4000; t += 100) {
      drain();
      await vi.advanceTimersByTimeAsync(100);
    }
    drain();
    // A burst of 4, then 2/s: 4 + 8 over 4 s.
    expect(started.length).toBe(12);
    const t0 = started[0]!.at;
    expect(started.filter((s) => s.at - t0 < 1000).length).toBeLessThanOrEqual(6);
    expect(started.at(-1)!.at - t0).toBeGreaterThanOrEqual(3500);
  });

  it('one place per peer: meeting it again while it waits adds no second check; cancel drops it; a full queue refuses', async () => {
    const q = new IdentityCheckQueue({ concurrency: 1, perSecond: 100, now: Date.now, maxQueued: 2 });
    const runs: string[] = [];
    const hold = () => new Promise<void>(() => {});
    q.enqueue('busy', hold);
    expect(q.enqueue('a', async () => void runs.push('a'))).toBe(true);
    expect(q.enqueue('a', async () => void runs.push('a-again'))).toBe(true);
    expect(q.enqueue('b', async () => void runs.push('b'))).toBe(true);
    expect(q.enqueue('c', async () => void runs.push('c'))).toBe(false);
    q.cancel('a');
    expect(q.waiting).toBe(1);
    q.stop();
    expect(q.waiting).toBe(0);
    expect(q.enqueue('d', async () => void runs.push('d'))).toBe(false);
    expect(runs).toEqual([]);
  });
});
