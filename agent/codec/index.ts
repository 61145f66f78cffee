/**
 * Request/response bodies: CBOR (RFC 8949) or JSON, chosen by Content-Type. A body may hold
 * what a routine can take: strings, numbers, booleans, null, arrays, maps with string keys,
 * and (CBOR only) byte strings, which reach Python as `bytes` (docs/calls.md#bytes); tags,
 * undefined, non-finite floats and over-deep nesting are refused with the path named.
 * Nothing is changed without a word: JSON text that JSON.parse would round, overflow or
 * replace (see json-check.ts), and invalid UTF-8, are refused the same way. JSON has no
 * bytes: a JSON request cannot send them (`{"$bytes": …}` in a request is an ordinary
 * object), and bytes in a JSON response are written as `{"$bytes": "<base64>"}`.
 */
import { isUtf8 } from 'node:buffer';
import { Decoder, Encoder } from 'cbor-x';
import { SkeinError } from '../../common/errors/index.ts';
import { PYTHON_IDENTIFIER_PATTERN } from '../../common/names/index.ts';
import { jsonProblem, numberProblem, utf8ErrorOffset } from './json-check.ts';

export type MediaType = 'application/cbor' | 'application/json';
export const MAX_DEPTH = 64;

// Plain objects and no record extension: the output must be standard CBOR any client decodes.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
// Maps decode as Map and are converted by toPlain(): cbor-x's own object conversion turns
// non-string keys into strings and renames "__proto__", changing data without a word.
const decoder = new Decoder({ useRecords: false, mapsAsObjects: false });

/** Maps a Content-Type header to a codec; undefined when unsupported. */
export function mediaTypeOf(header: string | undefined | null): MediaType | undefined {
  if (!header) return undefined;
  const base = header.split(';', 1)[0]!.trim().toLowerCase();
  if (base === 'application/cbor') return 'application/cbor';
  if (base === 'application/json') return 'application/json';
  return undefined;
}

export function encodeBody(type: MediaType, value: unknown): Uint8Array {
  if (type === 'application/cbor') return encoder.encode(value);
  // The replacer runs only for values that hold bytes: it would cost every other response a
  // call per member. It reads the holder's own member because JSON.stringify applies a
  // Buffer's toJSON before the replacer sees it.
  return Buffer.from(containsBytes(value) ? JSON.stringify(value, bytesAsJson) : JSON.stringify(value));
}

/** `{"$bytes": "<base64, standard alphabet, padded>"}`: how JSON responses carry bytes (docs/calls.md#bytes). */
function bytesAsJson(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const own = this[key];
  if (own instanceof Uint8Array) return { $bytes: Buffer.from(own.buffer, own.byteOffset, own.byteLength).toString('base64') };
  return value;
}

/** Whether a value holds a byte string anywhere (values here nest at most MAX_DEPTH levels). */
export function containsBytes(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (value instanceof Uint8Array) return true;
  if (Array.isArray(value)) {
    for (const v of value) if (typeof v === 'object' && v !== null && containsBytes(v)) return true;
    return false;
  }
  for (const k in value) {
    const v = (value as Record<string, unknown>)[k];
    if (typeof v === 'object' && v !== null && containsBytes(v)) return true;
  }
  return false;
}

export function decodeBody(type: MediaType, bytes: Uint8Array): unknown {
  if (type === 'application/json') return decodeJson(bytes);
  let value: unknown;
  try {
    value = decoder.decode(asBuffer(bytes));
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `body is not valid CBOR: ${(err as Error).message}`);
  }
  return toPlain(value, 'body', 0);
}

/**
 * A worker's CBOR payload (already validated by agent/workers/cbor-scan.ts) as plain values,
 * held to the same rules as a body: what JSON callers could not be given exactly (an integer
 * beyond 2^53 that does not come back digit for digit, -0, a non-finite float) throws a
 * SkeinError naming the path under `root`.
 */
export function decodeCborValue(bytes: Uint8Array, root: string): unknown {
  return toPlain(decoder.decode(asBuffer(bytes)), root, 0);
}

