/**
 * What JSON would change without a word on the way caller → agent → Python → agent → caller,
 * found by one pass over text that JSON.parse has already accepted:
 * - numbers JSON.parse turns into Infinity or 0 (1e400, 1e-400), and integers beyond 2^53
 *   that do not come back as written: JSON.stringify writes a double as its shortest digits,
 *   which Python (and any reader with big integers) takes as an exact int, so 9007199254740993
 *   would arrive as 9007199254740992 and 2^60 as 1152921504606847000;
 * - a fraction or exponent from 2^53 up to 1e21 whose digits, so written, are not its value
 *   (4.162086461809585e16 would arrive as the int 41620864618095850);
 * - negative zero, which JSON.stringify writes as 0;
 * - lone surrogate escapes ("\ud800"), which no UTF-8 encoder can carry;
 * - duplicate object keys: JSON.parse keeps the last, RFC 8259 §4 leaves it to the parser, so
 *   skein refuses them.
 * Other fractions and exponents read as the nearest double, as every JSON reader that uses
 * doubles does (0.1, 1e23, 1.00000000000000001): that is not reported.
 *
 * Reading the text again costs less than a JSON.parse reviver with `context.source` (which
 * Bun has and Node 20 lacks, and which cannot see duplicate keys); see bench/json-check.ts.
 * Paths are built only when something is found.
 */

export interface JsonProblem {
  /** Where, as `root.key[index]`; for a duplicate or malformed key, the object holding it. */
  path: string;
  message: string;
}

interface Frame {
  array: boolean;
  /** Arrays: index of the current element. */
  index: number;
  /** Objects: the current key, and whether the next string is a key. */
  key: string;
  expectKey: boolean;
  /** Keys seen so far: a list while the object is small, a Set once it grows. */
  keys: string[] | Set<string> | undefined;
}

// 15 digits stay below 2^53: shorter numbers need no conversion to be known exact.
const SAFE_DIGITS = 15;
// The smallest double is 4.9e-324 and the largest 1.8e308: a decimal without an exponent
// needs over 300 characters to leave that range.
const MAX_PLAIN_DECIMAL = 300;
// From here on JSON.stringify writes numbers with an exponent, which every reader takes as a float.
const EXPONENT_FROM = 1e21;
// Up to this many keys a linear search beats building a Set.
const SMALL_OBJECT = 8;

export const NEGATIVE_ZERO = 'negative zero cannot be passed on exactly (JSON writes it as 0); send 0';

/**
 * Why `value` (read from `text`) cannot cross JSON unchanged, or undefined when it can. With
 * `integer`, `text` is an integer in canonical form that the caller meant exactly (a JSON
 * integer token, a CBOR integer). Shared with the CBOR decoder.
 */
export function numberProblem(value: number, text: string, integer: boolean): string | undefined {
  if (!Number.isFinite(value)) return `${integer ? 'integer' : 'number'} ${shown(text)} is out of range (beyond ±1.8e308)`;
  if (Object.is(value, -0)) return NEGATIVE_ZERO;
  const magnitude = Math.abs(value);
  if (magnitude <= Number.MAX_SAFE_INTEGER) return undefined;
  // What JSON.stringify writes (on to Python, back to the caller): digits that readers with
  // big integers take exactly, or from 1e21 on an exponent that every reader takes as a double.
  const written = String(value);
  if (magnitude < EXPONENT_FROM) {
    if (integer ? written === text : BigInt(written) === BigInt(value)) return undefined;
  } else if (!integer || BigInt(text) === BigInt(value)) {
    return undefined;
  }
  return `${integer ? 'integer' : 'number'} ${shown(text)} cannot be represented exactly (it would arrive as ${integer ? '' : 'the integer '}${written}); send it as a string`;
}

/**
 * The first value in `text` (valid JSON, already accepted by JSON.parse) that JSON.parse would
 * have changed, or undefined when there is none.
 */
