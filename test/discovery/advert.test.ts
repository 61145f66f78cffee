import { Decoder } from 'cbor-x';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { SkeinError } from '../../common/errors/index.ts';
import { ADVERT_CONTEXT, MAX_ADVERT_BYTES, checkAdvertPayload, encodeAdvert, isValidEndpoint, isValidSpiffeId, nextSeq, type AdvertPayload } from '../../agent/discovery/advert.ts';
import { endorse } from '../../agent/discovery/endorse.ts';
import { createAdvertVerifier } from '../../agent/discovery/verifier.ts';
import { decodeCanonical, encodeCanonical, formatPublicKey, generateKeyPair, keyId, type KeyPair } from '../../signing/index.ts';
import { FLEET, NOW, expectAccepted, payload, seededKey, testClock } from './helpers.ts';

/** The datagram size of `p`, also when encodeAdvert refuses it (the error names the size). */
function sizeOf(p: AdvertPayload, key: KeyPair): number {
  try {
    return encodeAdvert(p, key).length;
  } catch (err) {
    return (err as SkeinError).details.size as number;
  }
}

/** A payload whose datagram is exactly `target` bytes: long routine names, then two fine-tuning knobs. */
function payloadOfSize(key: KeyPair, target: number): AdvertPayload {
  const routines: string[] = [];
  while (sizeOf(payload({ routines: [...routines, `r${routines.length}`.padEnd(30, 'x')] }), key) < target - 40) routines.push(`r${routines.length}`.padEnd(30, 'x'));
  for (let l = 1; l <= 64; l++) {
    for (let k = 1; k <= 40; k++) {
      const p = payload({ routines: [...routines, 'z'.repeat(l)], spiffe: `spiffe://skein.local/${'a'.repeat(k)}` });
      if (sizeOf(p, key) === target) return p;
    }
  }
  throw new Error(`no payload of ${target} bytes`);
}

const cbor = new Decoder({ mapsAsObjects: true, useRecords: false });

/** Splits a datagram with an independent decoder (cbor-x), not the code under test. */
function layers(datagram: Uint8Array) {
  const [frameVersion, fleet, envelope, endorsement] = cbor.decode(datagram) as [number, string, Uint8Array, Uint8Array | null];
  const [envVersion, context, id, payloadBytes, signature] = cbor.decode(envelope) as [number, string, string, Uint8Array, Uint8Array];
  return { frameVersion, fleet, envelope, endorsement, envVersion, context, id, payloadBytes, signature };
}

describe('advert: sign → verify round trip', () => {
  it("a trusted key's advert verifies and returns the payload, key id and endorsed=false", () => {
    const key = generateKeyPair();
    const clock = testClock();
    const v = createAdvertVerifier({ fleet: FLEET, trustedKeys: [formatPublicKey(key.publicKey)], now: clock.now });
    const p = payload();
    const r = expectAccepted(v, encodeAdvert(p, key));
    expect(r.payload).toEqual(p);
    expect(r.keyId).toBe(key.keyId);
    expect(r.endorsed).toBe(false);
    // A goodbye is the same advert with goodbye: true and a newer seq.
    const bye = expectAccepted(v, encodeAdvert(payload({ seq: 2, goodbye: true }), key));
    expect((bye.payload as AdvertPayload).goodbye).toBe(true);
  });

  it('an endorsed key verifies with only the root trusted; endorsed=true', () => {
    const root = generateKeyPair();
    const agent = generateKeyPair();
    const endorsement = endorse({ root, agentPublicKey: agent.publicKey, spiffeId: 'spiffe://skein.local/agent/a1', notAfter: NOW + 60_000 });
    const v = createAdvertVerifier({ fleet: FLEET, rootKeys: [formatPublicKey(root.publicKey)], now: () => NOW });
    const r = expectAccepted(v, encodeAdvert(payload(), agent, endorsement));
    expect(r).toMatchObject({ keyId: agent.keyId, endorsed: true, endorsementNotAfter: NOW + 60_000 });
  });
});

