/**
 * The pool's queue (agent/workers/scheduler.ts): priority order, FIFO per caller, weighted
 * fairness between callers, aging on an injected clock, maxConcurrency skips, O(1) removal.
 */
import { describe, expect, it } from 'vitest';
import type { Priority } from '../../agent/workers/call.ts';
import { Scheduler, type Placement } from '../../agent/workers/scheduler.ts';

/** A scheduler on a clock the test moves by hand. */
function make(opts: { agingMs?: number; maxConcurrency?: Record<string, number> } = {}) {
  const clock = { t: 0 };
  const s = new Scheduler<string>({ agingMs: opts.agingMs ?? 1000, maxConcurrency: opts.maxConcurrency, now: () => clock.t });
  return { s, clock };
}

function popAll(s: Scheduler<string>): string[] {
  const out: string[] = [];
  for (let item = s.pop(); item !== undefined; item = s.pop()) out.push(item);
  return out;
}

const at = (priority: Priority, caller?: string, weight?: number): Placement => ({ routine: 'r', priority, caller, weight });

describe('Scheduler: levels', () => {
  it('serves high, then normal, then low; FIFO within a level for one caller', () => {
    const { s } = make();
    s.push('low1', at('low'));
    s.push('normal1', at('normal'));
    s.push('high1', at('high'));
    s.push('low2', at('low'));
    s.push('high2', at('high'));
    s.push('normal2', at('normal'));
    expect(s.depth()).toEqual({ high: 2, normal: 2, low: 2 });
    expect(s.size).toBe(6);
    expect(popAll(s)).toEqual(['high1', 'high2', 'normal1', 'normal2', 'low1', 'low2']);
    expect(s.size).toBe(0);
    expect(s.depth()).toEqual({ high: 0, normal: 0, low: 0 });
  });

  it('a call without a priority is normal', () => {
    const { s } = make();
    s.push('low', at('low'));
    s.push('default', { routine: 'r' });
    s.push('high', at('high'));
    expect(popAll(s)).toEqual(['high', 'default', 'low']);
  });

  it('an empty queue pops undefined', () => {
    const { s } = make();
    expect(s.pop()).toBeUndefined();
  });

  it('a call queued after others were served still takes its level (no stale turn state)', () => {
    const { s } = make();
    s.push('n1', at('normal', 'a'));
    expect(s.pop()).toBe('n1');
    s.push('l1', at('low', 'a'));
    s.push('h1', at('high', 'b'));
    expect(popAll(s)).toEqual(['h1', 'l1']);
  });
});

