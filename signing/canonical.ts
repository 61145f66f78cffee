/**
 * Canonical CBOR: the one byte sequence skein signs for a given value.
 *
 * A signature is over bytes, not values; if a value had two valid encodings, a relay could
 * re-encode a signed object (or a verifier could accept a variant the signer never produced)
 * and caches, deduplication and replay checks keyed on bytes would disagree. So the encoder
 * below is hand-written (small enough to audit, byte-exact) and the decoder accepts only what
 * that encoder produces.
 *
 * The profile is RFC 8949 §4.2.1 core deterministic encoding restricted to the JSON-like
 * data model plus byte strings:
 *   - integers (numbers that are safe integers, and bigints in [-2^64, 2^64-1]) in the
 *     shortest head form; decoded back as numbers when safe, as bigints otherwise;
 *   - every other finite number as a float64 (0xfb). This is a documented deviation from
 *     §4.2.2 "preferred serialization" (which picks the shortest float that round-trips):
 *     JavaScript numbers carry no int/float distinction, so "integer-valued → int, else
 *     float64" is the simplest rule that still gives exactly one encoding per value. The
 *     decoder therefore rejects float16/float32 and any float64 holding a safe integer;
 *     NaN and ±Infinity are refused (they have no JSON form either);
 *   - text strings (well-formed UTF-8), byte strings (Uint8Array), arrays, maps with text
 *     keys (plain objects), true, false, null. No tags, no undefined, no other simple values;
 *   - definite lengths only;
 *   - map keys sorted bytewise by their encodings. Keys are all text strings, so this is the
 *     same order as RFC 7049's "length first, then lexicographic" (the length lives in the
 *     head, and a longer length never has a smaller head): both rules agree here;
 *   - object properties whose value is `undefined` are omitted (as JSON.stringify does).
 *
 * Decoding enforces limits (bytes, nesting depth, total items) while it reads, before any
 * allocation sized by the input, and finally re-encodes the value and compares bytes.
 *
 * @example
 *   encodeCanonical({ b: [2, 3], a: 1 })            // a2 61 61 01 61 62 82 02 03
 *   decodeCanonical(Buffer.from('a26161016162820203', 'hex'), { maxDepth: 4 })
 */
import { SigningError } from './errors.ts';

export type CanonicalValue = null | boolean | number | bigint | string | Uint8Array | readonly CanonicalValue[] | CanonicalMap;

export interface CanonicalMap {
  readonly [key: string]: CanonicalValue;
}

export interface DecodeLimits {
  /** Largest input accepted, in bytes. */
  maxBytes?: number;
  /** Deepest nesting of arrays/maps; a top-level array or map is depth 1. */
  maxDepth?: number;
  /** Total array elements plus map entries across the whole value. */
  maxItems?: number;
}

/** Defaults sized for advertisements and other small signed objects. */
export const DEFAULT_LIMITS: Readonly<Required<DecodeLimits>> = Object.freeze({
  maxBytes: 64 * 1024,
  maxDepth: 16,
  maxItems: 4096,
});