describe('advert: wire format', () => {
  it('is [1, fleet, envelope, endorsement|null] around a "skein-advert-v1" envelope, readable by cbor-x', () => {
    const key = generateKeyPair();
    const p = payload({ goodbye: true });
    const bytes = encodeAdvert(p, key);
    expect(bytes[0]).toBe(0x84);
    expect(bytes[1]).toBe(0x01);
    expect(bytes.at(-1)).toBe(0xf6); // null endorsement, last
    const l = layers(bytes);
    expect([l.frameVersion, l.fleet, l.endorsement, l.envVersion, l.context, l.id]).toEqual([1, FLEET, null, 1, ADVERT_CONTEXT, key.keyId]);
    expect(cbor.decode(l.payloadBytes)).toEqual({ ...p, iat: BigInt(p.iat) }); // an 8-byte uint: cbor-x reads it as a bigint
    expect(l.signature).toHaveLength(64);
    // Payload keys in canonical order: shorter first, then bytewise.
    expect(Object.keys(decodeCanonical(l.payloadBytes) as object)).toEqual([
      'v',
      'iat',
      'seq',
      'ttl',
      'load',
      'agent',
      'fleet',
      'spiffe',
      'goodbye',
      'capacity',
      'routines',
      'endpoints',
      'tlsFingerprint',
    ]);
    expect(Buffer.from(bytes).equals(encodeCanonical([1, FLEET, l.envelope, null]))).toBe(true);
  });

  it('carries the endorsement bytes unchanged in the fourth slot', () => {
    const root = generateKeyPair();
    const agent = generateKeyPair();
    const endorsement = endorse({ root, agentPublicKey: agent.publicKey, spiffeId: 'spiffe://skein.local/agent/a1', notAfter: NOW + 1 });
    const l = layers(encodeAdvert(payload(), agent, endorsement));
    expect(Buffer.from(l.endorsement!).equals(Buffer.from(endorsement))).toBe(true);
  });

  it('matches a golden vector (fixed seed; Ed25519 is deterministic): this pins the format of docs/discovery.md', () => {
    const key = seededKey(7);
    const bytes = Buffer.from(encodeAdvert(payload({ endpoints: ['127.0.0.1:7443'], routines: ['echo'] }), key));
    expect(key.keyId).toBe(keyId(key.publicKey));
    expect(bytes.length).toBe(GOLDEN.length / 2);
    expect(bytes.toString('hex')).toBe(GOLDEN);
    // As documented: the signature (bytes 274–337) is over 0x83 ‖ bytes 12–271.
    expect(key.keyId).toBe('fe812c12f3ab4ce6');
    const signed = Buffer.concat([Buffer.from([0x83]), bytes.subarray(12, 272)]);
    expect(nacl.sign.detached.verify(signed, bytes.subarray(274, 338), key.publicKey)).toBe(true);
  });

  it('sizes: typical adverts are far below one datagram', () => {
    const root = generateKeyPair();
    const key = generateKeyPair();
    const plain = encodeAdvert(payload(), key);
    const endorsement = endorse({ root, agentPublicKey: key.publicKey, spiffeId: 'spiffe://skein.local/agent/a1', notAfter: NOW });
    const withEndorsement = encodeAdvert(payload(), key, endorsement);
    expect(plain.length).toBeLessThan(450);
    expect(withEndorsement.length - plain.length).toBe(endorsement.length + 2 - 1); // bytes head (2) replaces null (1)
  });
});

