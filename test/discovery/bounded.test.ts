/**
 * LruMap (agent/discovery/bounded.ts): bounded, forgetting first what nobody used (second
 * chance), in insertion order otherwise — what the verifier's rate buckets and caches and the
 * identity-check queue rely on.
 */
import { describe, expect, it } from 'vitest';
import { LruMap } from '../../agent/discovery/bounded.ts';

const keys = <K>(m: LruMap<K, number>) => [...m.entries()].map(([k]) => k);

describe('LruMap', () => {
  it('never holds more than its size; an unused map forgets its oldest entry first', () => {
    const m = new LruMap<string, number>(3);
    for (const [i, k] of ['a', 'b', 'c', 'd', 'e'].entries()) m.set(k, i);
    expect(m.size).toBe(3);
    expect(keys(m)).toEqual(['c', 'd', 'e']);
  });

  it('an entry looked up since the last eviction pass survives it; the oldest unused one goes', () => {
    const m = new LruMap<string, number>(3);
    m.set('a', 1);
    m.set('b', 2);
    m.set('c', 3);
    expect(m.get('a')).toBe(1);
    m.set('d', 4);
    expect(keys(m)).toEqual(['c', 'a', 'd']); // b went; a had its second chance (moved back, unmarked)
    m.set('e', 5);
    expect(keys(m)).toEqual(['a', 'd', 'e']);
    m.set('f', 6); // a was not used again: it goes now
    expect(keys(m)).toEqual(['d', 'e', 'f']);
  });

  it('a source in steady use outlives a flood of one-off keys many times the size', () => {
    const m = new LruMap<string, number>(8);
    m.set('legit', 0);
    for (let i = 0; i < 1000; i++) {
      m.set(`spoofed-${i}`, i);
      if (i % 4 === 0) expect(m.get('legit')).toBe(0); // its adverts keep coming
    }
    expect(m.peek('legit')).toBe(0);
    expect(m.size).toBe(8);
  });

  it('peek does not mark; set on a present key updates it in place and marks it', () => {
    const m = new LruMap<string, number>(2);
    m.set('a', 1);
    m.set('b', 2);
    expect(m.peek('a')).toBe(1);
    m.set('c', 3);
    expect(keys(m)).toEqual(['b', 'c']);
    m.set('b', 20);
    expect(keys(m)).toEqual(['b', 'c']); // updated where it was
    m.set('d', 4);
    expect(keys(m)).toEqual(['b', 'd']);
    expect(m.get('b')).toBe(20);
  });

  it('every entry marked: one pass unmarks them all and evicts the first, in a bounded number of steps', () => {
    const m = new LruMap<number, number>(1000);
    for (let i = 0; i < 1000; i++) m.set(i, i);
    for (let i = 0; i < 1000; i++) m.get(i);
    m.set(1000, 1000);
    expect(m.size).toBe(1000);
    expect(m.peek(0)).toBeUndefined();
    expect(keys(m).slice(0, 2)).toEqual([1, 2]);
  });

  it('delete and clear', () => {
    const m = new LruMap<string, number>(2);
    m.set('a', 1);
    expect(m.delete('a')).toBe(true);
    expect(m.delete('a')).toBe(false);
    m.set('b', 2);
    m.clear();
    expect(m.size).toBe(0);
    expect(() => new LruMap(0)).toThrow(RangeError);
  });
});
