/**
 * CBOR for a call whose arguments hold bytes (frames.ts, encoding "c"): exactly the subset
 * the bootstrap decodes. Written here rather than with cbor-x, which encodes an integer from
 * 2^32 up as a float64, so 2**40 would reach Python as 1099511627776.0 instead of an int;
 * here every integer JSON would send as an integer is a CBOR integer, other numbers are
 * float64, and byte strings are copied once, into the frame.
 */
import { MAJOR_ARRAY, MAJOR_BYTES, MAJOR_MAP, MAJOR_NINT, MAJOR_TEXT, MAJOR_UINT } from './cbor-scan.ts';

class Writer {
  #buf: Buffer;
  #at: number;

  constructor(reserve: number) {
    this.#buf = Buffer.allocUnsafe(256 + reserve);
    this.#at = reserve;
  }

  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#at + n));
    this.#buf.copy(next, 0, 0, this.#at);
    this.#buf = next;
  }

  head(major: number, n: number): void {
    this.#room(9);
    const b = this.#buf;
    const m = major << 5;
    if (n < 24) b[this.#at++] = m | n;
    else if (n < 0x100) {
      b[this.#at++] = m | 24;
      b[this.#at++] = n;
    } else if (n < 0x10000) {
      b[this.#at++] = m | 25;
      this.#at = b.writeUInt16BE(n, this.#at);
    } else if (n < 0x1_0000_0000) {
      b[this.#at++] = m | 26;
      this.#at = b.writeUInt32BE(n, this.#at);
    } else {
      b[this.#at++] = m | 27;
      this.#at = b.writeBigUInt64BE(BigInt(n), this.#at);
    }
  }

  float(v: number): void {
    this.#room(9);
    this.#buf[this.#at++] = 0xfb;
    this.#at = this.#buf.writeDoubleBE(v, this.#at);
  }

  byte(b: number): void {
    this.#room(1);
    this.#buf[this.#at++] = b;
  }

  text(s: string): void {
    const n = Buffer.byteLength(s);
    this.head(MAJOR_TEXT, n);
    this.#room(n);
    this.#at += this.#buf.write(s, this.#at, 'utf8');
  }

  bytes(v: Uint8Array): void {
    this.head(MAJOR_BYTES, v.byteLength);
    this.#room(v.byteLength);
    this.#buf.set(v, this.#at);
    this.#at += v.byteLength;
  }

  done(): Buffer {
    return this.#buf.subarray(0, this.#at);
  }
}

function write(w: Writer, v: unknown): void {
  switch (typeof v) {
    case 'string':
      return w.text(v);
    case 'boolean':
      return w.byte(v ? 0xf5 : 0xf4);
    case 'number':
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) return v >= 0 ? w.head(MAJOR_UINT, v) : w.head(MAJOR_NINT, -1 - v);
      return w.float(v);
    case 'object':
      if (v === null) return w.byte(0xf6);
      if (v instanceof Uint8Array) return w.bytes(v);
      if (Array.isArray(v)) {
        w.head(MAJOR_ARRAY, v.length);
        for (const x of v) write(w, x);
        return;
      }
      {
        const keys = Object.keys(v);
        w.head(MAJOR_MAP, keys.length);
        for (const k of keys) {
          w.text(k);
          write(w, (v as Record<string, unknown>)[k]);
        }
      }
      return;
    default:
      // The codec admits nothing else into a call; reaching here is a bug, not input.
      throw new TypeError(`cannot encode a ${typeof v} for a worker`);
  }
}

/**
 * One value as CBOR (strings, numbers, booleans, null, Uint8Array, arrays, plain objects),
 * after `reserve` bytes left for the caller (a frame header), so the bytes are copied once.
 */
export function encodeCbor(value: unknown, reserve = 0): Buffer {
  const w = new Writer(reserve);
  write(w, value);
  return w.done();
}
