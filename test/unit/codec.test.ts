import { encode } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBody, encodeBody, MAX_DEPTH, mediaTypeOf, parseCallBody } from '../../agent/codec/index.ts';
import { SkeinError } from '../../common/errors/index.ts';

const badRequest = (fn: () => unknown, message: RegExp) => {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(SkeinError);
  expect((caught as SkeinError).code).toBe('SKEIN_ERR_BAD_REQUEST');
  expect((caught as SkeinError).message).toMatch(message);
};

/** Doubles beyond 2^53 whose shortest digits are not their value: refused by design (json-check.test.ts). */
const inexactDigits = (v: unknown) => {
  let found = false;
  JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === 'number' && !Number.isSafeInteger(x) && Number.isInteger(x) && Math.abs(x) < 1e21 && BigInt(String(x)) !== BigInt(x)) found = true;
    return x;
  });
  return found;
};

describe('media types', () => {
  it.each([
    ['application/cbor', 'application/cbor'],
    ['Application/JSON; charset=utf-8', 'application/json'],
    ['text/plain', undefined],
    [undefined, undefined],
  ])('%s → %s', (header, expected) => expect(mediaTypeOf(header)).toBe(expected));
});

describe('round trips', () => {
  it('JSON-compatible values survive CBOR and JSON encoding', () => {
    // Normalised through JSON first: JSON has no -0, and that is not what this checks.
    const json = fc
      .jsonValue({ maxDepth: 5 })
      .map((v) => JSON.parse(JSON.stringify(v)) as unknown)
      .filter((v) => !inexactDigits(v));
    fc.assert(
      fc.property(json, (value) => {
        for (const type of ['application/cbor', 'application/json'] as const) {
          expect(decodeBody(type, encodeBody(type, { v: value }))).toEqual({ v: value });
        }
      }),
      { numRuns: 200 },
    );
  });

  it('random bytes never crash the CBOR decoder: a value or a 400', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeBody('application/cbor', bytes);
        } catch (err) {
          expect((err as SkeinError).code).toBe('SKEIN_ERR_BAD_REQUEST');
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('refusals', () => {
  it('values JSON cannot carry to Python', () => {
    // cbor-x tags a bare Uint8Array (tag 64, a typed array): a tag, not a byte string.
    badRequest(() => decodeBody('application/cbor', encode({ args: [new Uint8Array([1])] })), /body.args\[0\]: CBOR tagged value is not supported/);
    badRequest(() => decodeBody('application/cbor', encode({ args: [new Date(0)] })), /body.args\[0\]: CBOR tagged value is not supported/);
    badRequest(() => decodeBody('application/cbor', encode({ args: [undefined] })), /body.args\[0\]: CBOR undefined/);
    badRequest(() => decodeBody('application/cbor', encode({ args: [Number.NaN] })), /non-finite/);
    badRequest(
      () => decodeBody('application/cbor', encode({ args: [2n ** 70n + 1n] })),
      /body.args\[0\]: integer 1180591620717411303425 cannot be represented exactly \(it would arrive as 1\.1805916207174113e\+21\)/,
    );
    // {"args": [-0.0]} with a half-precision -0.0 (cbor-x itself encodes -0 as 0).
    const negativeZero = Buffer.concat([Buffer.from([0xa1, 0x64]), Buffer.from('args'), Buffer.from([0x81, 0xf9, 0x80, 0x00])]);
    badRequest(() => decodeBody('application/cbor', negativeZero), /body.args\[0\]: negative zero/);
  });

  it('CBOR byte strings are bytes: a plain Uint8Array (not a Buffer), not walked by the depth check', () => {
    const body = Buffer.concat([Buffer.from([0xa1, 0x64]), Buffer.from('args'), Buffer.from([0x82, 0x43, 1, 2, 3, 0x40])]);
    const decoded = decodeBody('application/cbor', body) as { args: Uint8Array[] };
    expect(decoded.args).toEqual([new Uint8Array([1, 2, 3]), new Uint8Array(0)]);
    expect(decoded.args.map((b) => b.constructor)).toEqual([Uint8Array, Uint8Array]);
    const big = new Uint8Array(1024 * 1024);
    const t = performance.now();
    expect(parseCallBody({ args: [big] }).args[0]).toBe(big);
    expect(performance.now() - t).toBeLessThan(50);
  });

  it('a decoded byte string is a copy: reusing the input buffer (a stream parser does) cannot change it', () => {
    const input = new Uint8Array(encodeBody('application/cbor', { args: [new Uint8Array([0, 255])] }));
    const value = decodeBody('application/cbor', input) as { args: Uint8Array[] };
    input.fill(0x65);
    expect(value.args[0]).toEqual(new Uint8Array([0, 255]));
  });

  it('bytes in a response: a CBOR byte string, or {"$bytes": base64} in JSON', () => {
    const value = { result: [new Uint8Array([0xfb, 0xff]), { k: Buffer.from('hi') }, 'text'] };
    expect(Buffer.from(encodeBody('application/cbor', { b: new Uint8Array([1, 2]) })).toString('hex')).toBe('b90001' + '6162' + '420102'); // a map (cbor-x writes a 16-bit count), "b", bytes 01 02 untagged
    expect(JSON.parse(Buffer.from(encodeBody('application/json', value)).toString())).toEqual({ result: [{ $bytes: '+/8=' }, { k: { $bytes: 'aGk=' } }, 'text'] });
    expect(Buffer.from(encodeBody('application/json', { result: new Uint8Array(0) })).toString()).toBe('{"result":{"$bytes":""}}');
  });

  it('a JSON request object shaped like {"$bytes": …} stays an ordinary object', () => {
    expect(decodeBody('application/json', Buffer.from('{"args":[{"$bytes":"AAE="}]}'))).toEqual({ args: [{ $bytes: 'AAE=' }] });
  });

  it('CBOR 64-bit integers that a double holds exactly are numbers, not refusals', () => {
    expect(decodeBody('application/cbor', encode({ args: [2n ** 53n + 2n, 2n ** 53n - 1n, -(2n ** 53n) + 1n] }))).toEqual({ args: [2 ** 53 + 2, 2 ** 53 - 1, -(2 ** 53) + 1] });
    badRequest(() => decodeBody('application/cbor', encode({ args: [2n ** 60n] })), /integer 1152921504606846976 cannot be represented exactly \(it would arrive as 1152921504606847000\)/);
  });

  it('non-string map keys are refused, "__proto__" stays an ordinary key', () => {
    badRequest(() => decodeBody('application/cbor', encode({ args: [new Map([[1, 'a']])] })), /body.args\[0\]: map key 1 is not a string/);
    const decoded = decodeBody('application/cbor', encode(new Map<string, unknown>([['kwargs', new Map([['__proto__', { x: 1 }]])]]))) as { kwargs: Record<string, unknown> };
    expect(Object.getPrototypeOf(decoded.kwargs)).toBe(Object.prototype);
    expect(Object.keys(decoded.kwargs)).toEqual(['__proto__']);
  });

  it('nesting deeper than the limit', () => {
    let deep: unknown = 1;
    for (let i = 0; i < MAX_DEPTH + 2; i++) deep = [deep];
    badRequest(() => decodeBody('application/cbor', encode({ args: [deep] })), /nesting deeper than 64/);
    badRequest(() => parseCallBody({ args: [deep] }), /nesting deeper than 64/);
  });

  it('body shape', () => {
    badRequest(() => parseCallBody([]), /must be an object/);
    badRequest(() => parseCallBody({ args: {} }), /"args" must be an array/);
    badRequest(() => parseCallBody({ kwargs: [] }), /"kwargs" must be an object/);
    badRequest(() => parseCallBody({ kwargs: { 'not-ident': 1 } }), /not a Python identifier/);
    badRequest(() => parseCallBody({ extra: 1 }), /unknown body field "extra"/);
    expect(parseCallBody({})).toEqual({ args: [], kwargs: {} });
  });
});