describe('Scheduler: fairness between callers within a level', () => {
  it('FIFO within each caller, callers alternate at equal weight', () => {
    const { s } = make();
    for (let i = 0; i < 3; i++) s.push(`a${i}`, at('normal', 'a'));
    for (let i = 0; i < 3; i++) s.push(`b${i}`, at('normal', 'b'));
    expect(popAll(s)).toEqual(['a0', 'b0', 'a1', 'b1', 'a2', 'b2']);
  });

  it('a caller with 1000 calls queued first cannot starve one with 10: each of its calls is served within 2 pops', () => {
    const { s } = make();
    for (let i = 0; i < 1000; i++) s.push(`heavy${i}`, at('normal', 'heavy'));
    for (let i = 0; i < 10; i++) s.push(`light${i}`, at('normal', 'light'));
    const order = popAll(s);
    expect(order).toHaveLength(1010);
    const light = order.flatMap((x, i) => (x.startsWith('light') ? [i] : []));
    expect(light).toHaveLength(10);
    // Light call k is served by pop 2k+2 at the latest, not after the 1000 heavy ones.
    light.forEach((pos, k) => expect(pos).toBeLessThanOrEqual(2 * k + 1));
    // Each caller's own calls stay in order.
    expect(order.filter((x) => x.startsWith('light'))).toEqual(Array.from({ length: 10 }, (_, i) => `light${i}`));
    expect(order.filter((x) => x.startsWith('heavy'))).toEqual(Array.from({ length: 1000 }, (_, i) => `heavy${i}`));
  });

  it('the anonymous lane (caller undefined) is one lane among the others', () => {
    const { s } = make();
    for (let i = 0; i < 3; i++) s.push(`anon${i}`, at('normal'));
    s.push('x0', at('normal', 'x'));
    expect(popAll(s)).toEqual(['anon0', 'x0', 'anon1', 'anon2']);
  });

  it('weights 3:1 give 3:1 service while both lanes are busy', () => {
    const { s } = make();
    for (let i = 0; i < 400; i++) s.push(`a${i}`, at('normal', 'a', 3));
    for (let i = 0; i < 400; i++) s.push(`b${i}`, at('normal', 'b', 1));
    const first = Array.from({ length: 400 }, () => s.pop()!);
    const a = first.filter((x) => x.startsWith('a')).length;
    expect(a).toBe(300);
    expect(first.slice(0, 8)).toEqual(['a0', 'a1', 'a2', 'b0', 'a3', 'a4', 'a5', 'b1']);
  });

  it('three callers of weights 1, 2, 5 share in proportion', () => {
    const { s } = make();
    for (const [caller, weight] of [
      ['x', 1],
      ['y', 2],
      ['z', 5],
    ] as const)
      for (let i = 0; i < 1000; i++) s.push(`${caller}${i}`, at('normal', caller, weight));
    const served = Array.from({ length: 800 }, () => s.pop()![0]);
    const count = (c: string) => served.filter((x) => x === c).length;
    expect([count('x'), count('y'), count('z')]).toEqual([100, 200, 500]);
  });

  it('callers are fair per level: a flood at normal does not delay another caller at normal, nor beat high', () => {
    const { s } = make();
    for (let i = 0; i < 100; i++) s.push(`flood${i}`, at('normal', 'flood'));
    s.push('other', at('normal', 'other'));
    s.push('urgent', at('high', 'flood'));
    expect([s.pop(), s.pop(), s.pop()]).toEqual(['urgent', 'flood0', 'other']);
  });

  it('routines sharing a pool take turns within a level', () => {
    const { s } = make();
    for (let i = 0; i < 5; i++) s.push(`a${i}`, { routine: 'ra', caller: 'c' });
    s.push('b0', { routine: 'rb', caller: 'c' });
    expect(popAll(s)).toEqual(['a0', 'b0', 'a1', 'a2', 'a3', 'a4']);
  });
});

describe('Scheduler: aging', () => {
  it('a low call that waited agingMs competes as normal, and twice that as high', () => {
    const { s, clock } = make({ agingMs: 1000 });
    s.push('old-low', at('low'));
    clock.t = 999;
    s.push('normal1', at('normal'));
    s.push('high1', at('high'));
    // 999 ms: not aged yet.
    expect(s.pop()).toBe('high1');
    clock.t = 1000;
    // Aged to normal: ties with normal1 and is older, so it goes first.
    expect(s.pop()).toBe('old-low');
    expect(s.pop()).toBe('normal1');
  });

  it('two agingMs promote by two levels: a starved low call beats fresh high calls', () => {
    const { s, clock } = make({ agingMs: 1000 });
    s.push('low', at('low'));
    const served: string[] = [];
    // A steady stream of high calls, one queued per 100 ms, always one waiting.
    for (let i = 0; i < 30 && !served.includes('low'); i++) {
      s.push(`high${i}`, at('high', 'h'));
      clock.t += 100;
      served.push(s.pop()!);
    }
    expect(served.indexOf('low')).toBeGreaterThan(0);
    // Served as soon as it had waited 2 × agingMs, not later.
    expect(clock.t).toBe(2000);
  });

  it('aging a low call to normal does not make it beat high calls', () => {
    const { s, clock } = make({ agingMs: 1000 });
    s.push('low', at('low'));
    clock.t = 1500;
    s.push('high', at('high'));
    expect(popAll(s)).toEqual(['high', 'low']);
  });

  it('aging never pushes a call above high (the clock running far ahead is harmless)', () => {
    const { s, clock } = make({ agingMs: 10 });
    s.push('high', at('high'));
    clock.t = 5;
    s.push('low', at('low'));
    clock.t = 1e9;
    expect(popAll(s)).toEqual(['high', 'low']);
  });
});

