import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBody } from '../../agent/codec/index.ts';
import { jsonProblem, utf8ErrorOffset } from '../../agent/codec/json-check.ts';
import { SkeinError } from '../../common/errors/index.ts';

const decodeJson = (text: string | Buffer) => decodeBody('application/json', typeof text === 'string' ? Buffer.from(text) : text);
const refusal = (text: string | Buffer): string => {
  try {
    decodeJson(text);
  } catch (err) {
    expect((err as SkeinError).code).toBe('SKEIN_ERR_BAD_REQUEST');
    return (err as SkeinError).message;
  }
  throw new Error(`accepted ${String(text)}`);
};

/** Integral doubles beyond 2^53 that JSON.stringify writes as inexact digits: refused by design. */
function hasUnsafeInteger(v: unknown): boolean {
  let found = false;
  JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === 'number' && Math.abs(x) > Number.MAX_SAFE_INTEGER && Math.abs(x) < 1e21 && !Number.isSafeInteger(x) && BigInt(String(x)) !== BigInt(x)) found = true;
    return x;
  });
  return found;
}

describe('JSON bodies: nothing JSON.parse would change is accepted', () => {
  it.each([
    ['{"args":[1e400]}', 'body.args[0]: number 1e400 is out of range (beyond ±1.8e308)'],
    ['{"args":[-1e400]}', 'body.args[0]: number -1e400 is out of range (beyond ±1.8e308)'],
    ['{"args":[1e-400]}', 'body.args[0]: number 1e-400 is out of range (underflows to 0)'],
    ['{"args":[-1e-400]}', 'body.args[0]: number -1e-400 is out of range (underflows to 0)'],
    ['{"args":[9007199254740993]}', 'body.args[0]: integer 9007199254740993 cannot be represented exactly (it would arrive as 9007199254740992); send it as a string'],
    ['{"args":[-9007199254740993]}', 'body.args[0]: integer -9007199254740993 cannot be represented exactly (it would arrive as -9007199254740992); send it as a string'],
    ['{"args":[1152921504606846976]}', 'body.args[0]: integer 1152921504606846976 cannot be represented exactly (it would arrive as 1152921504606847000); send it as a string'],
    ['{"args":[4.162086461809585e16]}', 'body.args[0]: number 4.162086461809585e16 cannot be represented exactly (it would arrive as the integer 41620864618095850); send it as a string'],
    ['{"args":[12345678901234567890123]}', 'body.args[0]: integer 12345678901234567890123 cannot be represented exactly (it would arrive as 1.2345678901234568e+22); send it as a string'],
    [`{"args":[1${'0'.repeat(400)}]}`, `body.args[0]: integer 1${'0'.repeat(39)}… is out of range (beyond ±1.8e308)`],
    [`{"args":[0.${'0'.repeat(400)}1]}`, `body.args[0]: number 0.${'0'.repeat(38)}… is out of range (underflows to 0)`],
    ['{"args":[-0]}', 'body.args[0]: negative zero cannot be passed on exactly (JSON writes it as 0); send 0'],
    ['{"args":[-0.0]}', 'body.args[0]: negative zero cannot be passed on exactly (JSON writes it as 0); send 0'],
    ['{"args":[-0e7]}', 'body.args[0]: negative zero cannot be passed on exactly (JSON writes it as 0); send 0'],
    ['{"args":["\\ud800"]}', 'body.args[0]: lone surrogate \\ud800 in a string: strings must be valid Unicode'],
    ['{"args":["a\\udc00b"]}', 'body.args[0]: lone surrogate \\udc00 in a string: strings must be valid Unicode'],
    ['{"args":["\\ud800\\u0041"]}', 'body.args[0]: lone surrogate \\ud800 in a string: strings must be valid Unicode'],
    ['{"args":["\\\\ud800", "x\\uDBFF"]}', 'body.args[1]: lone surrogate \\uDBFF in a string: strings must be valid Unicode'],
    ['{"kwargs":{"\\ud800":1}}', 'body.kwargs: lone surrogate \\ud800 in a key: strings must be valid Unicode'],
    ['{"kwargs":{"a":1,"a":2}}', 'body.kwargs: duplicate key "a": each key may appear once'],
    ['{"kwargs":{"a":1,"\\u0061":2}}', 'body.kwargs: duplicate key "a": each key may appear once'],
    ['{"args":[],"args":[1]}', 'body: duplicate key "args": each key may appear once'],
    ['{"args":[{"x":[1,2,{"y":1e999}]}]}', 'body.args[0].x[2].y: number 1e999 is out of range (beyond ±1.8e308)'],
    [`{"kwargs":{${Array.from({ length: 20 }, (_, i) => `"k${i}":${i}`).join(',')},"k13":0}}`, 'body.kwargs: duplicate key "k13": each key may appear once'],
  ])('%s', (text, message) => expect(refusal(text)).toBe(message));

  it('invalid UTF-8 is refused with the offset of the first bad byte', () => {
    const body = (bad: number[]) => Buffer.concat([Buffer.from('{"args":["é'), Buffer.from(bad), Buffer.from('"]}')]);
    expect(refusal(body([0xff]))).toBe('body: invalid UTF-8 at byte 12');
    expect(refusal(body([0xed, 0xa0, 0x80]))).toBe('body: invalid UTF-8 at byte 12'); // an encoded surrogate
    expect(refusal(body([0xc0, 0xaf]))).toBe('body: invalid UTF-8 at byte 12'); // overlong "/"
    expect(refusal(body([0xf4, 0x90, 0x80, 0x80]))).toBe('body: invalid UTF-8 at byte 12'); // past U+10FFFF
    expect(refusal(Buffer.from([0x7b, 0xe2, 0x82]))).toBe('body: invalid UTF-8 at byte 1'); // truncated
  });

  it('what a double holds exactly passes unchanged', () => {
    const text =
      '{"args":[9007199254740991,-9007199254740991,9007199254740994,66123540622781050,100000000000000000000,1e17,1e21,1000000000000000000000,6.02214076e23,0,0.0,0e-400,1.5,5e-324,1.7976931348623157e308,0.1,1e23,"\\ud83d\\ude00","\\\\ud800","é\\n\\"",true,false,null],"kwargs":{"a":{"a":1},"b":[{"a":2}]}}';
    expect(decodeJson(text)).toEqual(JSON.parse(text));
  });

  it('never refuses what JSON.stringify writes from ordinary values, whatever their strings hold', () => {
    const value = fc
      .jsonValue({ maxDepth: 4 })
      .map((v) => JSON.parse(JSON.stringify(v)) as unknown)
      .filter((v) => !hasUnsafeInteger(v));
    fc.assert(
      fc.property(value, fc.string({ unit: 'grapheme' }), (v, s) => {
        const text = JSON.stringify({ args: [v, s] });
        expect(jsonProblem(text, 'body')).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a number exactly when its journey to Python and back would change it', () => {
    // The oracle follows the value: JSON.parse, then JSON.stringify towards Python, which reads
    // digits without fraction or exponent as an exact int and the rest as the nearest double.
    const numbers = fc.oneof(
      fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String),
      fc.tuple(fc.integer({ min: -9, max: 9 }), fc.nat(99), fc.integer({ min: -400, max: 400 })).map(([a, b, e]) => `${a}.${b}e${e}`),
      fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
    );
    fc.assert(
      fc.property(numbers, (token) => {
        const integer = !/[.eE]/.test(token);
        const value = Number(token);
        let unchanged = Number.isFinite(value) && !Object.is(value, -0) && !(value === 0 && /[1-9]/.test(token.split(/[eE]/)[0]!));
        if (unchanged) {
          const written = JSON.stringify(value);
          const meant = integer ? BigInt(token) : BigInt(Number.isInteger(value) ? value : 0);
          if (/[.eE]/.test(written)) unchanged = Number(written) === value && (!integer || BigInt(value) === meant);
          else unchanged = BigInt(written) === (integer ? meant : BigInt(value));
        }
        expect(jsonProblem(`[${token}]`, 'x') === undefined).toBe(unchanged);
      }),
      { numRuns: 3000 },
    );
  });

  it('utf8ErrorOffset agrees with the native validator', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 16 }), (bytes) => {
        const valid = new TextDecoder('utf-8', { fatal: true });
        let ok = true;
        try {
          valid.decode(bytes);
        } catch {
          ok = false;
        }
        expect(utf8ErrorOffset(bytes) === -1).toBe(ok);
      }),
      { numRuns: 2000 },
    );
  });
});
