/**
 * Splits a worker's protocol stream into frames (frames.ts) and bounds each one BEFORE it is
 * decoded, or even allocated: the header's length against limits.maxResultBytes, its kind and
 * encoding against what a worker may send, and what decoding the payload would cost
 * (decode-cost.ts): JSON by a scan of the raw bytes as they arrive, so a costly payload is
 * refused part way; CBOR by cbor-scan.ts once its bytes (already within the limit) are in.
 */
import { scanCbor } from './cbor-scan.ts';
import { BYTE_COST, CONTAINER_COST, decodeBudget, ELEMENT_COST, MEMBER_COST } from './decode-cost.ts';
import { byteName, ENC, HEADER_BYTES, WORKER_KINDS } from './frames.ts';

export interface Frame {
  kind: number;
  enc: number;
  id: number;
  payload: Buffer;
  /** Deepest nesting of arrays/objects in the payload (0 for a scalar). */
  depth: number;
  /** Estimated decode cost in bytes (decode-cost.ts). */
  cost: number;
}

/** Why the stream was refused: a frame over the byte limit or the decode budget, or malformed. */
export interface Refusal {
  limit: 'bytes' | 'decode' | 'protocol';
  /** For the log. */
  what: string;
}

export class FrameReader {
  readonly #maxBytes: number;
  readonly #budget: number;
  /** A header split across chunks. */
  #header = Buffer.alloc(HEADER_BYTES);
  #headerHave = 0;
  /** The frame whose payload is being read. */
  #frame: { kind: number; enc: number; id: number; length: number } | undefined;
  #parts: Buffer[] = [];
  #have = 0;
  // JSON scan state of the payload being read; it carries across chunks.
  #inString = false;
  #escaped = false;
  #depth = 0;
  #maxDepth = 0;
  #cost = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
    this.#budget = decodeBudget(maxBytes);
  }

  get budget(): number {
    return this.#budget;
  }

  /**
   * Feeds one chunk; calls `onFrame` for each complete frame. Returns a refusal as soon as a
   * frame breaks a limit or is malformed (the rest of the stream is then meaningless: the
   * caller kills the worker), or undefined when the chunk is used up or `onFrame` returned
   * false (stop reading).
   */
  push(chunk: Buffer, onFrame: (frame: Frame) => boolean): Refusal | undefined {
    let i = 0;
    for (;;) {
      if (!this.#frame) {
        if (i >= chunk.length) return undefined;
        let hdr = chunk;
        let at = i;
        if (this.#headerHave === 0 && chunk.length - i >= HEADER_BYTES) {
          i += HEADER_BYTES;
        } else {
          const take = Math.min(HEADER_BYTES - this.#headerHave, chunk.length - i);
          chunk.copy(this.#header, this.#headerHave, i, i + take);
          this.#headerHave += take;
          i += take;
          if (this.#headerHave < HEADER_BYTES) return undefined;
          this.#headerHave = 0;
          hdr = this.#header;
          at = 0;
        }
        const length = hdr.readUInt32BE(at);
        const kind = hdr[at + 4]!;
        const enc = hdr[at + 5]!;
        const encodings = WORKER_KINDS.get(kind);
        if (!encodings) return { limit: 'protocol', what: `frame of unknown kind ${byteName(kind)}` };
        if (!encodings.includes(enc)) return { limit: 'protocol', what: `frame of kind ${byteName(kind)} with encoding ${byteName(enc)}` };
        if (enc === ENC.NONE && length !== 0) return { limit: 'protocol', what: `frame of kind ${byteName(kind)} with a ${length}-byte payload` };
        // Checked against the header, before a byte of the payload is kept.
        if (length > this.#maxBytes) return { limit: 'bytes', what: `frame of ${length} bytes announced (limit ${this.#maxBytes})` };
        this.#frame = { kind, enc, id: hdr.readUInt32BE(at + 6), length };
      }
      const f = this.#frame;
      const take = Math.min(f.length - this.#have, chunk.length - i);
      if (take > 0) {
        if (f.enc === ENC.JSON) {
          this.#scan(chunk, i, i + take);
          if (this.#cost > this.#budget) return { limit: 'decode', what: `payload would cost over ${this.#budget} bytes to decode (after ${this.#have + take} bytes)` };
        }
        this.#parts.push(chunk.subarray(i, i + take));
        this.#have += take;
        i += take;
      }
      if (this.#have < f.length) return undefined;
      const payload = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, f.length);
      let depth = this.#maxDepth;
      let cost = this.#cost;
      this.#reset();
      if (f.enc === ENC.CBOR) {
        const scan = scanCbor(payload, this.#budget);
        if (!scan.ok) return { limit: scan.limit, what: scan.what };
        depth = scan.depth;
        cost = scan.cost;
      }
      if (!onFrame({ kind: f.kind, enc: f.enc, id: f.id, payload, depth, cost })) return undefined;
    }
  }

  #reset(): void {
    this.#frame = undefined;
    this.#parts = [];
    this.#have = 0;
    this.#inString = false;
    this.#escaped = false;
    this.#depth = 0;
    this.#maxDepth = 0;
    this.#cost = 0;
  }

  /** One pass over raw JSON bytes (~2.5 ns a byte): structure outside strings, escapes inside. */
  #scan(buf: Buffer, start: number, end: number): void {
    let inString = this.#inString;
    let escaped = this.#escaped;
    let depth = this.#depth;
    let maxDepth = this.#maxDepth;
    let cost = this.#cost + BYTE_COST * (end - start);
    for (let i = start; i < end; i++) {
      const b = buf[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (b === 0x5c)
          escaped = true; // backslash
        else if (b === 0x22) inString = false;
        continue;
      }
      switch (b) {
        case 0x22: // "
          inString = true;
          break;
        case 0x5b: // [
        case 0x7b: // {
          cost += CONTAINER_COST;
          if (++depth > maxDepth) maxDepth = depth;
          break;
        case 0x5d: // ]
        case 0x7d: // }
          depth--;
          break;
        case 0x2c: // ,
          cost += ELEMENT_COST;
          break;
        case 0x3a: // :
          cost += MEMBER_COST;
          break;
      }
    }
    this.#inString = inString;
    this.#escaped = escaped;
    this.#depth = depth;
    this.#maxDepth = maxDepth;
    this.#cost = cost;
  }
}
