import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../../agent/workers/circuit.ts';

function breaker() {
  let now = 1_000_000;
  const cb = new CircuitBreaker({ failures: 3, windowMs: 10_000, cooldownMs: 5_000, now: () => now });
  return { cb, advance: (ms: number) => (now += ms) };
}

describe('circuit breaker', () => {
  it('opens after N kills within the window, only for that routine', () => {
    const { cb } = breaker();
    expect(cb.recordKill('bad')).toBe(false);
    expect(cb.recordKill('bad')).toBe(false);
    expect(cb.blockedFor('bad')).toBe(0);
    expect(cb.recordKill('bad')).toBe(true);
    expect(cb.blockedFor('bad')).toBe(5_000);
    expect(cb.blockedFor('good')).toBe(0);
  });

  it('kills spread beyond the window do not open it', () => {
    const { cb, advance } = breaker();
    cb.recordKill('r');
    advance(6_000);
    cb.recordKill('r');
    advance(6_000);
    expect(cb.recordKill('r')).toBe(false);
    expect(cb.blockedFor('r')).toBe(0);
  });

  it('after the cool-down one trial call runs; success closes, a kill reopens', () => {
    const { cb, advance } = breaker();
    for (let i = 0; i < 3; i++) cb.recordKill('r');
    advance(5_001);
    expect(cb.blockedFor('r')).toBe(0); // the trial
    expect(cb.blockedFor('r')).toBe(5_000); // others wait while the trial runs
    expect(cb.recordKill('r')).toBe(true);
    expect(cb.blockedFor('r')).toBe(5_000);
    advance(5_001);
    expect(cb.blockedFor('r')).toBe(0);
    cb.recordSuccess('r');
    expect(cb.blockedFor('r')).toBe(0);
    expect(cb.blockedFor('r')).toBe(0);
  });
});
