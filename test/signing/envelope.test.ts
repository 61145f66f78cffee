import { sign as edSign } from 'node:crypto';
import { Decoder } from 'cbor-x';
import fc from 'fast-check';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { encodeCanonical } from '../../signing/canonical.ts';
import { DEFAULT_ENVELOPE_MAX_BYTES, open, sign, type OpenOptions } from '../../signing/envelope.ts';
import { SigningError, type SigningErrorCode } from '../../signing/errors.ts';
import { generateKeyPair, keyId, keyPairFromPrivate, privateKeyFromSeed, type KeyPair } from '../../signing/keys.ts';

const CONTEXT = 'skein-advert-v1';
const hex = (h: string): Buffer => Buffer.from(h, 'hex');
const trust = (...pairs: { keyId: string; publicKey: Uint8Array }[]): Map<string, Uint8Array> => new Map(pairs.map((p) => [p.keyId, p.publicKey]));

function signingError(fn: () => unknown): SigningError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SigningError);
    return err as SigningError;
  }
  throw new Error('expected a SigningError');
}
const codeOf = (fn: () => unknown): SigningErrorCode => signingError(fn).code;

// Hand-rolled CBOR heads, so these tests do not trust the encoder under test for the layout.
function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 256) return Buffer.from([(major << 5) | 24, n]);
  const b = Buffer.alloc(3);
  b[0] = (major << 5) | 25;
  b.writeUInt16BE(n, 1);
  return b;
}
const cborText = (s: string): Buffer => Buffer.concat([head(3, Buffer.byteLength(s)), Buffer.from(s)]);
const cborBytes = (b: Uint8Array): Buffer => Buffer.concat([head(2, b.length), b]);
/** The bytes the envelope signature covers: [context, keyId, payloadBytes]. */
const signedBytesByHand = (context: string, id: string, payload: Uint8Array): Buffer => Buffer.concat([Buffer.from([0x83]), cborText(context), cborText(id), cborBytes(payload)]);
/** An envelope put together by hand from its parts. */
const envelopeByHand = (version: number, context: string, id: string, payload: Uint8Array, sig: Uint8Array): Buffer =>
  Buffer.concat([Buffer.from([0x85, version]), cborText(context), cborText(id), cborBytes(payload), cborBytes(sig)]);

// RFC 8032 §7.1 TEST 1 seed.
const RFC8032_SEED = hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');