export function jsonProblem(text: string, root: string): JsonProblem | undefined {
  const stack: Frame[] = [];
  let top: Frame | undefined;
  const n = text.length;
  // Position of the next backslash at or after the scan, so strings without escapes cost one
  // indexOf for their closing quote.
  let backslash = text.indexOf('\\');
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      let end: number;
      for (;;) {
        end = text.indexOf('"', j);
        if (backslash !== -1 && backslash < j) backslash = text.indexOf('\\', j);
        if (backslash === -1 || backslash > end) break;
        escaped = true;
        if (text.charCodeAt(backslash + 1) !== 0x75 /* u */) {
          j = backslash + 2;
          continue;
        }
        const unit = parseInt(text.slice(backslash + 2, backslash + 6), 16);
        j = backslash + 6;
        if (unit < 0xd800 || unit > 0xdfff) continue;
        if (unit <= 0xdbff && text.charCodeAt(j) === 0x5c && text.charCodeAt(j + 1) === 0x75) {
          const low = parseInt(text.slice(j + 2, j + 6), 16);
          if (low >= 0xdc00 && low <= 0xdfff) {
            j += 6;
            continue;
          }
        }
        const inKey = top !== undefined && !top.array && top.expectKey;
        return problem(stack, root, `lone surrogate \\u${text.slice(backslash + 2, backslash + 6)} in a ${inKey ? 'key' : 'string'}: strings must be valid Unicode`, inKey);
      }
      if (top && !top.array && top.expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        if (seen(top, key)) return problem(stack, root, `duplicate key ${JSON.stringify(key)}: each key may appear once`, true);
        top.key = key;
      }
      i = end + 1;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      let integer = true;
      let exponent = false;
      let nonZero = c > 0x30;
      let intDigits = c === 0x2d ? 0 : 1;
      for (; j < n; j++) {
        const d = text.charCodeAt(j);
        if (d >= 0x30 && d <= 0x39) {
          if (exponent) continue;
          nonZero ||= d > 0x30;
          if (integer) intDigits++;
        } else if (d === 0x2e) integer = false;
        else if (d === 0x65 || d === 0x45) integer = !(exponent = true);
        else if (d !== 0x2b && d !== 0x2d) break;
      }
      const what = tokenProblem(text, i, j, integer, exponent, nonZero, intDigits);
      if (what) return problem(stack, root, what);
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      top = { array: c === 0x5b, index: 0, key: '', expectKey: true, keys: undefined };
      stack.push(top);
      i++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      top = stack[stack.length - 1];
      i++;
    } else if (c === 0x2c /* , */) {
      if (top!.array) top!.index++;
      else top!.expectKey = true;
      i++;
    } else if (c === 0x3a /* : */) {
      top!.expectKey = false;
      i++;
    } else if (c === 0x66 /* false */) {
      i += 5;
    } else if (c === 0x74 || c === 0x6e /* true, null */) {
      i += 4;
    } else {
      i++; // whitespace
    }
  }
  return undefined;
}

function tokenProblem(text: string, start: number, end: number, integer: boolean, exponent: boolean, nonZero: boolean, intDigits: number): string | undefined {
  // Fast path: without an exponent, few integer digits and a bounded length the number is
  // safe, and only negative zero (-0, -0.0) is left to refuse.
  if (!exponent && intDigits <= SAFE_DIGITS && end - start < MAX_PLAIN_DECIMAL) {
    return !nonZero && text.charCodeAt(start) === 0x2d ? NEGATIVE_ZERO : undefined;
  }
  const token = text.slice(start, end);
  const value = Number(token);
  // A mantissa with a non-zero digit that became 0 underflowed.
  if (value === 0 && nonZero) return `number ${shown(token)} is out of range (underflows to 0)`;
  return numberProblem(value, token, integer);
}

/** Records `key` in the object's frame; true when it was already there. */
function seen(frame: Frame, key: string): boolean {
  const keys = frame.keys;
  if (keys === undefined) {
    frame.keys = [key];
    return false;
  }
  if (Array.isArray(keys)) {
    if (keys.includes(key)) return true;
    keys.push(key);
    if (keys.length > SMALL_OBJECT) frame.keys = new Set(keys);
    return false;
  }
  if (keys.has(key)) return true;
  keys.add(key);
  return false;
}

function problem(stack: Frame[], root: string, message: string, atObject = false): JsonProblem {
  let path = root;
  const last = atObject ? stack.length - 1 : stack.length;
  for (let k = 0; k < last; k++) {
    const f = stack[k]!;
    path += f.array ? `[${f.index}]` : `.${f.key}`;
  }
  return { path, message };
}

function shown(token: string): string {
  return token.length > 40 ? `${token.slice(0, 40)}…` : token;
}

/**
 * Offset of the first byte that breaks UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF, no truncated sequence); -1 when the bytes are valid. Only called
 * after the native isUtf8() said no, to name the place.
 */
export function utf8ErrorOffset(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    let max = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) need = 2;
    else if (b >= 0xf0 && b <= 0xf4) need = 3;
    else return i;
    // The second byte's range rules out overlong forms, surrogates and code points past U+10FFFF.
    min = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    if (b === 0xed) max = 0x9f;
    else if (b === 0xf4) max = 0x8f;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || c < min || c > max) return i;
      min = 0x80;
      max = 0xbf;
    }
    i += need + 1;
  }
  return -1;
}