describe('advert: tweetnacl (an independent Ed25519) interoperates', () => {
  it('tweetnacl verifies the envelope signature of an advert over [context, keyId, payloadBytes]', () => {
    const key = generateKeyPair();
    const l = layers(encodeAdvert(payload(), key));
    const signed = encodeCanonical([ADVERT_CONTEXT, key.keyId, l.payloadBytes]);
    expect(nacl.sign.detached.verify(signed, l.signature, key.publicKey)).toBe(true);
    expect(nacl.sign.detached.verify(encodeCanonical(['skein-endorse-v1', key.keyId, l.payloadBytes]), l.signature, key.publicKey)).toBe(false);
  });

  it('an advert signed with tweetnacl keys from the same seed verifies and is byte-identical to ours', () => {
    for (const n of [1, 2, 3]) {
      const seed = new Uint8Array(32).fill(n * 17);
      const naclPair = nacl.sign.keyPair.fromSeed(seed);
      const ours = seededKey(n * 17);
      expect(Buffer.from(naclPair.publicKey).equals(ours.publicKey)).toBe(true);
      const id = keyId(naclPair.publicKey);
      const p = payload({ seq: n });
      const payloadBytes = encodeCanonical(p);
      const sig = nacl.sign.detached(encodeCanonical([ADVERT_CONTEXT, id, payloadBytes]), naclPair.secretKey);
      const envelope = encodeCanonical([1, ADVERT_CONTEXT, id, payloadBytes, sig]);
      const datagram = encodeCanonical([1, FLEET, envelope, null]);
      const v = createAdvertVerifier({ fleet: FLEET, trustedKeys: [formatPublicKey(naclPair.publicKey)], now: () => NOW });
      expect(expectAccepted(v, datagram).payload).toEqual(p);
      expect(Buffer.from(encodeAdvert(p, ours)).equals(datagram)).toBe(true);
    }
  });
});

describe('advert: the sender refuses what receivers would drop', () => {
  it('refuses a datagram over 1,200 bytes, naming its size', () => {
    const key = generateKeyPair();
    const routines = Array.from({ length: 100 }, (_, i) => `routine_number_${i}`);
    let err: unknown;
    try {
      encodeAdvert(payload({ routines }), key);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SkeinError);
    expect((err as SkeinError).code).toBe('SKEIN_ERR_CONFIG');
    const size = (err as SkeinError).details.size as number;
    expect(size).toBeGreaterThan(MAX_ADVERT_BYTES);
    expect((err as SkeinError).message).toContain(`is ${size} bytes`);
    expect((err as SkeinError).message).toContain('1200-byte');
  });

  it('builds exactly 1,200 bytes and refuses 1,201', () => {
    const key = generateKeyPair();
    const v = createAdvertVerifier({ fleet: FLEET, trustedKeys: [key.publicKey], now: () => NOW });
    const exact = payloadOfSize(key, MAX_ADVERT_BYTES);
    expectAccepted(v, encodeAdvert(exact, key));
    const over = payloadOfSize(key, MAX_ADVERT_BYTES + 1);
    expect(() => encodeAdvert(over, key)).toThrow(/is 1201 bytes, over the 1200-byte datagram limit/);
  });

  it('refuses invalid payloads with SKEIN_ERR_CONFIG naming the field', () => {
    const key = generateKeyPair();
    const bad: [Partial<Record<string, unknown>>, RegExp][] = [
      [{ fleet: 'no spaces' }, /fleet/],
      [{ agent: '-x' }, /agent/],
      [{ spiffe: 'http://x/y' }, /spiffe/],
      [{ endpoints: [] }, /endpoints/],
      [{ endpoints: ['127.0.0.1'] }, /endpoints\[0\]/],
      [{ endpoints: ['127.0.0.1:7443', '127.0.0.1:7443'] }, /twice/],
      [{ routines: ['ok', 'not ok'] }, /routines\[1\]/],
      [{ load: -1 }, /load/],
      [{ capacity: 1.5 }, /capacity/],
      [{ tlsFingerprint: 'AB'.repeat(32) }, /tlsFingerprint/],
      [{ seq: -1 }, /seq/],
      [{ iat: 1.5 }, /iat/],
      [{ ttl: 0 }, /ttl/],
      [{ ttl: 3_600_001 }, /ttl/],
      [{ goodbye: false }, /goodbye/],
      [{ v: 3 }, /v must be 1 or 2/],
    ];
    for (const [over, msg] of bad) {
      expect(() => encodeAdvert({ ...payload(), ...over } as never, key), JSON.stringify(over)).toThrow(msg);
    }
  });
});

