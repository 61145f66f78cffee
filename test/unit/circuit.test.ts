import { describe, expect, it } from 'vitest';
import { CircuitBreaker, type Admission, type Trial } from '../../agent/workers/circuit.ts';

function breaker() {
  let now = 1_000_000;
  const cb = new CircuitBreaker({ failures: 3, windowMs: 10_000, cooldownMs: 5_000, now: () => now });
  return { cb, advance: (ms: number) => (now += ms) };
}

const open = (cb: CircuitBreaker, routine = 'r') => {
  for (let i = 0; i < 3; i++) cb.settle(routine, 'kill');
};
const trialOf = (a: Admission): Trial => {
  expect(a.kind).toBe('run');
  const trial = (a as { trial?: Trial }).trial;
  expect(trial).toBeDefined();
  return trial!;
};
/** Whether `p` has settled once pending microtasks ran. */
const settled = async (p: Promise<void>) => {
  let done = false;
  void p.then(() => (done = true));
  await Promise.resolve();
  await Promise.resolve();
  return done;
};

describe('circuit breaker', () => {
  it('opens after N kills within the window, only for that routine', () => {
    const { cb } = breaker();
    expect(cb.settle('bad', 'kill')).toBe(false);
    expect(cb.settle('bad', 'kill')).toBe(false);
    expect(cb.admit('bad', 1_000)).toEqual({ kind: 'run' });
    expect(cb.settle('bad', 'kill')).toBe(true);
    expect(cb.admit('bad', 1_000)).toEqual({ kind: 'refuse', retryAfterMs: 5_000 });
    expect(cb.admit('good', 1_000)).toEqual({ kind: 'run' });
  });

  it('kills spread beyond the window do not open it', () => {
    const { cb, advance } = breaker();
    cb.settle('r', 'kill');
    advance(6_000);
    cb.settle('r', 'kill');
    advance(6_000);
    expect(cb.settle('r', 'kill')).toBe(false);
    expect(cb.admit('r', 1_000)).toEqual({ kind: 'run' });
  });

  it('open: refused with the cool-down time left', () => {
    const { cb, advance } = breaker();
    open(cb);
    advance(3_000);
    expect(cb.admit('r', 1_000)).toEqual({ kind: 'refuse', retryAfterMs: 2_000 });
  });

  it('half-open: one trial; calls arriving meanwhile wait, and its success lets them all run', async () => {
    const { cb, advance } = breaker();
    open(cb);
    advance(5_000);
    const trial = trialOf(cb.admit('r', 2_000));
    advance(500);
    const waiting = cb.admit('r', 1_000);
    expect(waiting).toMatchObject({ kind: 'wait', retryAfterMs: 1_500 }); // the trial's deadline is 1.5 s away
    const ended = (waiting as { trialEnded: Promise<void> }).trialEnded;
    expect(await settled(ended)).toBe(false);
    cb.settle('r', 'ran', trial);
    expect(await settled(ended)).toBe(true);
    expect(cb.admit('r', 1_000)).toEqual({ kind: 'run' });
    expect(cb.admit('r', 1_000)).toEqual({ kind: 'run' });
  });

  it('half-open: the trial killing its worker reopens the circuit; the waiters are then refused', async () => {
    const { cb, advance } = breaker();
    open(cb);
    advance(5_000);
    const trial = trialOf(cb.admit('r', 2_000));
    const waiting = cb.admit('r', 1_000) as { kind: 'wait'; trialEnded: Promise<void> };
    expect(cb.settle('r', 'kill', trial)).toBe(true);
    expect(await settled(waiting.trialEnded)).toBe(true);
    expect(cb.admit('r', 1_000)).toEqual({ kind: 'refuse', retryAfterMs: 5_000 });
  });

  it('a trial whose call never ran (cancelled, expired in the queue) hands the trial to the next caller', async () => {
    const { cb, advance } = breaker();
    open(cb);
    advance(5_000);
    const first = trialOf(cb.admit('r', 2_000));
    const waiting = cb.admit('r', 1_000) as { kind: 'wait'; trialEnded: Promise<void> };
    cb.settle('r', 'not-run', first);
    expect(await settled(waiting.trialEnded)).toBe(true);
    const second = trialOf(cb.admit('r', 2_000));
    expect(second).not.toBe(first);
    // A late report about the first trial changes nothing.
    cb.settle('r', 'ran', first);
    expect(cb.admit('r', 1_000).kind).toBe('wait');
  });

  it('a trial not reported by its deadline is given up: the next caller becomes the trial', async () => {
    const { cb, advance } = breaker();
    open(cb);
    advance(5_000);
    const lost = trialOf(cb.admit('r', 2_000));
    const waiting = cb.admit('r', 1_000) as { kind: 'wait'; trialEnded: Promise<void> };
    advance(2_001);
    const next = trialOf(cb.admit('r', 2_000));
    expect(next).not.toBe(lost);
    expect(await settled(waiting.trialEnded)).toBe(true);
  });

  it('a half-open circuit nobody calls for a further cool-down closes', () => {
    const { cb, advance } = breaker();
    open(cb);
    advance(5_000 + 4_999);
    expect(trialOf(cb.admit('r', 1))).toBeDefined(); // still half-open: this call is a trial
    const { cb: cb2, advance: advance2 } = breaker();
    open(cb2);
    advance2(10_000);
    expect(cb2.admit('r', 1_000)).toEqual({ kind: 'run' }); // closed: no trial, nobody waits
    expect(cb2.admit('r', 1_000)).toEqual({ kind: 'run' });
    // Kills are counted anew.
    expect(cb2.settle('r', 'kill')).toBe(false);
  });

  it('successes of ordinary calls do not close an open circuit', () => {
    const { cb } = breaker();
    open(cb);
    expect(cb.settle('r', 'ran')).toBe(false);
    expect(cb.admit('r', 1_000).kind).toBe('refuse');
  });
});