const MAX_UINT64 = (1n << 64n) - 1n;
const MIN_NEGINT64 = -(1n << 64n);
// A lone surrogate has no UTF-8 form: Buffer.from would silently turn it into U+FFFD, so two
// different strings would share one encoding. Refuse instead.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// fatal: malformed UTF-8 throws; ignoreBOM: a leading U+FEFF is content, not a marker to strip.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/** Growable output buffer; the result is a copy of the written part only. */
class Writer {
  private buf = Buffer.allocUnsafe(256);
  private len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }

  bytes(data: Uint8Array): void {
    this.ensure(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
  }

  /** Major type + argument in the shortest form (RFC 8949 §4.2.1, first bullet). */
  head(major: number, arg: number | bigint): void {
    const mt = major << 5;
    if (typeof arg === 'bigint') {
      if (arg <= BigInt(Number.MAX_SAFE_INTEGER)) return this.head(major, Number(arg));
      this.ensure(9);
      this.buf[this.len++] = mt | 27;
      this.buf.writeBigUInt64BE(arg, this.len);
      this.len += 8;
    } else if (arg < 24) {
      this.byte(mt | arg);
    } else if (arg <= 0xff) {
      this.ensure(2);
      this.buf[this.len++] = mt | 24;
      this.buf[this.len++] = arg;
    } else if (arg <= 0xffff) {
      this.ensure(3);
      this.buf[this.len++] = mt | 25;
      this.len = this.buf.writeUInt16BE(arg, this.len);
    } else if (arg <= 0xffffffff) {
      this.ensure(5);
      this.buf[this.len++] = mt | 26;
      this.len = this.buf.writeUInt32BE(arg, this.len);
    } else {
      this.ensure(9);
      this.buf[this.len++] = mt | 27;
      this.buf.writeBigUInt64BE(BigInt(arg), this.len);
      this.len += 8;
    }
  }

  float64(v: number): void {
    this.ensure(9);
    this.buf[this.len++] = 0xfb;
    this.len = this.buf.writeDoubleBE(v, this.len);
  }

  result(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

/** Where in the value the encoder is: property names and array indexes, formatted only on error. */
type Path = (string | number)[];

function formatPath(path: Readonly<Path>): string {
  return path.length ? path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('') : '(root)';
}

function unencodable(path: Readonly<Path>, why: string): SigningError {
  const at = formatPath(path);
  return new SigningError('SKEIN_ERR_SIG_UNENCODABLE', `cannot canonically encode ${at}: ${why}`, { path: at });
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function utf8Bytes(s: string, path: Readonly<Path>): Buffer {
  if (LONE_SURROGATE.test(s)) throw unencodable(path, 'string holds a lone UTF-16 surrogate (no UTF-8 form)');
  return Buffer.from(s, 'utf8');
}

/** Map key order: by encoded bytes. Same major type, so: shorter UTF-8 first, then bytewise. */
function compareKeys(a: { key: Buffer }, b: { key: Buffer }): number {
  return a.key.length - b.key.length || Buffer.compare(a.key, b.key);
}

function encodeValue(w: Writer, v: unknown, depth: number, maxDepth: number, path: Path): void {
  switch (typeof v) {
    case 'boolean':
      w.byte(v ? 0xf5 : 0xf4);
      return;
    case 'number':
      if (!Number.isFinite(v)) throw unencodable(path, `${v} has no canonical form`);
      // -0 is a safe integer and encodes as 0: integers carry no sign of zero.
      if (Number.isSafeInteger(v)) w.head(v >= 0 ? 0 : 1, v >= 0 ? v : -1 - v);
      else w.float64(v);
      return;
    case 'bigint':
      if (v > MAX_UINT64 || v < MIN_NEGINT64) throw unencodable(path, 'integer outside the 64-bit CBOR range');
      w.head(v >= 0n ? 0 : 1, v >= 0n ? v : -1n - v);
      return;
    case 'string': {
      const data = utf8Bytes(v, path);
      w.head(3, data.length);
      w.bytes(data);
      return;
    }
    case 'object':
      break;
    default:
      throw unencodable(path, `${typeof v} is not a CBOR data item`);
  }
  if (v === null) {
    w.byte(0xf6);
    return;
  }
  if (v instanceof Uint8Array) {
    w.head(2, v.length);
    w.bytes(v);
    return;
  }
  // Containers: the depth bound also stops cycles from recursing forever.
  if (depth + 1 > maxDepth) {
    throw new SigningError('SKEIN_ERR_SIG_TOO_DEEP', `nesting deeper than ${maxDepth} at ${formatPath(path)}`, { maxDepth });
  }
  if (Array.isArray(v)) {
    w.head(4, v.length);
    for (let i = 0; i < v.length; i++) {
      const item: unknown = v[i];
      path.push(i);
      if (item === undefined) throw unencodable(path, 'undefined (or a hole) in an array');
      encodeValue(w, item, depth + 1, maxDepth, path);
      path.pop();
    }
    return;
  }
  if (!isPlainObject(v)) throw unencodable(path, `${v.constructor?.name ?? 'object'} is not a plain object`);
  const obj = v as Record<string, unknown>;
  const entries: { key: Buffer; value: unknown; name: string }[] = [];
  for (const name of Object.keys(obj)) {
    const value = obj[name];
    if (value === undefined) continue;
    entries.push({ key: utf8Bytes(name, path), value, name });
  }
  if (entries.length > 1) entries.sort(compareKeys);
  w.head(5, entries.length);
  for (const e of entries) {
    w.head(3, e.key.length);
    w.bytes(e.key);
    path.push(e.name);
    encodeValue(w, e.value, depth + 1, maxDepth, path);
    path.pop();
  }
}

/**
 * Encodes `value` in skein's canonical CBOR. Throws SKEIN_ERR_SIG_UNENCODABLE for values
 * outside the profile and SKEIN_ERR_SIG_TOO_DEEP past `maxDepth` (default 16).
 *
 * @example
 *   encodeCanonical([1, 'a', new Uint8Array([0xff])]).toString('hex') // '83016161' + '41ff'
 */
export function encodeCanonical(value: unknown, options: { maxDepth?: number } = {}): Buffer {
  const w = new Writer();
  encodeValue(w, value, 0, options.maxDepth ?? DEFAULT_LIMITS.maxDepth, []);
  return w.result();
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

function malformed(why: string, offset: number): SigningError {
  return new SigningError('SKEIN_ERR_SIG_MALFORMED', `malformed CBOR at byte ${offset}: ${why}`, { offset });
}

function noncanonical(why: string, offset: number): SigningError {
  return new SigningError('SKEIN_ERR_SIG_NONCANONICAL', `non-canonical CBOR at byte ${offset}: ${why}`, { offset });
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`limit ${name} must be a positive integer, got ${v}`);
  return v;
}

class Reader {
  private pos = 0;
  private items = 0;
  private readonly buf: Buffer;

  constructor(
    bytes: Uint8Array,
    private readonly maxDepth: number,
    private readonly maxItems: number,
  ) {
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  get done(): boolean {
    return this.pos === this.buf.length;
  }

  private need(n: number, at: number): void {
    if (n > this.remaining) throw malformed(`truncated: needs ${n} more bytes, ${this.remaining} left`, at);
  }

  /** The head's argument; refuses any longer-than-necessary form. */
  private argument(ai: number, at: number): number | bigint {
    if (ai < 24) return ai;
    let v: number | bigint;
    let min: number;
    switch (ai) {
      case 24:
        this.need(1, at);
        v = this.buf[this.pos]!;
        this.pos += 1;
        min = 24;
        break;
      case 25:
        this.need(2, at);
        v = this.buf.readUInt16BE(this.pos);
        this.pos += 2;
        min = 0x100;
        break;
      case 26:
        this.need(4, at);
        v = this.buf.readUInt32BE(this.pos);
        this.pos += 4;
        min = 0x10000;
        break;
      case 27: {
        this.need(8, at);
        const big = this.buf.readBigUInt64BE(this.pos);
        this.pos += 8;
        if (big < 0x100000000n) throw noncanonical('integer or length not in its shortest form', at);
        return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
      }
      default:
        throw malformed(`reserved additional information ${ai}`, at);
    }
    if (v < min) throw noncanonical('integer or length not in its shortest form', at);
    return v;
  }

  /** A length or count: anything beyond the input left is truncated input, refused before allocating. */
  private count(ai: number, at: number, bytesPerItem: number): number {
    const n = this.argument(ai, at);
    if (typeof n === 'bigint' || n * bytesPerItem > this.remaining) {
      throw malformed(`truncated: declares ${n} items/bytes, ${this.remaining} bytes left`, at);
    }
    return n;
  }

  /** Depth is checked before the count is even read, so deep garbage reports TOO_DEEP. */
  private enter(depth: number, at: number): void {
    if (depth > this.maxDepth) {
      throw new SigningError('SKEIN_ERR_SIG_TOO_DEEP', `CBOR nesting deeper than ${this.maxDepth} at byte ${at}`, { offset: at, maxDepth: this.maxDepth });
    }
  }

  private addItems(n: number, at: number): void {
    this.items += n;
    if (this.items > this.maxItems) {
      throw new SigningError('SKEIN_ERR_SIG_OVERSIZE', `CBOR holds more than ${this.maxItems} items (byte ${at})`, { offset: at, maxItems: this.maxItems });
    }
  }

  item(depth: number): CanonicalValue {
    const at = this.pos;
    this.need(1, at);
    const ib = this.buf[this.pos++]!;
    const major = ib >> 5;
    const ai = ib & 0x1f;

    if (major === 7) return this.simple(ai, at);
    if (ai === 31) {
      if (major >= 2 && major <= 5) throw noncanonical('indefinite-length item', at);
      throw malformed(`indefinite length on major type ${major}`, at);
    }

    switch (major) {
      case 0: {
        return this.argument(ai, at);
      }
      case 1: {
        const n = this.argument(ai, at);
        return typeof n === 'number' && n < Number.MAX_SAFE_INTEGER ? -1 - n : -1n - BigInt(n);
      }
      case 2: {
        const len = this.count(ai, at, 1);
        const out = new Uint8Array(this.buf.subarray(this.pos, this.pos + len)); // a copy
        this.pos += len;
        return out;
      }
      case 3: {
        const len = this.count(ai, at, 1);
        try {
          return utf8.decode(this.buf.subarray(this.pos, this.pos + len));
        } catch {
          throw malformed('text string is not valid UTF-8', at);
        } finally {
          this.pos += len;
        }
      }
      case 4: {
        this.enter(depth + 1, at);
        const n = this.count(ai, at, 1);
        this.addItems(n, at);
        const out: CanonicalValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.item(depth + 1);
        return out;
      }
      case 5: {
        this.enter(depth + 1, at);
        const n = this.count(ai, at, 2);
        this.addItems(n, at);
        const out: Record<string, CanonicalValue> = {};
        let prevKey: Buffer | undefined;
        for (let i = 0; i < n; i++) {
          const keyAt = this.pos;
          if (this.remaining > 0 && this.buf[keyAt]! >> 5 !== 3) throw malformed('map key is not a text string', keyAt);
          const key = this.item(depth + 1) as string;
          const keyBytes = this.buf.subarray(keyAt, this.pos);
          if (prevKey) {
            const order = Buffer.compare(prevKey, keyBytes);
            if (order === 0) throw malformed(`duplicate map key "${key}"`, keyAt);
            if (order > 0) throw noncanonical(`map key "${key}" out of order`, keyAt);
          }
          prevKey = keyBytes;
          const value = this.item(depth + 1);
          // A "__proto__" key must become data, never the object's prototype. defineProperty
          // does that but is slow in JavaScriptCore, so it is kept for that one key.
          if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
          else out[key] = value;
        }
        return out;
      }
      default: // 6: tags
        throw malformed('tags are not supported', at);
    }
  }

  private simple(ai: number, at: number): CanonicalValue {
    switch (ai) {
      case 20:
        return false;
      case 21:
        return true;
      case 22:
        return null;
      case 25:
      case 26:
        throw noncanonical('float16/float32 (skein encodes non-integers as float64)', at);
      case 27: {
        this.need(8, at);
        const v = this.buf.readDoubleBE(this.pos);
        this.pos += 8;
        if (!Number.isFinite(v)) throw malformed('NaN and infinities are not supported', at);
        if (Number.isSafeInteger(v)) throw noncanonical('float holding an integer (must be encoded as an integer)', at);
        return v;
      }
      case 31:
        throw malformed('unexpected "break"', at);
      default:
        throw malformed(`unsupported simple value ${ai === 24 ? '(one-byte)' : ai}`, at);
    }
  }
}

/**
 * Decodes canonical CBOR and rejects anything else: SKEIN_ERR_SIG_OVERSIZE (bytes or items
 * over the limit), SKEIN_ERR_SIG_TOO_DEEP, SKEIN_ERR_SIG_NONCANONICAL (valid CBOR, wrong
 * encoding), SKEIN_ERR_SIG_MALFORMED (everything else). Limits default to DEFAULT_LIMITS.
 *
 * @example
 *   decodeCanonical(Buffer.from('1818', 'hex'))  // 24
 *   decodeCanonical(Buffer.from('1817', 'hex'))  // throws SKEIN_ERR_SIG_NONCANONICAL
 */
export function decodeCanonical(bytes: Uint8Array, limits: DecodeLimits = {}): CanonicalValue {
  const maxBytes = positiveInt('maxBytes', limits.maxBytes ?? DEFAULT_LIMITS.maxBytes);
  const maxDepth = positiveInt('maxDepth', limits.maxDepth ?? DEFAULT_LIMITS.maxDepth);
  const maxItems = positiveInt('maxItems', limits.maxItems ?? DEFAULT_LIMITS.maxItems);
  if (!(bytes instanceof Uint8Array)) throw malformed('input is not a byte array', 0);
  if (bytes.length > maxBytes) {
    throw new SigningError('SKEIN_ERR_SIG_OVERSIZE', `CBOR input of ${bytes.length} bytes exceeds the ${maxBytes}-byte limit`, { size: bytes.length, maxBytes });
  }
  const reader = new Reader(bytes, maxDepth, maxItems);
  const value = reader.item(0);
  if (!reader.done) throw malformed(`${reader.remaining} trailing bytes after the value`, bytes.length - reader.remaining);
  // Belt and braces: the checks above should already guarantee this. If they ever miss a
  // case, the value still cannot have a second accepted encoding.
  const again = encodeCanonical(value, { maxDepth });
  if (!again.equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
    throw noncanonical('re-encoding the decoded value gives different bytes', 0);
  }
  return value;
}