describe('advert: field checks', () => {
  it('endpoints: IPv4, bracketed IPv6 and DNS names with a port', () => {
    for (const ok of ['127.0.0.1:7443', '[::1]:7443', '[fd00::5]:1', 'agent-1.fleet.example:65535', 'localhost:80', '[::ffff:10.0.0.1]:7443']) expect(isValidEndpoint(ok), ok).toBe(true);
    for (const bad of [
      '127.0.0.1',
      '::1:7443',
      '[::1]',
      '[zz::1]:7443',
      '127.0.0.1:0',
      '127.0.0.1:65536',
      '127.0.0.1:07443',
      '1.2.3:80',
      '999.1.1.1:80',
      'a_b:80',
      '-a:80',
      'a b:80',
      '[fe80::1%eth0]:80',
      '',
      7443,
    ]) {
      expect(isValidEndpoint(bad), String(bad)).toBe(false);
    }
  });

  it('SPIFFE IDs: spiffe://domain/path, no dot segments', () => {
    for (const ok of ['spiffe://skein.local/agent/a1', 'spiffe://a/b', 'spiffe://x-y_z.io/a.b/c-d_e']) expect(isValidSpiffeId(ok), ok).toBe(true);
    for (const bad of [
      'spiffe://skein.local',
      'spiffe://skein.local/',
      'spiffe://Skein/a',
      'spiffe://x/a/../b',
      'spiffe://x/./b',
      'spiffe://x//b',
      'https://x/a',
      `spiffe://x/${'a'.repeat(600)}`,
      42,
    ]) {
      expect(isValidSpiffeId(bad), String(bad)).toBe(false);
    }
  });

  it('unknown payload keys are ignored (forward compatibility), a v other than 1 and 2 is reported as a version', () => {
    const checked = checkAdvertPayload({ ...payload(), future: { nested: true } });
    expect(checked).toEqual(payload());
    expect(checkAdvertPayload({ ...payload(), v: 3 })).toEqual({ version: 3 });
    expect(checkAdvertPayload([])).toBe('payload must be a map');
  });

  it('nextSeq never goes backwards and follows the clock after a restart', () => {
    expect(nextSeq(undefined, NOW)).toBe(NOW);
    expect(nextSeq(NOW, NOW)).toBe(NOW + 1);
    expect(nextSeq(NOW + 5, NOW + 2)).toBe(NOW + 6);
    expect(nextSeq(5, NOW)).toBe(NOW);
  });
});

// encodeAdvert(payload({ endpoints: ['127.0.0.1:7443'], routines: ['echo'] }), seededKey(7)): see docs/discovery.md.
const GOLDEN = [
  '84016470726f6459014885016f736b65696e2d6164766572742d7631706665383132633132663361623463653658e1ac617601636961741b000001a3',
  '185c500063736571016374746c191770646c6f616401656167656e7462613165666c6565746470726f6466737069666665781d7370696666653a2f2f',
  '736b65696e2e6c6f63616c2f6167656e742f61316863617061636974790468726f7574696e657381646563686f69656e64706f696e7473816e313237',
  '2e302e302e313a373434336e746c7346696e6765727072696e7478406162616261626162616261626162616261626162616261626162616261626162',
  '616261626162616261626162616261626162616261626162616261626162616258403591501707d162eeb538db39df64ed147b3576a7cbe36a26bb18',
  '32b8c96cba06fe798574323ba2d384600223ec2c0b12e9cbb9a75ca8f7227e8caf036c53af07f6',
].join('');
