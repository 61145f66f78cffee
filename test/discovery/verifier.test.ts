import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ADVERT_CONTEXT, MAX_ADVERT_BYTES, encodeAdvert, type AdvertPayload } from '../../agent/discovery/advert.ts';
import { endorse } from '../../agent/discovery/endorse.ts';
import { REJECT_REASONS, type CounterName } from '../../agent/discovery/reasons.ts';
import { createAdvertVerifier, type AdvertVerifierOptions } from '../../agent/discovery/verifier.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { encodeCanonical, formatPublicKey, generateKeyPair, sign, type KeyPair } from '../../signing/index.ts';
import { FLEET, NOW, expectAccepted, expectRejected, payload, testClock } from './helpers.ts';

const SPIFFE_A = 'spiffe://skein.local/agent/a1';
const SPIFFE_E = 'spiffe://skein.local/agent/e1';
const SPIFFE_P = 'spiffe://skein.local/agent/p1';

// One set of keys for the whole file (generation is the slow part).
const agent = generateKeyPair(); // directly trusted, no SPIFFE pin
const pinned = generateKeyPair(); // directly trusted, pinned to SPIFFE_P
const endorsed = generateKeyPair(); // trusted only through its endorsement
const root = generateKeyPair();
const stranger = generateKeyPair();
const endorsementE = endorse({ root, agentPublicKey: endorsed.publicKey, spiffeId: SPIFFE_E, notAfter: NOW + 3_600_000 });

function setup(over: Partial<AdvertVerifierOptions> = {}) {
  const clock = testClock();
  const v = createAdvertVerifier({
    fleet: FLEET,
    trustedKeys: [formatPublicKey(agent.publicKey), { key: formatPublicKey(pinned.publicKey), spiffe: SPIFFE_P }],
    rootKeys: [formatPublicKey(root.publicKey)],
    now: clock.now,
    perSourceRate: null,
    ...over,
  });
  return { v, clock };
}

const advertE = (over: Partial<AdvertPayload> = {}, endorsement: Uint8Array | null = endorsementE) => encodeAdvert(payload({ agent: 'e1', spiffe: SPIFFE_E, ...over }), endorsed, endorsement);

/** A datagram put together without encodeAdvert's checks (to send what a hostile or buggy sender would). */
function rawAdvert(body: object, key: KeyPair, opts: { fleet?: string; endorsement?: Uint8Array | null; frameVersion?: number } = {}): Uint8Array {
  return encodeCanonical([opts.frameVersion ?? 1, opts.fleet ?? FLEET, sign(body, key, ADVERT_CONTEXT), opts.endorsement ?? null]);
}

const total = (c: Record<CounterName, number>) => Object.values(c).reduce((a, b) => a + b, 0);

describe('verifier: accepts', () => {
  it('directly trusted, pinned and endorsed keys; counters start at zero for every reason', () => {
    const { v } = setup();
    const zero = v.counters();
    expect(Object.keys(zero).sort()).toEqual([...REJECT_REASONS, 'accepted'].sort());
    expect(total(zero)).toBe(0);
    expect(expectAccepted(v, encodeAdvert(payload(), agent))).toMatchObject({ keyId: agent.keyId, endorsed: false, bound: false });
    expect(expectAccepted(v, encodeAdvert(payload({ agent: 'p1', spiffe: SPIFFE_P }), pinned))).toMatchObject({ keyId: pinned.keyId, endorsed: false, bound: true });
    expect(expectAccepted(v, advertE())).toMatchObject({ keyId: endorsed.keyId, endorsed: true, bound: true });
    expect(v.counters().accepted).toBe(3);
  });

  it('accepts trustedKeys as "ed25519:…@spiffe://…" strings, objects and raw bytes; refuses bad entries naming them', () => {
    const clock = testClock();
    const v = createAdvertVerifier({ fleet: FLEET, trustedKeys: [agent.publicKey, `${formatPublicKey(pinned.publicKey)}@${SPIFFE_P}`], now: clock.now });
    expectAccepted(v, encodeAdvert(payload(), agent));
    expectRejected(v, encodeAdvert(payload({ agent: 'p1' }), pinned), 'spiffe-mismatch');
    const bad = (trustedKeys: AdvertVerifierOptions['trustedKeys'], msg: RegExp) => {
      let err: unknown;
      try {
        createAdvertVerifier({ fleet: FLEET, trustedKeys });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SkeinError);
      expect((err as SkeinError).code).toBe('SKEIN_ERR_CONFIG');
      expect((err as SkeinError).message).toMatch(msg);
    };
    // Worded like every other config error (schema-dsl configError): config key "<key>": <why>.
    bad([formatPublicKey(agent.publicKey), 'ed25519:nope'], /^config key "discovery\.trustedKeys\[1\]": /);
    bad([{ key: formatPublicKey(agent.publicKey), spiffe: 'spiffe://x' }], /^config key "discovery\.trustedKeys\[0\]": .*not a SPIFFE ID/);
    bad([`${formatPublicKey(agent.publicKey)}@spiffe://a/b`, `${formatPublicKey(agent.publicKey)}@spiffe://a/c`], /listed twice/);
    expect(() => createAdvertVerifier({ fleet: FLEET, rootKeys: ['ed25519:x'] })).toThrow(/^config key "discovery\.rootKeys\[0\]": /);
  });
});

