/**
 * Zero-copy readers of canonical CBOR for hot paths (the discovery verifier reads thousands of
 * adverts a second). They accept only what decodeCanonical (canonical.ts) accepts and return
 * the same values; on anything else they say so, and the caller falls back to the full
 * decoder, which stays the one authority on what is rejected and why. test/discovery/wire.test.ts
 * fuzzes each against it.
 */

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Scratch for readCborHead's length output (single-threaded: no allocation per head). */
export const scratchLen = [0];

/**
 * Reads a definite-length head of `major` at `pos`, refusing a non-shortest form; stores the
 * length in out[0] and returns where the data starts, or -1 when the head is of another
 * major type, not in shortest form, or the data would run past `end`.
 */
export function readCborHead(b: Uint8Array, pos: number, end: number, major: number, out: number[]): number {
  if (pos >= end) return -1;
  const ib = b[pos]!;
  if (ib >> 5 !== major) return -1;
  const ai = ib & 0x1f;
  let len: number;
  let next: number;
  if (ai < 24) {
    len = ai;
    next = pos + 1;
  } else if (ai === 24) {
    if (pos + 2 > end) return -1;
    len = b[pos + 1]!;
    if (len < 24) return -1;
    next = pos + 2;
  } else if (ai === 25) {
    if (pos + 3 > end) return -1;
    len = (b[pos + 1]! << 8) | b[pos + 2]!;
    if (len < 0x100) return -1;
    next = pos + 3;
  } else if (ai === 26) {
    if (pos + 5 > end) return -1;
    len = b[pos + 1]! * 0x1000000 + ((b[pos + 2]! << 16) | (b[pos + 3]! << 8) | b[pos + 4]!);
    if (len < 0x10000) return -1;
    next = pos + 5;
  } else {
    return -1; // 8-byte lengths cannot fit a datagram; 28–31 are reserved or indefinite
  }
  if (next + len > end) return -1;
  out[0] = len;
  return next;
}

/** "Not in the fast subset: ask decodeCanonical." */
export const FALLBACK = Symbol('fallback');

/**
 * A fast decoder for the common shape of advert payloads: a map of text keys whose values are
 * unsigned safe integers, text, `true`, or arrays of text. It accepts only what
 * signing's decodeCanonical accepts (shortest heads, keys strictly ascending by their
 * encoded bytes, well-formed UTF-8, depth and item limits, no trailing bytes) and returns the
 * same value; on ANYTHING else — an error or merely another type — it returns FALLBACK, and
 * the caller runs decodeCanonical, which stays the one authority on what is rejected and why.
 * (decodeCanonical re-encodes every value to prove canonicality; that costs ~25 µs per
 * advert, as much as a third of an Ed25519 verify. For this subset the checks below prove the
 * same thing while reading.) test/discovery fuzzes it against decodeCanonical.
 */
