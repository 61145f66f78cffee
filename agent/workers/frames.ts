/**
 * Worker protocol v2 (docs/protocol.md): length-prefixed frames both ways over the worker's
 * stdin and its private protocol descriptor. Every frame is a 10-byte header, then `length`
 * bytes of payload:
 *
 *   u32 length (big-endian) · u8 kind · u8 encoding · u32 call id (big-endian) · payload
 *
 * Kinds and encodings are ASCII letters so a hex dump reads. JSON payloads are the fast path
 * (Python's C-accelerated json); CBOR carries values holding bytes.
 */
export const PROTOCOL_VERSION = 2;
export const HEADER_BYTES = 10;

/** Frame kinds (one byte). Agent → worker: INIT, CALL, GRANT, STOP. Worker → agent: the rest. */
export const KIND = {
  INIT: 0x49, // I: {v, worker, routines, limits, …} (JSON), call id 0
  CALL: 0x43, // C: {r: routine, a: args, k: kwargs, c: initial credits} (JSON or CBOR)
  GRANT: 0x47, // G: more credits for the running call's generator (JSON integer)
  STOP: 0x53, // S: close the running call's generator (no payload)
  HELLO: 0x48, // H: {ready, v, pid, python, layers} or {ready: false, error} (JSON), call id 0
  RESULT: 0x52, // R: the routine's return value (JSON or CBOR)
  ITEM: 0x59, // Y: one item a generator yielded (JSON or CBOR); spends one credit
  DONE: 0x44, // D: the generator ended (no payload)
  ERROR: 0x45, // E: {type, message, trace} (JSON)
  LEFT: 0x4c, // L: ["timer"|"trace"|"threads", …] before the call's last frame (JSON)
} as const;

export const ENC = {
  NONE: 0x6e, // n: empty payload
  JSON: 0x6a, // j: UTF-8 JSON text
  CBOR: 0x63, // c: one CBOR data item (RFC 8949), no tags
} as const;

/** The encodings each worker → agent kind may use; anything else is a protocol violation. */
export const WORKER_KINDS: ReadonlyMap<number, readonly number[]> = new Map([
  [KIND.HELLO, [ENC.JSON]],
  [KIND.RESULT, [ENC.JSON, ENC.CBOR]],
  [KIND.ITEM, [ENC.JSON, ENC.CBOR]],
  [KIND.DONE, [ENC.NONE]],
  [KIND.ERROR, [ENC.JSON]],
  [KIND.LEFT, [ENC.JSON]],
]);

/** Largest call id; ids wrap around after it (0 is the init/hello id). */
export const MAX_CALL_ID = 0xffff_ffff;

/** One frame as bytes: the header and the payload (a string is written as UTF-8) in one buffer, so one write. */
export function encodeFrame(kind: number, enc: number, id: number, payload: string | Uint8Array = ''): Buffer {
  const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  const buf = Buffer.allocUnsafe(HEADER_BYTES + length);
  buf.writeUInt32BE(length, 0);
  buf[4] = kind;
  buf[5] = enc;
  buf.writeUInt32BE(id, 6);
  if (typeof payload === 'string') buf.write(payload, HEADER_BYTES, 'utf8');
  else buf.set(payload, HEADER_BYTES);
  return buf;
}

/** Writes a frame header into the first HEADER_BYTES of `buf`, whose rest is the payload. */
export function writeHeader(buf: Buffer, kind: number, enc: number, id: number): Buffer {
  buf.writeUInt32BE(buf.length - HEADER_BYTES, 0);
  buf[4] = kind;
  buf[5] = enc;
  buf.writeUInt32BE(id, 6);
  return buf;
}

/** A kind or encoding byte as the log shows it: the letter, or hex when it is not a letter. */
export function byteName(b: number): string {
  return (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ? `"${String.fromCharCode(b)}"` : `0x${b.toString(16).padStart(2, '0')}`;
}
