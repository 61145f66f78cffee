/**
 * Splits a streamed call's response body into frames as its bytes arrive (docs/calls.md):
 * CBOR items back to back (application/cbor-seq, RFC 8742) or one JSON text per line
 * (application/x-ndjson). Every frame is bounded: bytes are only kept while they can still
 * form a frame of at most `maxFrameBytes`, so a server that never ends an item costs the
 * client that much memory, not more. Each byte is scanned once (the CBOR scanner resumes
 * where the last chunk ended), and a finished frame is decoded by the same codec as any
 * response body.
 *
 * @example
 *   const reader = new FrameReader('application/cbor-seq', 1 << 20);
 *   for (const frame of reader.push(chunk)) handle(frame); // {item} | {done, items} | {error}
 */
import { SkeinError } from '../../common/errors/index.ts';
import { decodeBody } from '../codec/index.ts';

export const STREAM_TYPES = ['application/cbor-seq', 'application/x-ndjson'] as const;
export type StreamType = (typeof STREAM_TYPES)[number];

/** Containers deeper than this are refused while scanning (the codec refuses past 64 anyway). */
const MAX_SCAN_DEPTH = 128;
const INDEFINITE = -1;

export class FrameReader {
  readonly type: StreamType;
  readonly maxFrameBytes: number;
  /** Bytes received and not yet returned as frames: buf[start, len). */
  #buf = Buffer.alloc(0);
  #start = 0;
  #len = 0;
  /** Where scanning resumes: the bytes from start to it belong to the frame being read. */
  #pos = 0;
  /** CBOR: items still expected by each open container (INDEFINITE until its break byte). */
  #open: number[] = [];

  constructor(type: StreamType, maxFrameBytes: number) {
    this.type = type;
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes held for a frame that has not ended yet. */
  get pendingBytes(): number {
    return this.#len - this.#start;
  }

  /** Takes the next chunk of the body; returns the frames it completed, decoded. */
  push(chunk: Uint8Array): unknown[] {
    this.#append(chunk);
    const frames: unknown[] = [];
    for (let end = this.#next(); end !== undefined; end = this.#next()) {
      const bytes = this.#buf.subarray(this.#start, end);
      frames.push(this.#decode(this.type === 'application/x-ndjson' ? bytes.subarray(0, -1) : bytes));
      this.#start = this.#pos = end;
    }
    if (this.pendingBytes > this.maxFrameBytes) throw tooLarge(this.maxFrameBytes);
    return frames;
  }

  #append(chunk: Uint8Array): void {
    // Drop the frames already returned (once per chunk, not once per frame).
    if (this.#start > 0) {
      this.#buf.copy(this.#buf, 0, this.#start, this.#len);
      this.#len -= this.#start;
      this.#pos -= this.#start;
      this.#start = 0;
    }
    if (this.#len + chunk.length > this.#buf.length) {
      // Doubling keeps a frame that arrives in many chunks linear to copy.
      const grown = Buffer.alloc(Math.max(this.#len + chunk.length, this.#buf.length * 2, 4096));
      this.#buf.copy(grown, 0, 0, this.#len);
      this.#buf = grown;
    }
    this.#buf.set(chunk, this.#len);
    this.#len += chunk.length;
  }

  /** The end of the first complete frame in the buffer, or undefined when none is complete yet. */
  #next(): number | undefined {
    if (this.type === 'application/x-ndjson') {
      const nl = this.#buf.subarray(0, this.#len).indexOf(0x0a, this.#pos);
      if (nl === -1) {
        this.#pos = this.#len;
        return undefined;
      }
      if (nl + 1 - this.#start > this.maxFrameBytes) throw tooLarge(this.maxFrameBytes);
      return nl + 1;
    }
    return this.#scanCbor();
  }

  /**
   * Walks CBOR headers (RFC 8949 §3) from where the last call stopped until one top-level data
   * item is complete. Strings are skipped by their length, so a large byte string is not read
   * byte by byte; a header that promises more than the frame limit is refused at once.
   */
  #scanCbor(): number | undefined {
    const buf = this.#buf;
    const open = this.#open;
    for (;;) {
      if (this.#pos >= this.#len) return undefined;
      const pos = this.#pos;
      const initial = buf[pos]!;
      if (initial === 0xff) {
        // "break": ends the innermost indefinite-length container.
        if (open.at(-1) !== INDEFINITE) throw malformed('a break byte outside an indefinite-length item');
        open.pop();
        this.#pos = pos + 1;
        if (this.#itemDone()) return this.#pos;
        continue;
      }
      const major = initial >> 5;
      const info = initial & 0x1f;
      let arg = info;
      let head = 1;
      if (info >= 24 && info <= 27) {
        head += 1 << (info - 24);
        if (pos + head > this.#len) return undefined;
        arg = readUint(buf, pos + 1, head - 1);
      } else if (info === 31) {
        if (major < 2 || major > 5) throw malformed(`indefinite length on major type ${major}`);
        arg = INDEFINITE;
      } else if (info > 27) {
        throw malformed(`reserved additional information ${info}`);
      }
      if (major === 2 || major === 3) {
        if (arg === INDEFINITE) {
          this.#enter(INDEFINITE);
          this.#pos = pos + head;
          continue;
        }
        const end = pos + head + arg;
        if (end - this.#start > this.maxFrameBytes) throw tooLarge(this.maxFrameBytes);
        if (end > this.#len) return undefined;
        this.#pos = end;
      } else if (major === 4 || major === 5) {
        this.#pos = pos + head;
        if (arg !== 0) {
          this.#enter(arg === INDEFINITE ? INDEFINITE : major === 5 ? arg * 2 : arg);
          continue;
        }
      } else if (major === 6) {
        // A tag wraps exactly one item.
        this.#pos = pos + head;
        this.#enter(1);
        continue;
      } else {
        this.#pos = pos + head; // integers, simple values, floats: the head is the item
      }
      if (this.#itemDone()) return this.#pos;
    }
  }

  #enter(count: number): void {
    if (this.#open.length >= MAX_SCAN_DEPTH) throw malformed(`nesting deeper than ${MAX_SCAN_DEPTH} levels`);
    this.#open.push(count);
  }

  /** One item ended: count it against its containers; true when it completed the top-level item. */
  #itemDone(): boolean {
    const open = this.#open;
    while (open.length > 0) {
      const last = open.length - 1;
      if (open[last] === INDEFINITE) return false;
      if (--open[last]! > 0) return false;
      open.pop(); // the container itself is now one finished item of its parent
    }
    return true;
  }

  #decode(bytes: Uint8Array): unknown {
    try {
      return decodeBody(this.type === 'application/cbor-seq' ? 'application/cbor' : 'application/json', bytes);
    } catch (err) {
      throw malformed((err as Error).message);
    }
  }
}

function readUint(buf: Buffer, at: number, bytes: number): number {
  if (bytes === 1) return buf[at]!;
  if (bytes === 2) return buf.readUInt16BE(at);
  if (bytes === 4) return buf.readUInt32BE(at);
  // Past 2^53 the count is beyond any frame limit anyway: the size check refuses it.
  return Number(buf.readBigUInt64BE(at));
}

function tooLarge(limit: number): SkeinError {
  return new SkeinError('SKEIN_ERR_BAD_RESPONSE', `a stream frame is larger than ${limit} bytes (the client's maxFrameBytes); the stream was reset`, { limit });
}

function malformed(why: string): SkeinError {
  return new SkeinError('SKEIN_ERR_BAD_RESPONSE', `undecodable stream frame: ${why}`);
}
