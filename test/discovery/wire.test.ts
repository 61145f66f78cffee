/**
 * The verifier's hot path (agent/discovery/wire.ts) re-implements reading the frame and the
 * envelope, and decodes common payloads without re-encoding them. These tests hold it to
 * signing/'s reference implementation (open, decodeCanonical): same accept/reject decisions,
 * same values.
 */
import { sign as edSign, verify as edVerify } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ADVERT_CONTEXT, PAYLOAD_LIMITS, encodeAdvert } from '../../agent/discovery/advert.ts';
import { decodeCanonicalFast, FALLBACK } from '../../signing/index.ts';
import { parseEnvelope, parseFrame } from '../../agent/discovery/wire.ts';
import { decodeCanonical, encodeCanonical, generateKeyPair, open, publicKeyFromRaw, sign } from '../../signing/index.ts';
import { FLEET, payload } from './helpers.ts';

const key = generateKeyPair();
const verifyKey = publicKeyFromRaw(key.publicKey);
const trustedKeys = new Map([[key.keyId, key.publicKey]]);

type Outcome = { ok: true; payload: unknown } | { ok: false };

/** signing's open(), the reference. */
function reference(envelope: Uint8Array): Outcome {
  try {
    return { ok: true, payload: open(envelope, { trustedKeys, context: ADVERT_CONTEXT, limits: PAYLOAD_LIMITS }).payload };
  } catch {
    return { ok: false };
  }
}

function decodeBoth(bytes: Uint8Array): unknown {
  const fast = decodeCanonicalFast(bytes, PAYLOAD_LIMITS.maxDepth, PAYLOAD_LIMITS.maxItems);
  return fast === FALLBACK ? decodeCanonical(bytes, { maxBytes: Math.max(1, bytes.length), ...PAYLOAD_LIMITS }) : fast;
}

/** The verifier's steps (wire.ts + one verify), as verifier.ts runs them. */
function hotPath(envelope: Uint8Array): Outcome {
  const env = parseEnvelope(envelope);
  if (typeof env === 'string' || env.keyId !== key.keyId) return { ok: false };
  const signed = Buffer.concat([Buffer.from([0x83]), envelope.subarray(2, env.signedEnd)]);
  if (!edVerify(null, signed, verifyKey, env.signature)) return { ok: false };
  let value: unknown;
  try {
    value = decodeBoth(env.payload);
  } catch {
    return { ok: false };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) return { ok: false };
  return { ok: true, payload: value };
}

/** An envelope over arbitrary payload bytes, correctly signed (what a trusted but buggy or hostile signer could send). */
function envelopeOver(payloadBytes: Uint8Array): Uint8Array {
  const sig = edSign(null, encodeCanonical([ADVERT_CONTEXT, key.keyId, payloadBytes]), key.privateKey);
  return encodeCanonical([1, ADVERT_CONTEXT, key.keyId, payloadBytes, sig]);
}

const expectSame = (envelope: Uint8Array) => {
  const a = hotPath(envelope);
  const b = reference(envelope);
  expect(a.ok, Buffer.from(envelope).toString('hex')).toBe(b.ok);
  if (a.ok && b.ok) expect({ ...(a.payload as object) }).toEqual({ ...(b.payload as object) });
};

// Payload-shaped values: mostly the fast subset, sometimes other types (forcing the fallback).
const arbValue = fc.oneof(
  { weight: 4, arbitrary: fc.nat() },
  { weight: 1, arbitrary: fc.constantFrom(0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER) },
  { weight: 4, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 10 }) },
  { weight: 2, arbitrary: fc.array(fc.string({ maxLength: 12 }), { maxLength: 30 }) },
  { weight: 1, arbitrary: fc.constantFrom(true, false, null, -1, 0.5, new Uint8Array([1])) },
  { weight: 1, arbitrary: fc.array(fc.nat(), { maxLength: 3 }) },
);
const arbPayload = fc.dictionary(fc.oneof(fc.string({ maxLength: 16 }), fc.constantFrom('__proto__', 'v', 'seq', 'constructor')), arbValue, { maxKeys: 16 });