describe('envelope: round trip and wire format', () => {
  it('sign → open returns the payload and the key id', () => {
    const pair = generateKeyPair();
    const payload = { name: 'agent-a', addr: '127.0.0.1:7443', ts: 1_700_000_000_000, spiffe: 'spiffe://fleet/agent-a', caps: ['py'], blob: new Uint8Array([1, 2]), load: 0.25, up: true, note: null };
    const bytes = sign(payload, pair, CONTEXT);
    const opened = open(bytes, { trustedKeys: trust(pair), context: CONTEXT });
    expect(opened.keyId).toBe(pair.keyId);
    expect(opened.payload).toEqual(payload);
  });

  it('matches a golden vector (Ed25519 is deterministic; this pins the format)', () => {
    const pair = keyPairFromPrivate(privateKeyFromSeed(RFC8032_SEED));
    expect(pair.publicKey.toString('hex')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    expect(pair.keyId).toBe('21fe31dfa154a261');
    const bytes = sign({ tags: ['x'], port: 7443, name: 'agent-a' }, pair, CONTEXT);
    expect(Buffer.from(bytes).toString('hex')).toBe(
      '85016f736b65696e2d6164766572742d76317032316665333164666131353461323631581ea3646e616d65676167656e742d6164706f7274191d136474616773816178' +
        '584070ac36d9fb80ed16d27bfb1060a76c3f4f6ff86afbc742e6495da741babba45c32e7270534a57fc2f37e293c77143727013e06b7465e8288d29927531d16950f',
    );
  });

  it('has the documented layout, readable by cbor-x', () => {
    const pair = generateKeyPair();
    const bytes = sign({ a: 1 }, pair, CONTEXT);
    const [version, context, id, payloadBytes, sig] = new Decoder({ mapsAsObjects: true, useRecords: false }).decode(bytes) as [number, string, string, Uint8Array, Uint8Array];
    expect([version, context, id]).toEqual([1, CONTEXT, pair.keyId]);
    expect(Buffer.from(payloadBytes).toString('hex')).toBe('a1616101');
    expect(sig).toHaveLength(64);
    expect(Buffer.from(bytes).equals(envelopeByHand(1, CONTEXT, pair.keyId, payloadBytes, sig))).toBe(true);
  });
});

describe('envelope: interoperates with tweetnacl (an independent Ed25519)', () => {
  it('both produce the RFC 8032 TEST 1 signature from its seed', () => {
    const expected = 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';
    const naclPair = nacl.sign.keyPair.fromSeed(RFC8032_SEED);
    expect(Buffer.from(nacl.sign.detached(new Uint8Array(0), naclPair.secretKey)).toString('hex')).toBe(expected);
    expect(edSign(null, Buffer.alloc(0), privateKeyFromSeed(RFC8032_SEED)).toString('hex')).toBe(expected);
  });

  it('tweetnacl verifies our envelope signature over the exact signed bytes', () => {
    for (let i = 0; i < 20; i++) {
      const pair = generateKeyPair();
      const bytes = sign({ i, s: 'x'.repeat(i * 13) }, pair, CONTEXT);
      const [, , , payloadBytes, sig] = new Decoder({ mapsAsObjects: true, useRecords: false }).decode(bytes) as [number, string, string, Uint8Array, Uint8Array];
      const signed = signedBytesByHand(CONTEXT, pair.keyId, payloadBytes);
      expect(signed.equals(encodeCanonical([CONTEXT, pair.keyId, payloadBytes]))).toBe(true);
      expect(nacl.sign.detached.verify(signed, sig, pair.publicKey)).toBe(true);
      // …and only those bytes: another context does not verify.
      expect(nacl.sign.detached.verify(signedBytesByHand('skein-other-v1', pair.keyId, payloadBytes), sig, pair.publicKey)).toBe(false);
    }
  });

  it('opens envelopes signed by tweetnacl; same seed → same keys and identical envelopes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.string())), (seed, payload) => {
        const naclPair = nacl.sign.keyPair.fromSeed(seed);
        const ours = keyPairFromPrivate(privateKeyFromSeed(seed));
        expect(Buffer.from(naclPair.publicKey).equals(ours.publicKey)).toBe(true);
        const id = keyId(naclPair.publicKey);
        const payloadBytes = encodeCanonical(payload);
        const sig = nacl.sign.detached(signedBytesByHand(CONTEXT, id, payloadBytes), naclPair.secretKey);
        const theirs = envelopeByHand(1, CONTEXT, id, payloadBytes, sig);
        const opened = open(theirs, { trustedKeys: new Map([[id, naclPair.publicKey]]), context: CONTEXT });
        expect(opened.keyId).toBe(id);
        expect(opened.payload).toEqual(payload);
        expect(Buffer.from(sign(payload, ours, CONTEXT)).equals(theirs)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });
});

describe('envelope: every rejection has its own code', () => {
  const pair = generateKeyPair();
  const opts: OpenOptions = { trustedKeys: trust(pair), context: CONTEXT };
  const good = sign({ name: 'agent-a' }, pair, CONTEXT);
  const payloadBytes = encodeCanonical({ name: 'agent-a' });
  const signWith = (p: KeyPair, context: string, id: string, payload: Uint8Array): Buffer => edSign(null, signedBytesByHand(context, id, payload), p.privateKey);

  it('SKEIN_ERR_SIG_CONTEXT: signed for another purpose', () => {
    const err = signingError(() => open(good, { ...opts, context: 'skein-other-v1' }));
    expect(err.code).toBe('SKEIN_ERR_SIG_CONTEXT');
    expect(err.details).toMatchObject({ context: CONTEXT, expected: 'skein-other-v1' });
  });

  it('SKEIN_ERR_SIG_UNKNOWN_KEY: signer not trusted (map or function), or a store mapping an id to the wrong key', () => {
    const stranger = generateKeyPair();
    const bytes = sign({ name: 'x' }, stranger, CONTEXT);
    expect(codeOf(() => open(bytes, opts))).toBe('SKEIN_ERR_SIG_UNKNOWN_KEY');
    expect(codeOf(() => open(bytes, { ...opts, trustedKeys: () => undefined }))).toBe('SKEIN_ERR_SIG_UNKNOWN_KEY');
    expect(open(bytes, { ...opts, trustedKeys: (id) => (id === stranger.keyId ? stranger.publicKey : undefined) }).keyId).toBe(stranger.keyId);
    expect(codeOf(() => open(bytes, { ...opts, trustedKeys: new Map([[stranger.keyId, pair.publicKey]]) }))).toBe('SKEIN_ERR_SIG_UNKNOWN_KEY');
  });

  it('SKEIN_ERR_SIG_INVALID: a signature by another key under a trusted key id', () => {
    const attacker = generateKeyPair();
    const forged = envelopeByHand(1, CONTEXT, pair.keyId, payloadBytes, signWith(attacker, CONTEXT, pair.keyId, payloadBytes));
    expect(codeOf(() => open(forged, opts))).toBe('SKEIN_ERR_SIG_INVALID');
    // A genuine signature moved onto another payload.
    const sig = signWith(pair, CONTEXT, pair.keyId, payloadBytes);
    const moved = envelopeByHand(1, CONTEXT, pair.keyId, encodeCanonical({ name: 'agent-b' }), sig);
    expect(codeOf(() => open(moved, opts))).toBe('SKEIN_ERR_SIG_INVALID');
  });

  it('SKEIN_ERR_SIG_OVERSIZE: bigger than maxBytes, refused before decoding', () => {
    expect(codeOf(() => open(good, { ...opts, maxBytes: good.length - 1 }))).toBe('SKEIN_ERR_SIG_OVERSIZE');
    expect(open(good, { ...opts, maxBytes: good.length }).keyId).toBe(pair.keyId);
    expect(codeOf(() => open(Buffer.alloc(DEFAULT_ENVELOPE_MAX_BYTES + 1), opts))).toBe('SKEIN_ERR_SIG_OVERSIZE');
  });

  it('SKEIN_ERR_SIG_MALFORMED: garbage, wrong shapes and versions, non-canonical layers', () => {
    const sig = signWith(pair, CONTEXT, pair.keyId, payloadBytes);
    const cases: [string, Uint8Array][] = [
      ['empty', new Uint8Array(0)],
      ['garbage', Buffer.from('hello world')],
      ['a map', encodeCanonical({ v: 1 })],
      ['four elements', encodeCanonical([1, CONTEXT, pair.keyId, payloadBytes])],
      ['six elements', encodeCanonical([1, CONTEXT, pair.keyId, payloadBytes, sig, 0])],
      ['version 2 with a valid signature', envelopeByHand(2, CONTEXT, pair.keyId, payloadBytes, sig)],
      ['version 0', envelopeByHand(0, CONTEXT, pair.keyId, payloadBytes, sig)],
      ['keyId not hex', envelopeByHand(1, CONTEXT, 'ZZZZZZZZZZZZZZZZ', payloadBytes, sig)],
      ['short signature', envelopeByHand(1, CONTEXT, pair.keyId, payloadBytes, sig.subarray(0, 63))],
      ['payload as text', encodeCanonical([1, CONTEXT, pair.keyId, 'a1616101', sig])],
      ['nested outer value', encodeCanonical([1, CONTEXT, pair.keyId, [payloadBytes], sig])],
      ['trailing byte', Buffer.concat([good, Buffer.from([0])])],
      ['indefinite outer array', Buffer.concat([Buffer.from([0x9f]), Buffer.from(good).subarray(1), Buffer.from([0xff])])],
      // Same items, payload length written in a longer head than needed.
      ['non-shortest head', Buffer.concat([Buffer.from([0x85, 0x01]), cborText(CONTEXT), cborText(pair.keyId), Buffer.from([0x58, payloadBytes.length]), payloadBytes, cborBytes(sig)])],
    ];
    for (const [name, bytes] of cases)
      expect(
        codeOf(() => open(bytes, opts)),
        name,
      ).toBe('SKEIN_ERR_SIG_MALFORMED');
  });

  it('SKEIN_ERR_SIG_MALFORMED: a validly signed payload that is not a canonical map', () => {
    for (const payload of [encodeCanonical([1, 2]), encodeCanonical('x'), hex('a2616201616102'), hex('1817'), Buffer.concat([Buffer.alloc(20, 0x81), hex('00')])]) {
      const bytes = envelopeByHand(1, CONTEXT, pair.keyId, payload, signWith(pair, CONTEXT, pair.keyId, payload));
      const err = signingError(() => open(bytes, opts));
      expect(err.code).toBe('SKEIN_ERR_SIG_MALFORMED');
    }
    const deep = Buffer.concat([Buffer.alloc(20, 0x81), hex('00')]);
    const err = signingError(() => open(envelopeByHand(1, CONTEXT, pair.keyId, deep, signWith(pair, CONTEXT, pair.keyId, deep)), opts));
    expect(err.details.reason).toBe('SKEIN_ERR_SIG_TOO_DEEP');
  });

  it('applies payload limits after verification', () => {
    const bytes = sign({ list: new Array(100).fill(0) }, pair, CONTEXT);
    expect(codeOf(() => open(bytes, { ...opts, limits: { maxItems: 50 } }))).toBe('SKEIN_ERR_SIG_MALFORMED');
    expect(open(bytes, { ...opts, limits: { maxItems: 101 } }).payload.list).toHaveLength(100);
  });

  it('sign refuses a key id that does not belong to the key, non-map payloads and bad contexts', () => {
    const other = generateKeyPair();
    expect(codeOf(() => sign({}, { privateKey: pair.privateKey, keyId: other.keyId }, CONTEXT))).toBe('SKEIN_ERR_SIG_KEY_INVALID');
    for (const p of [[1], new Uint8Array(1), new Date(0)]) expect(codeOf(() => sign(p, pair, CONTEXT))).toBe('SKEIN_ERR_SIG_UNENCODABLE');
    for (const c of ['', 'has space', 'x'.repeat(65), 'é']) expect(codeOf(() => sign({}, pair, c))).toBe('SKEIN_ERR_SIG_UNENCODABLE');
  });
});

describe('envelope: any single-byte change is refused', () => {
  const pair = generateKeyPair();
  const opts: OpenOptions = { trustedKeys: trust(pair), context: CONTEXT };

  it('at every position of one envelope, for several replacement values', () => {
    const bytes = Buffer.from(sign({ name: 'agent-a', addr: '10.0.0.5:7443', ts: 1_700_000_000_000, caps: ['py', 'gpu'], load: 0.5 }, pair, CONTEXT));
    expect(open(bytes, opts).keyId).toBe(pair.keyId);
    for (let i = 0; i < bytes.length; i++) {
      for (const delta of [0x01, 0x02, 0x10, 0x80, 0xff]) {
        const copy = Buffer.from(bytes);
        copy[i] = copy[i]! ^ delta;
        expect(() => open(copy, opts), `byte ${i} ^ ${delta}`).toThrow(SigningError);
      }
    }
    // Truncations and extensions too.
    for (let n = 0; n < bytes.length; n++) expect(() => open(bytes.subarray(0, n), opts)).toThrow(SigningError);
    expect(() => open(Buffer.concat([bytes, Buffer.from([0])]), opts)).toThrow(SigningError);
  });

  it('for random payloads, positions and values', () => {
    const payloadArb = fc.dictionary(
      fc.string({ maxLength: 12 }),
      fc.oneof(fc.integer(), fc.string({ maxLength: 30 }), fc.boolean(), fc.uint8Array({ maxLength: 20 }), fc.array(fc.integer(), { maxLength: 5 })),
      { maxKeys: 8, noNullPrototype: true },
    );
    fc.assert(
      fc.property(payloadArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (payload, pos, delta) => {
        const bytes = Buffer.from(sign(payload, pair, CONTEXT));
        expect(open(bytes, opts).payload).toEqual(payload);
        const i = pos % bytes.length;
        bytes[i] = bytes[i]! ^ delta;
        expect(() => open(bytes, opts)).toThrow(SigningError);
      }),
      { numRuns: 500 },
    );
  });
});