describe('verifier: each rejection has its reason and its counter', () => {
  it('replay: the same advert twice, or a lower sequence number', () => {
    const { v } = setup();
    const first = encodeAdvert(payload({ seq: 10 }), agent);
    expectAccepted(v, first);
    expectRejected(v, first, 'replay');
    expectRejected(v, encodeAdvert(payload({ seq: 9 }), agent), 'replay');
    expectRejected(v, encodeAdvert(payload({ seq: 10, load: 3 }), agent), 'replay');
    expectAccepted(v, encodeAdvert(payload({ seq: 11 }), agent));
    // Sequence numbers are per key: another key starts fresh.
    expectAccepted(v, encodeAdvert(payload({ seq: 1, agent: 'p1', spiffe: SPIFFE_P }), pinned));
  });

  it('stale and future: iat outside ±maxSkewMs (the edges are inside)', () => {
    const { v } = setup({ maxSkewMs: 30_000 });
    expectRejected(v, encodeAdvert(payload({ seq: 1, iat: NOW - 30_001 }), agent), 'stale');
    expectRejected(v, encodeAdvert(payload({ seq: 2, iat: NOW + 30_001 }), agent), 'future');
    expectAccepted(v, encodeAdvert(payload({ seq: 3, iat: NOW - 30_000 }), agent));
    expectAccepted(v, encodeAdvert(payload({ seq: 4, iat: NOW + 30_000 }), agent));
  });

  it('an advert goes stale as the injected clock moves', () => {
    const { v, clock } = setup({ maxSkewMs: 1000 });
    const bytes = encodeAdvert(payload({ seq: 5 }), agent);
    clock.advance(1001);
    expectRejected(v, bytes, 'stale');
    clock.set(NOW);
    expectAccepted(v, bytes);
  });

  it('wrong fleet outside the signature (no crypto spent) and inside it', () => {
    const { v } = setup();
    expectRejected(v, encodeAdvert(payload({ fleet: 'staging' }), agent), 'wrong-fleet');
    // Inside: a trusted key signed fleet "staging" but the frame says "prod".
    const r = expectRejected(v, rawAdvert(payload({ fleet: 'staging' }), agent), 'wrong-fleet');
    expect(r.detail).toMatch(/signed fleet "staging" inside a "prod" frame/);
  });

  it('unknown key, and an endorsed key without its endorsement (trusted for that advert only)', () => {
    const { v } = setup();
    expectRejected(v, encodeAdvert(payload(), stranger), 'unknown-key');
    expectAccepted(v, advertE({ seq: 1 }));
    expectRejected(v, advertE({ seq: 2 }, null), 'unknown-key');
  });

  it('bad signature', () => {
    const { v } = setup();
    const bytes = Buffer.from(encodeAdvert(payload(), agent));
    bytes[bytes.length - 10]! ^= 0x01; // inside the signature
    expectRejected(v, bytes, 'bad-signature');
  });

  it('expired endorsement (notAfter itself still counts)', () => {
    const { v, clock } = setup();
    const e = endorse({ root, agentPublicKey: endorsed.publicKey, spiffeId: SPIFFE_E, notAfter: NOW + 1000 });
    clock.set(NOW + 1000);
    expectAccepted(v, advertE({ seq: 1, iat: NOW + 1000 }, e));
    clock.set(NOW + 1001);
    const r = expectRejected(v, advertE({ seq: 2, iat: NOW + 1001 }, e), 'endorsement-expired');
    expect(r.detail).toMatch(/expired at/);
  });

  it('forged endorsement: signed by a key that is not a fleet root (even a trusted agent key)', () => {
    const { v } = setup();
    for (const forger of [stranger, agent]) {
      const forged = endorse({ root: forger, agentPublicKey: endorsed.publicKey, spiffeId: SPIFFE_E, notAfter: NOW + 60_000 });
      expectRejected(v, advertE({}, forged), 'endorsement-invalid');
    }
    // An advert envelope is not an endorsement (another signing context).
    expectRejected(v, advertE({}, sign({ v: 1 }, root, ADVERT_CONTEXT)), 'endorsement-invalid');
    // Tampered endorsement bytes.
    const tampered = Buffer.from(endorsementE);
    tampered[20]! ^= 0x04;
    expectRejected(v, advertE({}, tampered), 'endorsement-invalid');
    expectRejected(v, advertE({}, new Uint8Array([1, 2, 3])), 'endorsement-invalid');
  });

  it('SPIFFE ID not matching the endorsement, the pin, or the trust domains', () => {
    const { v } = setup({ trustDomains: ['skein.local', 'partner.example'] });
    expectRejected(v, advertE({ spiffe: SPIFFE_A }), 'spiffe-mismatch');
    expectRejected(v, encodeAdvert(payload({ agent: 'p1', spiffe: SPIFFE_A }), pinned), 'spiffe-mismatch');
    expectRejected(v, encodeAdvert(payload({ spiffe: 'spiffe://elsewhere/agent/a1' }), agent), 'spiffe-mismatch');
    // A directly trusted key without a pin may claim any ID in the trust domains.
    expectAccepted(v, encodeAdvert(payload({ spiffe: 'spiffe://skein.local/agent/other' }), agent));
    expectAccepted(v, encodeAdvert(payload({ spiffe: 'spiffe://partner.example/agent/other', seq: 2 }), agent));
  });

  it('endorsement-mismatch: a valid endorsement of another key than the signer', () => {
    const { v } = setup();
    expectRejected(v, encodeAdvert(payload(), agent, endorsementE), 'endorsement-mismatch');
    // A signer that is neither trusted nor endorsed stays an unknown key.
    expectRejected(v, encodeAdvert(payload({ agent: 'e1', spiffe: SPIFFE_E }), stranger, endorsementE), 'unknown-key');
  });

  it('oversize: over maxBytes is dropped unread; 1,201 bytes by default', () => {
    const { v } = setup({ maxBytes: 300 });
    expectRejected(v, encodeAdvert(payload(), agent), 'oversize');
    const d = setup();
    // A validly signed 1,201-byte advert, built without encodeAdvert (which refuses it).
    let body = payload({ routines: Array.from({ length: 40 }, (_, i) => `r${i}`.padEnd(20, 'x')) });
    let bytes = rawAdvert(body, agent);
    while (bytes.length < MAX_ADVERT_BYTES + 1) {
      body = { ...body, agent: `${body.agent}x` };
      bytes = rawAdvert(body, agent);
    }
    expect(bytes.length).toBeGreaterThan(MAX_ADVERT_BYTES);
    expectRejected(d.v, bytes, 'oversize');
    expectRejected(d.v, new Uint8Array(MAX_ADVERT_BYTES + 1), 'oversize');
  });

  it('malformed: not the frame, non-canonical CBOR, wrong shapes, invalid payloads from trusted keys', () => {
    const { v } = setup();
    const good = Buffer.from(encodeAdvert(payload(), agent));
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      Buffer.from('f6', 'hex'),
      Buffer.from('{"v":1}'),
      encodeCanonical([1, FLEET, new Uint8Array(10), null]), // envelope is junk
      encodeCanonical([1, FLEET, 'not bytes', null]),
      encodeCanonical([1, FLEET, good, false]), // endorsement slot must be bytes or null
      Buffer.concat([good, Buffer.from([0])]), // trailing byte
      Buffer.concat([Buffer.from([0x84, 0x01, 0x78, 0x04]), Buffer.from(FLEET), good.subarray(2 + 1 + 4)]), // fleet length in a non-shortest head
      Buffer.concat([Buffer.from([0x84, 0x01, 0x64, 0xff, 0xfe, 0xfd, 0xfc]), good.subarray(2 + 1 + 4)]), // fleet not UTF-8
      rawAdvert({ ...payload(), endpoints: ['nowhere'] }, agent), // trusted key, invalid field
      rawAdvert({ ...payload(), seq: 2 ** 60 }, agent), // bigint
      rawAdvert({ ...payload(), load: 0.5 }, agent),
      encodeCanonical([1, FLEET, sign({ v: 1 }, agent, 'skein-endorse-v1'), null]), // another context
    ];
    for (const bytes of cases) expectRejected(v, bytes, 'malformed');
  });

  it('unsupported-version: a newer frame or payload version', () => {
    const { v } = setup();
    expectRejected(v, rawAdvert(payload(), agent, { frameVersion: 3 }), 'unsupported-version');
    expectRejected(v, rawAdvert({ ...payload(), v: 3 }, agent), 'unsupported-version');
  });

  it('rate-limited: a token bucket per source for what it gets rejected, per (source, key) for what verifies', () => {
    const { v, clock } = setup({ perSourceRate: { burst: 3, perSecond: 2 } });
    let seq = 0;
    const next = () => encodeAdvert(payload({ seq: ++seq }), agent);
    for (let i = 0; i < 3; i++) expectAccepted(v, next(), '10.0.0.1');
    // The key's own bucket (3 at once) is empty; the source's is untouched by verified adverts.
    expectRejected(v, next(), 'rate-limited', '10.0.0.1');
    expectAccepted(v, encodeAdvert(payload({ agent: 'p1', spiffe: SPIFFE_P, seq: 1 }), pinned), '10.0.0.1');
    // Junk costs the source's bucket: 3 are looked at, then the source is refused unread.
    for (let i = 0; i < 3; i++) expectRejected(v, new Uint8Array(5000), 'oversize', '10.0.0.1');
    expectRejected(v, new Uint8Array(5000), 'rate-limited', '10.0.0.1');
    expectRejected(v, encodeAdvert(payload({ agent: 'p1', spiffe: SPIFFE_P, seq: 2 }), pinned), 'rate-limited', '10.0.0.1');
    // Another source has its own buckets.
    expectAccepted(v, next(), '10.0.0.2');
    // 500 ms refill one token at 2/s.
    clock.advance(500);
    expectAccepted(v, next(), '10.0.0.1');
    expectRejected(v, next(), 'rate-limited', '10.0.0.1');
    clock.advance(10_000); // refills up to the burst, not beyond
    for (let i = 0; i < 3; i++) expectAccepted(v, encodeAdvert(payload({ seq: ++seq, iat: NOW + 10_500 }), agent), '10.0.0.1');
    expectRejected(v, next(), 'rate-limited', '10.0.0.1');
  });

  it('200 agents behind one source address are all accepted, round after round (regression: 59 % dropped)', () => {
    const { v, clock } = setup({ trustedKeys: [], perSourceRate: { burst: 50, perSecond: 20 } });
    const keys = Array.from({ length: 200 }, (_, i) => ({ key: generateKeyPair(), name: `n${i}` }));
    const endorsements = keys.map(({ key, name }) => endorse({ root, agentPublicKey: key.publicKey, spiffeId: `spiffe://skein.local/agent/${name}`, notAfter: NOW + 3_600_000 }));
    for (let round = 1; round <= 5; round++) {
      keys.forEach(({ key, name }, i) => {
        expectAccepted(v, encodeAdvert(payload({ agent: name, spiffe: `spiffe://skein.local/agent/${name}`, seq: round, iat: clock.now() }), key, endorsements[i]), '10.9.9.9');
      });
      clock.advance(2000);
    }
    // A forger at the same address is still bounded by the source's bucket (50 at once).
    const forged = Buffer.from(encodeAdvert(payload({ agent: 'n0', spiffe: 'spiffe://skein.local/agent/n0', seq: 99, iat: clock.now() }), keys[0]!.key, endorsements[0]));
    forged[forged.length - endorsements[0]!.length - 10]! ^= 0x55; // inside the advert's signature
    const results = Array.from({ length: 500 }, () => v.verify(forged, '10.9.9.9'));
    expect(results.filter((r) => !r.ok && r.reason === 'bad-signature').length).toBe(50);
    expect(results.filter((r) => !r.ok && r.reason === 'rate-limited').length).toBe(450);
  });

  it("our own looped-back adverts (own: the kernel's source is our send socket) skip the buckets a flood from that address emptied", () => {
    const { v } = setup({ perSourceRate: { burst: 3, perSecond: 2 } });
    for (let i = 0; i < 3; i++) expectRejected(v, new Uint8Array(5000), 'oversize', '127.0.0.1');
    expectRejected(v, encodeAdvert(payload({ seq: 1 }), agent), 'rate-limited', '127.0.0.1');
    // Still verified: a forged or replayed "own" datagram is rejected for what it is.
    expectAccepted(v, encodeAdvert(payload({ seq: 2 }), agent), '127.0.0.1', true);
    expectRejected(v, encodeAdvert(payload({ seq: 2 }), agent), 'replay', '127.0.0.1', true);
    // And it costs nothing: the flood's source stays refused, our own keeps passing.
    expectRejected(v, new Uint8Array(5000), 'rate-limited', '127.0.0.1');
    for (let seq = 3; seq < 10; seq++) expectAccepted(v, encodeAdvert(payload({ seq }), agent), '127.0.0.1', true);
  });

  it('every datagram of one source is capped (perSourceCap), however many keys sign them', () => {
    const { v } = setup({ trustedKeys: [], perSourceRate: { burst: 50, perSecond: 20 }, perSourceCap: { burst: 30, perSecond: 10 } });
    const results = Array.from({ length: 40 }, (_, i) => {
      const key = generateKeyPair();
      const e = endorse({ root, agentPublicKey: key.publicKey, spiffeId: `spiffe://skein.local/agent/c${i}`, notAfter: NOW + 3_600_000 });
      return v.verify(encodeAdvert(payload({ agent: `c${i}`, spiffe: `spiffe://skein.local/agent/c${i}` }), key, e), '10.9.9.8');
    });
    expect(results.filter((r) => r.ok).length).toBe(30);
    expect(results.slice(30).every((r) => !r.ok && r.reason === 'rate-limited')).toBe(true);
  });

  it('setTrust swaps the trust store and forgets cached endorsements, keeping sequence numbers', () => {
    const { v } = setup();
    expectAccepted(v, encodeAdvert(payload({ seq: 5 }), agent));
    expectAccepted(v, advertE({ seq: 1 }));
    v.setTrust({ trustedKeys: [], rootKeys: [] });
    expectRejected(v, encodeAdvert(payload({ seq: 6 }), agent), 'unknown-key');
    expectRejected(v, advertE({ seq: 2 }), 'endorsement-invalid');
    v.setTrust({ trustedKeys: [agent.publicKey], rootKeys: [root.publicKey] });
    expectRejected(v, encodeAdvert(payload({ seq: 5 }), agent), 'replay');
    expectAccepted(v, advertE({ seq: 3 }));
  });
});