describe('wire: the frame and envelope readers agree with signing/', () => {
  it('splits a real advert into views of its parts', () => {
    const bytes = encodeAdvert(payload(), key);
    const frame = parseFrame(bytes);
    if (typeof frame === 'string') throw new Error(frame);
    expect(Buffer.from(frame.fleet).toString()).toBe(FLEET);
    expect(frame.endorsement).toBeNull();
    const env = parseEnvelope(frame.envelope);
    if (typeof env === 'string') throw new Error(env);
    expect(env.keyId).toBe(key.keyId);
    // The signed bytes are the envelope's middle behind a 0x83 head.
    const signed = Buffer.concat([Buffer.from([0x83]), frame.envelope.subarray(2, env.signedEnd)]);
    expect(signed.equals(encodeCanonical([ADVERT_CONTEXT, key.keyId, env.payload]))).toBe(true);
    expect(decodeCanonicalFast(env.payload, 2, 200)).toEqual(payload());
  });

  it('every single-byte change of an envelope: the hot path and open() both reject', () => {
    const envelope = sign(payload(), key, ADVERT_CONTEXT);
    expectSame(envelope);
    for (let i = 0; i < envelope.length; i++) {
      for (const mask of [0x01, 0x20, 0x80, 0xff]) {
        const e = Buffer.from(envelope);
        e[i]! ^= mask;
        expectSame(e);
      }
    }
    for (let n = 0; n < envelope.length; n++) expectSame(envelope.subarray(0, n));
  });

  it('signed payloads of every shape: same decision and same value (fast-check)', () => {
    fc.assert(
      fc.property(arbPayload, (p) => {
        let bytes: Uint8Array;
        try {
          bytes = encodeCanonical(p);
        } catch {
          return; // not encodable (lone surrogates): nothing to sign
        }
        expectSame(envelopeOver(bytes));
      }),
      { numRuns: 1500 },
    );
  });

  it('signed NON-canonical or broken payloads: the hot path rejects exactly what open() rejects (fast-check)', () => {
    const base = encodeCanonical(payload());
    fc.assert(
      fc.property(
        fc.oneof(
          // one byte changed
          fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 1, max: 255 })).map(([i, m]) => {
            const b = Buffer.from(base);
            b[i]! ^= m;
            return b;
          }),
          // bytes inserted or removed
          fc.tuple(fc.nat(base.length), fc.uint8Array({ maxLength: 4 }), fc.nat(3)).map(([i, ins, del]) => Buffer.concat([base.subarray(0, i), ins, base.subarray(i + del)])),
          // payload maps encoded by hand: long-form heads, keys out of order, duplicates
          arbPayload.chain((p) => fc.constant(handEncode(p))),
        ),
        (bytes) => expectSame(envelopeOver(bytes)),
      ),
      { numRuns: 3000 },
    );
  });

  it('decodeCanonicalFast never accepts what decodeCanonical refuses, and returns the same value', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          arbPayload.map((p) => handEncode(p)),
        ),
        (bytes) => {
          const fast = decodeCanonicalFast(bytes, PAYLOAD_LIMITS.maxDepth, PAYLOAD_LIMITS.maxItems);
          if (fast === FALLBACK) return;
          expect({ ...fast }).toEqual({ ...(decodeCanonical(bytes, { maxBytes: Math.max(1, bytes.length), ...PAYLOAD_LIMITS }) as object) });
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('decodeCanonicalFast refuses every non-shortest head (each width, uints and lengths) as decodeCanonical does', () => {
    const cases: [string, number][] = [
      ['18', 23],
      ['19', 255],
      ['1a', 65535],
      ['1b', 2 ** 32 - 1], // uint one width too wide
      ['18', 0],
      ['19', 0],
      ['1a', 0],
      ['1b', 0],
    ];
    const widths: Record<string, number> = { '18': 1, '19': 2, '1a': 4, '1b': 8 };
    for (const [ai, n] of cases) {
      const arg = Buffer.alloc(widths[ai]!);
      if (arg.length === 8) arg.writeUInt32BE(n >>> 0, 4);
      else arg.writeUIntBE(n, 0, arg.length);
      for (const major of [0, 3, 4]) {
        if (major !== 0 && n > 30) continue; // keep lengths inside the input
        const h = Buffer.concat([Buffer.from([(major << 5) | parseInt(ai, 16)]), arg]);
        const value = major === 0 ? h : major === 3 ? Buffer.concat([h, Buffer.alloc(n, 0x61)]) : Buffer.concat([h, Buffer.alloc(n, 0x60)]);
        const bytes = Buffer.concat([Buffer.from([0xa1, 0x61, 0x6b]), value]);
        expect(decodeCanonicalFast(bytes, 2, 100), bytes.toString('hex')).toBe(FALLBACK);
        expect(() => decodeCanonical(bytes, { maxDepth: 2, maxItems: 100 })).toThrow(/shortest/);
      }
    }
    // And the shortest forms are read.
    for (const n of [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      expect(decodeCanonicalFast(encodeCanonical({ k: n }), 2, 10)).toEqual({ k: n });
    }
    expect(decodeCanonicalFast(encodeCanonical({ k: 2n ** 53n }), 2, 10)).toBe(FALLBACK); // a bigint: decodeCanonical's job
  });

  it('decodeCanonicalFast handles real adverts without falling back, and honours depth and item limits', () => {
    const bytes = encodeCanonical(payload({ goodbye: true }));
    expect(decodeCanonicalFast(bytes, 2, 200)).toEqual(payload({ goodbye: true }));
    expect(decodeCanonicalFast(bytes, 1, 200)).toBe(FALLBACK); // arrays need depth 2
    expect(decodeCanonicalFast(bytes, 2, 14)).toBe(FALLBACK); // 13 entries + 4 array items
    expect(decodeCanonicalFast(bytes, 2, 17)).not.toBe(FALLBACK);
    const proto = decodeCanonicalFast(encodeCanonical(JSON.parse('{"__proto__": 1}')), 2, 10);
    expect(proto).not.toBe(FALLBACK);
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype);
    expect(Object.keys(proto as object)).toEqual(['__proto__']);
  });
});

