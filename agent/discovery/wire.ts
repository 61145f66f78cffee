/**
 * Allocation-light parsing of an advertisement datagram's outer layer, the frame
 * [1, fleet, envelope, endorsement|null] (see advert.ts), for the verifier's hot path: a
 * canonical CBOR array of a fixed shape read head by head, refusing every non-shortest length,
 * its parts returned as views into the datagram. The envelope inside is signing's
 * (viewEnvelope), the payload signing's fast canonical decoder.
 */
import { isUtf8 } from 'node:buffer';
import { envelopeContextHead, readCborHead, scratchLen, viewEnvelope, type EnvelopeView } from '../../signing/index.ts';
import { ADVERT_CONTEXT, ADVERT_CONTEXT_V2, ADVERT_FRAME_VERSION, WIRE_VERSION_2 } from './advert.ts';

export interface FrameView {
  /** Wire version: 1, or 2 (heartbeat.ts). */
  version: 1 | 2;
  /** The frame's fleet id bytes (UTF-8), a view. */
  fleet: Uint8Array;
  envelope: Uint8Array;
  /** null when the frame carries none. */
  endorsement: Uint8Array | null;
}

/**
 * The frame [1, fleet, envelope, endorsement|null] as views, 'unsupported-version' for an
 * array starting with another small version number, or 'malformed'.
 */
export function parseFrame(b: Uint8Array): FrameView | 'malformed' | 'unsupported-version' {
  const end = b.length;
  if (end < 4) return 'malformed';
  const version = b[1];
  if (b[0] !== 0x84 || (version !== ADVERT_FRAME_VERSION && version !== WIRE_VERSION_2)) {
    return b[0]! >= 0x81 && b[0]! <= 0x97 && b[1]! <= 0x17 && version !== ADVERT_FRAME_VERSION && version !== WIRE_VERSION_2 ? 'unsupported-version' : 'malformed';
  }
  let p = readCborHead(b, 2, end, 3, scratchLen);
  if (p < 0) return 'malformed';
  const fleet = b.subarray(p, p + scratchLen[0]!);
  p += scratchLen[0]!;
  p = readCborHead(b, p, end, 2, scratchLen);
  if (p < 0) return 'malformed';
  const envelope = b.subarray(p, p + scratchLen[0]!);
  p += scratchLen[0]!;
  let endorsement: Uint8Array | null = null;
  if (b[p] === 0xf6) {
    p += 1;
  } else {
    p = readCborHead(b, p, end, 2, scratchLen);
    if (p < 0) return 'malformed';
    endorsement = b.subarray(p, p + scratchLen[0]!);
    p += scratchLen[0]!;
  }
  if (p !== end) return 'malformed';
  return { version, fleet, envelope, endorsement };
}

const ADVERT_CONTEXT_HEAD = envelopeContextHead(ADVERT_CONTEXT);
const ADVERT_CONTEXT_V2_HEAD = envelopeContextHead(ADVERT_CONTEXT_V2);

/** The advertisement envelope as views (signing's viewEnvelope for the frame version's context). */
export function parseEnvelope(e: Uint8Array, version: 1 | 2 = 1): EnvelopeView | 'malformed' | 'context' {
  return viewEnvelope(e, version === WIRE_VERSION_2 ? ADVERT_CONTEXT_V2_HEAD : ADVERT_CONTEXT_HEAD);
}

/** True when `bytes` is well-formed UTF-8 (a wrong fleet id, as opposed to garbage). */
export { isUtf8 };