describe('verifier: tampering and fuzzing (fast-check)', () => {
  /** Flips bytes of a datagram: every flip is rejected, counted once, and never accepted. */
  function assertEveryFlipRejected(bytes: Uint8Array, masks: number[]) {
    const { v } = setup();
    for (let i = 0; i < bytes.length; i++) {
      for (const mask of masks) {
        const flipped = Buffer.from(bytes);
        flipped[i]! ^= mask;
        const before = total(v.counters());
        const r = v.verify(flipped, '10.0.0.9');
        if (r.ok) throw new Error(`flipping byte ${i} with ${mask.toString(16)} was accepted`);
        expect(REJECT_REASONS).toContain(r.reason);
        expect(total(v.counters())).toBe(before + 1);
      }
    }
    expect(v.counters().accepted).toBe(0);
    expectAccepted(v, bytes); // the original is still fine
  }

  it('flipping any single byte of a signed advert is rejected: every position, several masks', () => {
    assertEveryFlipRejected(encodeAdvert(payload(), agent), [0x01, 0x80, 0xff]);
    assertEveryFlipRejected(advertE(), [0x01, 0x40]); // with an endorsement: covers its bytes too
  });

  it('flipping any single byte is rejected: random adverts, positions and values', () => {
    const arbPayload = fc.record({
      agent: fc.stringMatching(/^[a-z][a-z0-9_.-]{0,20}$/),
      endpoints: fc.uniqueArray(
        fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `${h}:${p}`),
        { minLength: 1, maxLength: 4 },
      ),
      routines: fc.uniqueArray(fc.stringMatching(/^[a-z_][a-z0-9_]{0,15}$/), { maxLength: 8 }),
      load: fc.nat(1000),
      capacity: fc.nat(1000),
      seq: fc.nat(),
      ttl: fc.integer({ min: 1, max: 3_600_000 }),
      iat: fc.integer({ min: NOW - 30_000, max: NOW + 30_000 }),
      goodbye: fc.constantFrom(undefined, true as const),
    });
    fc.assert(
      fc.property(arbPayload, fc.boolean(), fc.nat(), fc.integer({ min: 1, max: 255 }), (over, withEndorsement, at, mask) => {
        const p = payload(over as Partial<AdvertPayload>);
        const bytes = withEndorsement ? advertE(over as Partial<AdvertPayload>) : encodeAdvert(p, agent);
        const { v } = setup();
        const flipped = Buffer.from(bytes);
        flipped[at % bytes.length]! ^= mask;
        const r = v.verify(flipped, 'x');
        expect(r.ok).toBe(false);
        expect(total(v.counters())).toBe(1);
        expect(v.verify(bytes, 'x').ok).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('random bytes never throw and always end in one counted reason', () => {
    const { v } = setup();
    let calls = 0;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), (bytes) => {
        const r = v.verify(bytes, 'fuzz');
        calls++;
        expect(r.ok).toBe(false);
        if (!r.ok) expect(REJECT_REASONS).toContain(r.reason);
        expect(total(v.counters())).toBe(calls);
      }),
      { numRuns: 2000 },
    );
  });

  it('random bytes behind a valid frame head, and inside a valid frame, are malformed', () => {
    const { v } = setup();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1000 }), fc.boolean(), (junk, asEnvelope) => {
        const bytes = asEnvelope ? encodeCanonical([1, FLEET, junk, null]) : Buffer.concat([Buffer.from([0x84, 0x01, 0x64]), Buffer.from(FLEET), junk]);
        if (bytes.length > MAX_ADVERT_BYTES) return;
        const r = v.verify(bytes, 'fuzz');
        expect(r.ok).toBe(false);
        // Junk that happens to spell two CBOR byte strings (e.g. 45 00…00 41 00) completes a
        // well-formed frame whose endorsement slot holds bytes that are no endorsement: refused
        // as such, still before any signature is checked.
        if (!r.ok) expect(['malformed', 'oversize', 'endorsement-invalid']).toContain(r.reason);
      }),
      { numRuns: 1000 },
    );
  });

  it("deeply nested CBOR: in the frame, the envelope, the endorsement slot and a trusted signer's payload", () => {
    const { v } = setup();
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 1100 }), fc.constantFrom(0x81, 0xa1), (depth, head) => {
        // 0x81 = array(1), 0xa1 = map(1): nest `depth` levels, innermost 0.
        const nest = (n: number) => Buffer.concat([Buffer.alloc(n, head === 0xa1 ? 0 : head), Buffer.from([0])]);
        const mapNest = (n: number) => Buffer.concat([...Array.from({ length: n }, () => Buffer.from([0xa1, 0x61, 0x6b])), Buffer.from([0])]);
        const deep = head === 0xa1 ? mapNest(Math.min(depth, 350)) : nest(depth);
        const samples = [
          deep,
          Buffer.concat([Buffer.from([0x84, 0x01, 0x64]), Buffer.from(FLEET), deep]),
          encodeCanonical([1, FLEET, deep, null]),
          encodeCanonical([1, FLEET, encodeAdvert(payload(), agent).subarray(0, 0), deep]),
        ];
        for (const bytes of samples) {
          if (bytes.length > MAX_ADVERT_BYTES) continue;
          const r = v.verify(bytes, 'fuzz');
          expect(r.ok).toBe(false);
          if (!r.ok) expect(['malformed', 'endorsement-invalid']).toContain(r.reason);
        }
      }),
      { numRuns: 200 },
    );
    // A trusted key signing a payload nested deeper than the limit (2): malformed, counted.
    let nested: unknown = 'x';
    for (let i = 0; i < 12; i++) nested = [nested];
    expectRejected(v, rawAdvert({ ...payload(), extra: nested }, agent), 'malformed');
    expectRejected(v, rawAdvert({ ...payload(), routines: [['echo']] }, agent), 'malformed');
  });
});
