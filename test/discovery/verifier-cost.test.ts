/**
 * What verification costs as the fleet grows, counted in Ed25519 signature checks (node:crypto
 * verify, wrapped here to count calls): an advert costs one check, its endorsement one more
 * the first time it is seen, and a byte-identical repeat none — at any fleet size.
 */
import { describe, expect, it, vi } from 'vitest';
import { encodeAdvert } from '../../agent/discovery/advert.ts';
import { endorse } from '../../agent/discovery/endorse.ts';
import { createAdvertVerifier } from '../../agent/discovery/verifier.ts';
import { formatPublicKey, generateKeyPair } from '../../signing/index.ts';
import { FLEET, NOW, expectAccepted, expectRejected, payload, seededKey, testClock } from './helpers.ts';

const checks = vi.hoisted(() => ({ count: 0 }));
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  const verify = (...args: Parameters<typeof real.verify>) => {
    checks.count++;
    return (real.verify as (...a: unknown[]) => unknown)(...args);
  };
  return { ...real, default: { ...real, verify }, verify };
});

const root = generateKeyPair();
const spiffe = (name: string) => `spiffe://skein.local/agent/${name}`;

describe('verification cost per advert', () => {
  it('no cliff: past 1,024 endorsed peers each advert still costs one signature check (regression: a 1,024-entry endorsement cache)', () => {
    const n = 1500;
    const peers = Array.from({ length: n }, (_, i) => {
      const key = generateKeyPair();
      return { key, name: `p${i}`, endorsement: endorse({ root, agentPublicKey: key.publicKey, spiffeId: spiffe(`p${i}`), notAfter: NOW + 3_600_000 }) };
    });
    const v = createAdvertVerifier({ fleet: FLEET, rootKeys: [formatPublicKey(root.publicKey)], now: () => NOW, perSourceRate: null });
    const perRound: number[] = [];
    for (let round = 1; round <= 3; round++) {
      const before = checks.count;
      for (const p of peers) expect(v.verify(encodeAdvert(payload({ agent: p.name, spiffe: spiffe(p.name), seq: round }), p.key, p.endorsement), '10.1.1.1').ok).toBe(true);
      perRound.push(checks.count - before);
    }
    // The first round opens every endorsement once; after that only the adverts are checked.
    expect(perRound).toEqual([2 * n, n, n]);
  });

  it('a byte-identical repeat skips the signature check, yet expiry, skew and replay still apply', () => {
    const clock = testClock();
    const key = generateKeyPair();
    const e = endorse({ root, agentPublicKey: key.publicKey, spiffeId: spiffe('r1'), notAfter: NOW + 60_000 });
    const v = createAdvertVerifier({ fleet: FLEET, rootKeys: [formatPublicKey(root.publicKey)], now: clock.now, perSourceRate: { burst: 3, perSecond: 1 } });
    const bytes = encodeAdvert(payload({ agent: 'r1', spiffe: spiffe('r1'), seq: 7 }), key, e);
    expectAccepted(v, bytes, '10.0.0.1');
    const before = checks.count;
    // Repeats (a second group delivering it, a replay): rejected as replays without a check
    // (bounded by the key's bucket at that source, 3 at once) ...
    for (let i = 0; i < 3; i++) expectRejected(v, bytes, 'replay', '10.0.0.2');
    expectRejected(v, bytes, 'rate-limited', '10.0.0.2');
    expect(checks.count).toBe(before);
    // ... and not charged to the source's bucket for rejected datagrams: it still has all 3.
    for (let i = 0; i < 3; i++) expectRejected(v, new Uint8Array(5000), 'oversize', '10.0.0.2');
    expectRejected(v, new Uint8Array(5000), 'rate-limited', '10.0.0.2');
    // Time-dependent checks run on every datagram: the skew window, then the endorsement's end.
    clock.advance(31_000);
    expectRejected(v, bytes, 'stale', '10.0.0.3');
    clock.advance(30_000);
    expectRejected(v, bytes, 'endorsement-expired', '10.0.0.3');
    expect(checks.count).toBe(before);
  });

  it('a repeat that would now be accepted (its first copy arrived too early) is verified again, and accepted', () => {
    const clock = testClock();
    const key = generateKeyPair();
    const v = createAdvertVerifier({ fleet: FLEET, trustedKeys: [formatPublicKey(key.publicKey)], now: clock.now, perSourceRate: null });
    // Issued 40 s ahead of our clock: verified, then refused as from the future ...
    const bytes = encodeAdvert(payload({ seq: 3, iat: NOW + 40_000 }), key);
    expectRejected(v, bytes, 'future');
    const before = checks.count;
    expectRejected(v, bytes, 'future');
    expect(checks.count).toBe(before); // ... and the repeat refused from what was remembered
    // Once inside the skew window the same bytes are the peer's advert: checked once more, accepted.
    clock.advance(15_000);
    expect(expectAccepted(v, bytes).payload.seq).toBe(3);
    expect(checks.count).toBe(before + 1);
    expectRejected(v, bytes, 'replay');
    expect(checks.count).toBe(before + 1);
  });

  it('a repeat is recognised among thousands of other verified adverts (4,096 remembered: they share the table)', () => {
    const keys = Array.from({ length: 40 }, (_, i) => seededKey(i + 1)); // deterministic bytes, so the same slots every run
    const v = createAdvertVerifier({ fleet: FLEET, trustedKeys: keys.map((k) => formatPublicKey(k.publicKey)), now: () => NOW, perSourceRate: null });
    const sent: Uint8Array[] = [];
    for (let seq = 1; seq <= 50; seq++) {
      keys.forEach((k, i) => {
        const bytes = encodeAdvert(payload({ agent: `p${i}`, seq }), k);
        expect(v.verify(bytes, '10.0.0.1').ok).toBe(true);
        sent.push(bytes);
      });
    }
    // 2,000 verified; repeats of the most recent hundred, in any order, cost no check.
    const before = checks.count;
    for (const bytes of sent.slice(-100).reverse()) expectRejected(v, bytes, 'replay');
    expect(checks.count).toBe(before);
  });

  it('a new trust store forgets what was verified: repeats are checked again', () => {
    const key = generateKeyPair();
    const v = createAdvertVerifier({ fleet: FLEET, trustedKeys: [formatPublicKey(key.publicKey)], now: () => NOW, perSourceRate: null });
    const bytes = encodeAdvert(payload(), key);
    expectAccepted(v, bytes);
    v.setTrust({ trustedKeys: [] });
    expectRejected(v, bytes, 'unknown-key');
  });
});