/**
 * cbor-x hands a byte string back as a slice of its input, so only a Buffer input tells a
 * byte string (a Buffer) from tag 64 (a bare Uint8Array, refused): a plain Uint8Array input
 * (what a client's stream parser holds under Node) is wrapped, without a copy.
 */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function decodeJson(bytes: Uint8Array): unknown {
  // toString('utf8') would turn invalid bytes into U+FFFD.
  if (!isUtf8(bytes)) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `body: invalid UTF-8 at byte ${utf8ErrorOffset(bytes)}`);
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `body is not valid JSON: ${(err as Error).message}`);
  }
  const problem = jsonProblem(text, 'body');
  if (problem) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${problem.path}: ${problem.message}`);
  return value;
}

export interface CallBody {
  args: unknown[];
  kwargs: Record<string, unknown>;
}

/** Validates `{ args?: [...], kwargs?: {...} }` and nothing else. */
export function parseCallBody(value: unknown): CallBody {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SkeinError('SKEIN_ERR_BAD_REQUEST', 'body must be an object like {"args": [...], "kwargs": {...}}');
  }
  const body = value as Record<string, unknown>;
  for (const key of Object.keys(body)) {
    if (key !== 'args' && key !== 'kwargs') throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `unknown body field "${key}" (allowed: args, kwargs)`);
  }
  const args = body.args ?? [];
  const kwargs = body.kwargs ?? {};
  if (!Array.isArray(args)) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', '"args" must be an array');
  if (typeof kwargs !== 'object' || kwargs === null || Array.isArray(kwargs)) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', '"kwargs" must be an object');
  for (const key of Object.keys(kwargs)) {
    if (!PYTHON_IDENTIFIER_PATTERN.test(key)) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `kwargs key ${JSON.stringify(key)} is not a Python identifier`);
  }
  checkDepth(args, 'args', 1);
  checkDepth(kwargs, 'kwargs', 1);
  return { args, kwargs: kwargs as Record<string, unknown> };
}

function checkDepth(value: unknown, path: string, depth: number): void {
  if (depth > MAX_DEPTH) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${path}: nesting deeper than ${MAX_DEPTH} levels`);
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return;
  if (Array.isArray(value)) value.forEach((v, i) => checkDepth(v, `${path}[${i}]`, depth + 1));
  else for (const [k, v] of Object.entries(value)) checkDepth(v, `${path}.${k}`, depth + 1);
}

/** Converts decoded CBOR into plain values (bytes as Uint8Array), refusing what JSON callers could not be given exactly. */
function toPlain(value: unknown, path: string, depth: number): unknown {
  if (depth > MAX_DEPTH) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${path}: nesting deeper than ${MAX_DEPTH} levels`);
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number': {
      if (!Number.isFinite(value)) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${path}: non-finite number ${value} cannot be passed to a routine`);
      const problem = numberProblem(value, String(value), false);
      if (problem) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${path}: ${problem}`);
      return value;
    }
    case 'bigint': {
      // cbor-x returns every 64-bit integer as a bigint, even one a double holds exactly.
      const problem = numberProblem(Number(value), String(value), true);
      if (problem) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${path}: ${problem}`);
      return Number(value);
    }
    case 'object': {
      if (value === null) return null;
      // cbor-x returns a byte string as a Buffer (a view on the input), and tag 64 (a typed
      // array) as a bare Uint8Array: only the first is a byte string, the second is refused
      // below as a tag. Handed on as a plain Uint8Array (Buffer's toJSON would turn it into
      // {type, data}), and copied: the input is often a reused buffer (a stream parser's, a
      // pipe's chunk), and a view on it would change under the value later — a memcpy, not a
      // re-encoding.
      if (Buffer.isBuffer(value)) return new Uint8Array(value);
      if (Array.isArray(value)) return value.map((v, i) => toPlain(v, `${path}[${i}]`, depth + 1));
      if (value instanceof Map) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of value) {
          if (typeof k !== 'string') throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${path}: map key ${String(k)} is not a string; routine arguments need string keys`);
          // defineProperty, not assignment: a "__proto__" key stays an ordinary own key.
          Object.defineProperty(out, k, { value: toPlain(v, `${path}.${k}`, depth + 1), enumerable: true, writable: true, configurable: true });
        }
        return out;
      }
      throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${path}: CBOR tagged value is not supported; use strings, numbers, booleans, null, byte strings, arrays and maps with string keys`);
    }
    default:
      throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${path}: CBOR ${typeof value} is not supported`);
  }
}