describe('Scheduler: maxConcurrency', () => {
  it('a routine at its cap is skipped, not dropped; its calls run in order once below it', () => {
    const { s } = make({ maxConcurrency: { capped: 1 } });
    s.push('c1', { routine: 'capped', priority: 'high' });
    s.push('c2', { routine: 'capped', priority: 'high' });
    s.push('o1', { routine: 'other', priority: 'low' });
    s.push('o2', { routine: 'other', priority: 'low' });
    expect(s.pop()).toBe('c1');
    // capped has 1 running: its high call waits, the low calls of another routine are served.
    expect(s.pop()).toBe('o1');
    expect(s.pop()).toBe('o2');
    expect(s.pop()).toBeUndefined();
    expect(s.size).toBe(1);
    expect(s.canStart('capped')).toBe(false);
    expect(s.ended('capped')).toBe(true);
    expect(s.canStart('capped')).toBe(true);
    expect(s.pop()).toBe('c2');
  });

  it('counts calls started directly (started/ended) against the cap, routines without a cap are not counted', () => {
    const { s } = make({ maxConcurrency: { capped: 2 } });
    s.started('capped');
    s.started('capped');
    expect(s.canStart('capped')).toBe(false);
    s.push('c', { routine: 'capped' });
    expect(s.pop()).toBeUndefined();
    s.ended('capped');
    expect(s.pop()).toBe('c');
    expect(s.canStart('capped')).toBe(false);
    for (let i = 0; i < 10; i++) s.started('free');
    expect(s.canStart('free')).toBe(true);
    expect(s.ended('free')).toBe(false);
  });

  it("a capped routine's aged call does not block the level choice for servable calls", () => {
    const { s, clock } = make({ agingMs: 100, maxConcurrency: { capped: 1 } });
    s.started('capped');
    s.push('old-capped', { routine: 'capped', priority: 'low' });
    clock.t = 1000;
    s.push('normal', { routine: 'other', priority: 'normal' });
    s.push('low', { routine: 'other', priority: 'low' });
    expect(popAll(s)).toEqual(['normal', 'low']);
  });
});

describe('Scheduler: removal', () => {
  it('removes a queued call from the middle of its lane; others keep their order', () => {
    const { s } = make();
    for (const x of ['a0', 'a1', 'a2']) s.push(x, at('normal', 'a'));
    s.push('b0', at('normal', 'b'));
    expect(s.remove('a1')).toBe(true);
    expect(s.remove('a1')).toBe(false);
    expect(s.remove('never')).toBe(false);
    expect(s.size).toBe(3);
    expect(popAll(s)).toEqual(['a0', 'b0', 'a2']);
  });

  it("removing a lane's last call removes the lane; removing a level's last call empties it", () => {
    const { s } = make();
    s.push('h', at('high', 'x'));
    s.push('n', at('normal', 'y'));
    s.remove('h');
    expect(s.depth()).toEqual({ high: 0, normal: 1, low: 0 });
    expect(s.pop()).toBe('n');
    s.push('h2', at('high', 'x'));
    expect(s.pop()).toBe('h2');
  });

  it('drain() hands back every waiting call and leaves the queue empty', () => {
    const { s } = make();
    s.push('a', at('high', 'x'));
    s.push('b', at('low', 'y'));
    s.push('c', { routine: 'other' });
    expect(s.drain().sort()).toEqual(['a', 'b', 'c']);
    expect(s.size).toBe(0);
    expect(s.pop()).toBeUndefined();
  });

  it('stays cheap at a million queued calls: removal and pops do not scan the queue', () => {
    const { s } = make();
    const n = 1_000_000;
    for (let i = 0; i < n; i++) s.push(`j${i}`, at('normal', `c${i % 1000}`));
    const t0 = performance.now();
    // Remove 10 000 from the middle and pop 10 000: O(n) each would be 2·10^10 steps.
    for (let i = 0; i < 10_000; i++) s.remove(`j${500_000 + i}`);
    for (let i = 0; i < 10_000; i++) s.pop();
    const ms = performance.now() - t0;
    expect(s.size).toBe(n - 20_000);
    expect(ms).toBeLessThan(2000);
  });
});