export function decodeCanonicalFast(bytes: Uint8Array, maxDepth: number, maxItems: number): Record<string, unknown> | typeof FALLBACK {
  // A Buffer view, for its fast latin1 slicing of ASCII strings (no copy).
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = b.length;
  if (end === 0 || b[0]! >> 5 !== 5 || maxDepth < 1) return FALLBACK;
  let p = readCborHead(b, 0, end, 5, scratchLen);
  if (p < 0) return FALLBACK;
  const entries = scratchLen[0]!;
  let items = entries;
  if (items > maxItems) return FALLBACK;
  const out: Record<string, unknown> = {};
  let prevKeyStart = -1;
  let prevKeyEnd = -1;
  for (let i = 0; i < entries; i++) {
    const keyStart = p;
    p = readCborHead(b, p, end, 3, scratchLen);
    if (p < 0) return FALLBACK;
    const keyEnd = p + scratchLen[0]!;
    const key = text(b, p, keyEnd);
    if (key === undefined) return FALLBACK;
    if (prevKeyStart >= 0 && compareBytes(b, prevKeyStart, prevKeyEnd, keyStart, keyEnd) >= 0) return FALLBACK;
    prevKeyStart = keyStart;
    prevKeyEnd = keyEnd;
    p = keyEnd;
    if (p >= end) return FALLBACK;
    const ib = b[p]!;
    const major = ib >> 5;
    let value: unknown;
    if (major === 0) {
      const q = readUint(b, p, end);
      if (q < 0) return FALLBACK;
      value = uintValue;
      p = q;
    } else if (major === 3) {
      const q = readCborHead(b, p, end, 3, scratchLen);
      if (q < 0) return FALLBACK;
      p = q + scratchLen[0]!;
      value = text(b, q, p);
      if (value === undefined) return FALLBACK;
    } else if (ib === 0xf5) {
      value = true;
      p += 1;
    } else if (major === 4) {
      if (maxDepth < 2) return FALLBACK;
      let q = readCborHead(b, p, end, 4, scratchLen);
      if (q < 0) return FALLBACK;
      const n = scratchLen[0]!;
      items += n;
      if (items > maxItems) return FALLBACK;
      const arr: string[] = new Array(n);
      for (let j = 0; j < n; j++) {
        const r = readCborHead(b, q, end, 3, scratchLen);
        if (r < 0) return FALLBACK;
        q = r + scratchLen[0]!;
        const s = text(b, r, q);
        if (s === undefined) return FALLBACK;
        arr[j] = s;
      }
      value = arr;
      p = q;
    } else {
      return FALLBACK;
    }
    if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    else out[key] = value;
  }
  return p === end ? out : FALLBACK;
}

let uintValue = 0;

/** An unsigned integer head in shortest form whose value is a safe integer; sets uintValue. */
function readUint(b: Uint8Array, pos: number, end: number): number {
  const ai = b[pos]! & 0x1f;
  let v: number;
  let next: number;
  if (ai < 24) {
    v = ai;
    next = pos + 1;
  } else if (ai === 24) {
    next = pos + 2;
    if (next > end) return -1;
    v = b[pos + 1]!;
    if (v < 24) return -1;
  } else if (ai === 25) {
    next = pos + 3;
    if (next > end) return -1;
    v = b[pos + 1]! * 0x100 + b[pos + 2]!;
    if (v < 0x100) return -1;
  } else if (ai === 26) {
    next = pos + 5;
    if (next > end) return -1;
    v = b[pos + 1]! * 0x1000000 + b[pos + 2]! * 0x10000 + b[pos + 3]! * 0x100 + b[pos + 4]!;
    if (v < 0x10000) return -1;
  } else if (ai === 27) {
    next = pos + 9;
    if (next > end) return -1;
    const hi = b[pos + 1]! * 0x1000000 + b[pos + 2]! * 0x10000 + b[pos + 3]! * 0x100 + b[pos + 4]!;
    const lo = b[pos + 5]! * 0x1000000 + b[pos + 6]! * 0x10000 + b[pos + 7]! * 0x100 + b[pos + 8]!;
    // Shortest form needs a value ≥ 2^32 (hi > 0); a number (not a bigint) needs ≤ 2^53 − 1.
    if (hi === 0 || hi > 0x1fffff) return -1;
    v = hi * 0x100000000 + lo;
  } else {
    return -1;
  }
  uintValue = v;
  return next;
}

function compareBytes(b: Uint8Array, as: number, ae: number, bs: number, be: number): number {
  const n = Math.min(ae - as, be - bs);
  for (let i = 0; i < n; i++) {
    const d = b[as + i]! - b[bs + i]!;
    if (d !== 0) return d;
  }
  return ae - as - (be - bs);
}

/** Well-formed UTF-8 in b[start, end) as a string, or undefined. ASCII skips the decoder. */
function text(b: Uint8Array, start: number, end: number): string | undefined {
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (b[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return (b as Buffer).toString('latin1', start, end); // b is a Buffer: see decodeCanonicalFast
  try {
    return utf8.decode(b.subarray(start, end));
  } catch {
    return undefined;
  }
}
