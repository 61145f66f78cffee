/**
 * Splits a worker's protocol stream into reply lines and bounds what decoding each may cost,
 * BEFORE anything is decoded: a line's bytes (limits.maxResultBytes), and the memory
 * JSON.parse would build for it, estimated by a scan of the raw bytes as they arrive. Bytes
 * alone are not enough: 15 MB of `[],[],…` is 5 million arrays, ~440 MiB of heap and a third
 * of a second of parsing in the agent; unique object keys cost more still.
 *
 * Estimated cost of one line (upper bounds of what Bun/JSC's JSON.parse was measured to
 * allocate for 15 MiB replies of each shape, plus the line's own copies):
 *   BYTE_COST      per byte: the joined line and its decoded string
 *   CONTAINER_COST per `[` or `{`: an empty array/object with its slot took ~88 B
 *   MEMBER_COST    per `:`: an object with one unique key took ~340 B (a structure each)
 *   ELEMENT_COST   per `,`: a number in an array took ~23 B before collection
 * A line may cost DECODE_BUDGET_FACTOR × limits.maxResultBytes, and never less than
 * DECODE_BUDGET_FLOOR (so a small byte limit does not refuse modest nested results).
 */
export const BYTE_COST = 3;
export const CONTAINER_COST = 96;
export const MEMBER_COST = 256;
export const ELEMENT_COST = 24;
export const DECODE_BUDGET_FACTOR = 8;
export const DECODE_BUDGET_FLOOR = 64 * 1024 * 1024;

/** The decode budget of one reply line for a given limits.maxResultBytes. */
export function decodeBudget(maxBytes: number): number {
  return Math.max(DECODE_BUDGET_FACTOR * maxBytes, DECODE_BUDGET_FLOOR);
}

export interface ReplyLine {
  line: Buffer;
  /** Deepest nesting of `[`/`{` outside strings (the envelope object counts as 1). */
  depth: number;
}

/** Why a reply was refused before decoding: over the byte limit, or over the decode budget. */
export interface Refusal {
  limit: 'bytes' | 'decode';
  /** For the log. */
  what: string;
}

export class ReplyReader {
  readonly #maxBytes: number;
  readonly #budget: number;
  #parts: Buffer[] = [];
  #bytes = 0;
  // Scan state of the line being read; it carries across chunks.
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
   * Feeds one chunk; calls `onLine` for each complete line. Returns a refusal as soon as a
   * line breaks a limit (the rest of the stream is then meaningless: the caller kills the
   * worker), or when `onLine` returns false (stop reading).
   */
  push(chunk: Buffer, onLine: (reply: ReplyLine) => boolean): Refusal | undefined {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      this.#bytes += end - start;
      if (this.#bytes > this.#maxBytes) {
        return { limit: 'bytes', what: nl === -1 ? `partial reply over ${this.#maxBytes} bytes` : `reply of ${this.#bytes} bytes` };
      }
      this.#scan(chunk, start, end);
      if (this.#cost > this.#budget) {
        return { limit: 'decode', what: `reply would cost over ${this.#budget} bytes to decode (after ${this.#bytes} bytes)` };
      }
      if (nl === -1) {
        this.#parts.push(chunk.subarray(start));
        return undefined;
      }
      const piece = chunk.subarray(start, nl);
      const line = this.#parts.length ? Buffer.concat([...this.#parts, piece]) : piece;
      const depth = this.#maxDepth;
      this.#reset();
      start = nl + 1;
      if (!onLine({ line, depth })) return undefined;
    }
    return undefined;
  }

  #reset(): void {
    this.#parts = [];
    this.#bytes = 0;
    this.#inString = false;
    this.#escaped = false;
    this.#depth = 0;
    this.#maxDepth = 0;
    this.#cost = 0;
  }

  /** One pass over raw bytes (~2.5 ns a byte): structure outside strings, escapes inside. */
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
