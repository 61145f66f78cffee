/**
 * agent/calls/weights.ts: calls.weights resolved for an identity (the authorization.allow
 * matcher), the caller's fairness key, and the x-skein-priority header.
 */
import { describe, expect, it } from 'vitest';
import { CallerWeights, callerKey, parsePriority } from '../../agent/calls/weights.ts';
import { SkeinError } from '../../common/errors/index.ts';

const id = (peer: string, principals: string[] = []) => ({ peer: { id: peer }, principals });

function thrown(f: () => unknown): SkeinError {
  try {
    f();
  } catch (e) {
    if (e instanceof SkeinError) return e;
    throw e;
  }
  throw new Error('did not throw');
}

describe('CallerWeights', () => {
  const weights = new CallerWeights([
    { identities: ['spiffe://skein.local/client/batch-*'], weight: 5 },
    { identities: ['jwt:alice', 'spiffe://skein.local/ops/**'], weight: 3 },
    { identities: ['spiffe://skein.local/client/*'], weight: 2 },
  ]);

  it('the first rule matching the peer id or a principal gives the weight; no match is 1', () => {
    expect(weights.weightOf(id('spiffe://skein.local/client/batch-7'))).toBe(5);
    expect(weights.weightOf(id('spiffe://skein.local/client/web'))).toBe(2);
    // The batch rule comes first, so it wins over the wider client/* rule listed after it.
    expect(weights.weightOf(id('spiffe://skein.local/client/batch-x', ['jwt:alice']))).toBe(5);
    // A principal matches as the peer id does.
    expect(weights.weightOf(id('spiffe://skein.local/client/web', ['jwt:alice']))).toBe(3);
    expect(weights.weightOf(id('spiffe://skein.local/ops/a/b'))).toBe(3);
    expect(weights.weightOf(id('spiffe://other.domain/client/web'))).toBe(1);
    expect(weights.weightOf(id('anonymous'))).toBe(1);
  });

  it('patterns mean what they mean in authorization.allow: "*" stays within one SPIFFE path segment', () => {
    expect(weights.weightOf(id('spiffe://skein.local/client/web/extra'))).toBe(1);
    expect(new CallerWeights([{ identities: ['**'], weight: 7 }]).weightOf(id('anonymous'))).toBe(7);
  });

  it('no rules: every caller weighs 1', () => {
    expect(new CallerWeights([]).weightOf(id('spiffe://skein.local/client/web', ['jwt:x']))).toBe(1);
  });

  it('a malformed pattern is SKEIN_ERR_CONFIG naming its key', () => {
    const e = thrown(
      () =>
        new CallerWeights([
          { identities: ['jwt:ok'], weight: 2 },
          { identities: ['jwt:a', 'spiffe://td/**/x'], weight: 2 },
        ]),
    );
    expect(e.code).toBe('SKEIN_ERR_CONFIG');
    expect(e.message).toBe('config key "calls.weights[1].identities[1]": "spiffe://td/**/x" "**" is only allowed as the last path segment (spiffe://td/client/**) or alone');
    expect(thrown(() => new CallerWeights([{ identities: [], weight: 2 }])).message).toBe('config key "calls.weights[0].identities": must list at least one pattern');
  });
});

describe('callerKey', () => {
  it('is the peer id plus the sorted, deduplicated principals', () => {
    expect(callerKey(id('spiffe://skein.local/client/ci'))).toBe('["spiffe://skein.local/client/ci"]');
    expect(callerKey(id('cn:box', ['jwt:bob', 'nonce:x', 'jwt:bob']))).toBe('["cn:box","jwt:bob","nonce:x"]');
  });

  it('is stable whatever order the principals were asserted in', () => {
    expect(callerKey(id('p', ['jwt:b', 'jwt:a']))).toBe(callerKey(id('p', ['jwt:a', 'jwt:b'])));
  });

  it('tells apart different token principals on the same certificate, and the same principal on different certificates', () => {
    const keys = [id('spiffe://td/c'), id('spiffe://td/c', ['jwt:alice']), id('spiffe://td/c', ['jwt:bob']), id('spiffe://td/d', ['jwt:alice'])].map(callerKey);
    expect(new Set(keys).size).toBe(4);
  });

  it('cannot be forged by a principal holding separators', () => {
    expect(callerKey(id('a', ['b","c']))).not.toBe(callerKey(id('a', ['b', 'c'])));
    expect(callerKey(id('a b'))).not.toBe(callerKey(id('a', ['b'])));
  });
});

describe('parsePriority', () => {
  it('absent is normal; each level name is itself', () => {
    expect(parsePriority(undefined)).toBe('normal');
    for (const p of ['high', 'normal', 'low']) expect(parsePriority(p)).toBe(p);
  });

  it('anything else is SKEIN_ERR_BAD_REQUEST naming the header and the allowed levels', () => {
    for (const bad of ['', 'urgent', 'HIGH', ' high', '1']) {
      const e = thrown(() => parsePriority(bad));
      expect(e.code).toBe('SKEIN_ERR_BAD_REQUEST');
      expect(e.message).toBe(`x-skein-priority must be one of high, normal, low; got ${JSON.stringify(bad)}`);
      expect(e.details).toEqual({ header: 'x-skein-priority', allowed: ['high', 'normal', 'low'] });
    }
  });

  it('quotes at most 64 characters of a long value', () => {
    expect(thrown(() => parsePriority('x'.repeat(10_000))).message).toBe(`x-skein-priority must be one of high, normal, low; got "${'x'.repeat(64)}"`);
  });
});
