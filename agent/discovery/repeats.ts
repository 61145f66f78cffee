/**
 * The verifier's memory of datagrams whose signature already verified, so that byte-identical
 * repeats (a second group or interface delivering one, a captured advert replayed) skip the
 * signature check. A repeat needs only what time and sequence checks read: the advert's
 * sequence number, issued-at and its endorsement's end; so that is all that is kept, with the
 * datagram's SHA-256, in typed arrays allocated once.
 *
 * Why not a Map of digest → verified advert: it held a fresh object graph (a digest string, the
 * decoded payload and its strings) for every datagram for seconds, so each one outlived a
 * young-generation collection and piled up in the old generation until a full one. At 1,000
 * peers that was most of the agent's heap growth under discovery (measured in
 * docs/benchmarks.md, "Where discovery's memory goes"). Here a datagram leaves nothing behind.
 *
 * Each digest has two candidate slots (picked by its first and second four bytes); a new one
 * takes whichever is empty or was written longest ago, so what was verified most recently is
 * what stays (byte-identical copies arrive together). A miss only costs a signature check; a
 * hit compares all 32 bytes, so no other bytes can pass for a remembered datagram. Only
 * verified datagrams are stored, so only holders of trusted keys can take slots.
 *
 * @example
 *   const repeats = new RepeatTable(4096);
 *   const slot = repeats.find(digest);          // -1: not seen
 *   if (slot < 0) repeats.remember(digest, { seq, iat, notAfter: Infinity });
 */

/** What a repeat's checks read: the advert's sequence number and issued-at, and when its endorsement ends (Infinity: none). */
export interface RepeatFacts {
  seq: number;
  iat: number;
  notAfter: number;
}

const DIGEST_BYTES = 32;
const SEQ = 0;
const IAT = 1;
const NOT_AFTER = 2;
/** When the slot was written (a counter): the older of two candidates is replaced. */
const WRITTEN = 3;
const FACTS = 4;

export class RepeatTable {
  readonly #mask: number;
  readonly #digests: Uint8Array;
  /** Per slot: seq (NaN while empty), iat, notAfter, written. */
  readonly #facts: Float64Array;
  #writes = 0;

  /** `size` slots, rounded up to a power of two (at most 2^24). */
  constructor(size: number) {
    let slots = 1;
    while (slots < Math.min(size, 2 ** 24)) slots *= 2;
    this.#mask = slots - 1;
    this.#digests = new Uint8Array(slots * DIGEST_BYTES);
    this.#facts = new Float64Array(slots * FACTS).fill(NaN);
  }

  /** Candidate slot `which` (0 or 1) of a digest: from its bytes 0–3 or 4–7. */
  #slotOf(digest: Uint8Array, which: 0 | 1): number {
    const o = which * 4;
    return ((digest[o]! | (digest[o + 1]! << 8) | (digest[o + 2]! << 16) | (digest[o + 3]! << 24)) >>> 0) & this.#mask;
  }

  #holds(slot: number, digest: Uint8Array): boolean {
    if (Number.isNaN(this.#facts[slot * FACTS + SEQ]!)) return false;
    const at = slot * DIGEST_BYTES;
    for (let i = 0; i < DIGEST_BYTES; i++) if (this.#digests[at + i] !== digest[i]) return false;
    return true;
  }

  /** The slot remembering exactly this SHA-256 digest, or -1. */
  find(digest: Uint8Array): number {
    const a = this.#slotOf(digest, 0);
    if (this.#holds(a, digest)) return a;
    const b = this.#slotOf(digest, 1);
    return this.#holds(b, digest) ? b : -1;
  }

  /** The facts of a slot `find` returned. */
  facts(slot: number): RepeatFacts {
    const f = slot * FACTS;
    return { seq: this.#facts[f + SEQ]!, iat: this.#facts[f + IAT]!, notAfter: this.#facts[f + NOT_AFTER]! };
  }

  /** Remembers a verified datagram's digest and facts, in its slot already, or the empty or older of its two. */
  remember(digest: Uint8Array, facts: RepeatFacts): void {
    let slot = this.find(digest);
    if (slot < 0) {
      const a = this.#slotOf(digest, 0);
      const b = this.#slotOf(digest, 1);
      const written = (s: number) => (Number.isNaN(this.#facts[s * FACTS + SEQ]!) ? -1 : this.#facts[s * FACTS + WRITTEN]!);
      slot = written(b) < written(a) ? b : a;
      this.#digests.set(digest.subarray(0, DIGEST_BYTES), slot * DIGEST_BYTES);
    }
    const f = slot * FACTS;
    this.#facts[f + SEQ] = facts.seq;
    this.#facts[f + IAT] = facts.iat;
    this.#facts[f + NOT_AFTER] = facts.notAfter;
    this.#facts[f + WRITTEN] = ++this.#writes;
  }

  /** Forgets everything (the trust store changed: what verified before may not now). */
  clear(): void {
    this.#facts.fill(NaN);
  }
}
