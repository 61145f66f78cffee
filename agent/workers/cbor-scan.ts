/**
 * A worker's CBOR payload, measured and validated BEFORE it is decoded: one pass over the raw
 * bytes, allocating nothing, that refuses anything the bootstrap's encoder never writes (tags,
 * indefinite lengths, undefined and other simple values, non-text map keys, invalid UTF-8,
 * lengths past the end, trailing bytes) and estimates what decoding would cost the agent with
 * the same per-shape costs as the JSON scan (frame-reader.ts). CBOR is denser than JSON text
 * — an empty array is one byte — so the estimate matters more here, not less.
 */
import { isUtf8 } from 'node:buffer';
import { BYTE_COST, CONTAINER_COST, ELEMENT_COST, MEMBER_COST } from './decode-cost.ts';

export type CborScan = { ok: true; depth: number; cost: number } | { ok: false; limit: 'decode' | 'protocol'; what: string };

// CBOR major types (RFC 8949 §3.1), shared with cbor-encode.ts.
export const MAJOR_UINT = 0;
export const MAJOR_NINT = 1;
export const MAJOR_BYTES = 2;
export const MAJOR_TEXT = 3;
export const MAJOR_ARRAY = 4;
export const MAJOR_MAP = 5;
const MAJOR_TAG = 6;
// Major type 7: false, true, null, and half, single and double floats.
const SIMPLE_OK = new Set([20, 21, 22, 25, 26, 27]);

export function scanCbor(buf: Uint8Array, budget: number): CborScan {
  const n = buf.length;
  const bad = (what: string): CborScan => ({ ok: false, limit: 'protocol', what: `CBOR payload: ${what}` });
  // Open containers: items still expected in each, and whether it is a map (keys at even counts).
  const remaining: number[] = [];
  const isMap: boolean[] = [];
  let left = 1; // items expected at the current level (the top level holds one)
  let inMap = false;
  let depth = 0;
  let maxDepth = 0;
  let cost = BYTE_COST * n;
  let i = 0;
  for (;;) {
    while (left === 0) {
      if (remaining.length === 0) return i === n ? { ok: true, depth: maxDepth, cost } : bad(`${n - i} bytes after the value`);
      left = remaining.pop()!;
      inMap = isMap.pop()!;
      depth--;
    }
    if (i >= n) return bad('truncated');
    const atKey = inMap && left % 2 === 0;
    left--;
    const at = i;
    const ib = buf[i++]!;
    const major = ib >> 5;
    const info = ib & 31;
    let arg: number;
    if (info < 24) arg = info;
    else if (info <= 27) {
      const size = 1 << (info - 24);
      if (n - i < size) return bad('truncated');
      arg = 0;
      for (let k = 0; k < size; k++) arg = arg * 256 + buf[i + k]!;
      i += size;
    } else return bad(`additional information ${info} (indefinite length or reserved) at byte ${at}`);
    if (atKey && major !== MAJOR_TEXT) return bad(`a map key of major type ${major} at byte ${at}; keys are text`);
    switch (major) {
      case MAJOR_UINT:
      case MAJOR_NINT:
        break;
      case MAJOR_BYTES:
      case MAJOR_TEXT:
        if (arg > n - i) return bad('a string runs past the end');
        if (major === MAJOR_TEXT && !isUtf8(buf.subarray(i, i + arg))) return bad(`invalid UTF-8 in a text string at byte ${i}`);
        i += arg;
        // A byte string becomes an object of its own (a view on the frame's buffer).
        if (major === MAJOR_BYTES) cost += CONTAINER_COST;
        break;
      case MAJOR_ARRAY:
      case MAJOR_MAP: {
        const items = major === MAJOR_MAP ? 2 * arg : arg;
        // Every item takes at least one byte: a count past the end is a lie, refused before anything trusts it.
        if (items > n - i) return bad('a container holds more items than bytes remain');
        cost += CONTAINER_COST + (major === MAJOR_MAP ? MEMBER_COST * arg : ELEMENT_COST * arg);
        remaining.push(left);
        isMap.push(inMap);
        left = items;
        inMap = major === MAJOR_MAP;
        if (++depth > maxDepth) maxDepth = depth;
        if (cost > budget) return { ok: false, limit: 'decode', what: `CBOR payload would cost over ${budget} bytes to decode` };
        break;
      }
      case MAJOR_TAG:
        return bad(`a tag at byte ${at}`);
      default:
        if (!SIMPLE_OK.has(info)) return bad(`simple value ${info} at byte ${at}`);
    }
  }
}