/**
 * A CBOR map encoded by hand with random deviations from canonical form (non-shortest heads,
 * unsorted or duplicated keys), so both decoders see non-canonical input signed by a trusted key.
 */
function handEncode(p: Record<string, unknown>): Buffer {
  let salt = 0;
  for (const k of Object.keys(p)) salt = (salt * 31 + k.length + 7) >>> 0;
  // Every few heads (depending on the salt), one wider than needed: 1, 2, 4 or 8 bytes.
  let counter = salt;
  const head = (major: number, n: number): Buffer => {
    counter = (counter * 1103515245 + 12345) >>> 0;
    const minimal = n < 24 ? 0 : n < 256 ? 1 : n < 65536 ? 2 : n < 2 ** 32 ? 4 : 8;
    const widths = [0, 1, 2, 4, 8].filter((w) => w >= minimal);
    const width = (counter >>> 16) % 5 === 0 ? widths[(counter >>> 8) % widths.length]! : minimal;
    if (width === 0) return Buffer.from([(major << 5) | n]);
    const b = Buffer.alloc(1 + width);
    b[0] = (major << 5) | { 1: 24, 2: 25, 4: 26, 8: 27 }[width as 1 | 2 | 4 | 8];
    if (width === 8) {
      b.writeUInt32BE(Math.floor(n / 2 ** 32), 1);
      b.writeUInt32BE(n >>> 0, 5);
    } else {
      b.writeUIntBE(n, 1, width);
    }
    return b;
  };
  const item = (v: unknown): Buffer => {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return head(0, v);
    if (typeof v === 'string') {
      const s = Buffer.from(v);
      return Buffer.concat([head(3, s.length), s]);
    }
    if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(item)]);
    try {
      return encodeCanonical(v as never);
    } catch {
      return Buffer.from([0xf6]);
    }
  };
  const keys = Object.keys(p);
  if (salt & 4) keys.reverse();
  if (salt & 8 && keys.length) keys.push(keys[0]!);
  return Buffer.concat([head(5, keys.length), ...keys.flatMap((k) => [item(k), item(p[k])])]);
}
