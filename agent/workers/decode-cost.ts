/**
 * What decoding one worker frame may cost the agent, bounded BEFORE anything is decoded: its
 * bytes (limits.maxResultBytes, checked against the length in the header), and the memory the
 * decoder would build for it, estimated by a scan of the raw payload (frame-reader.ts for
 * JSON, cbor-scan.ts for CBOR). Bytes alone are not enough: 15 MB of `[],[],…` is 5 million
 * arrays, ~440 MiB of heap and a third of a second of parsing in the agent; unique object
 * keys cost more still.
 *
 * Estimated cost of one payload (upper bounds of what Bun/JSC's JSON.parse was measured to
 * allocate for 15 MiB replies of each shape, plus the payload's own copies):
 *   BYTE_COST      per byte: the joined payload and its decoded string
 *   CONTAINER_COST per array or object (`[`, `{`; a CBOR array, map or byte string): ~88 B measured
 *   MEMBER_COST    per object member: an object with one unique key took ~340 B (a structure each)
 *   ELEMENT_COST   per array element: a number in an array took ~23 B before collection
 * A payload may cost DECODE_BUDGET_FACTOR × limits.maxResultBytes, and never less than
 * DECODE_BUDGET_FLOOR (so a small byte limit does not refuse modest nested results).
 */
export const BYTE_COST = 3;
export const CONTAINER_COST = 96;
export const MEMBER_COST = 256;
export const ELEMENT_COST = 24;
export const DECODE_BUDGET_FACTOR = 8;
export const DECODE_BUDGET_FLOOR = 64 * 1024 * 1024;

/** The decode budget of one frame for a given limits.maxResultBytes. */
export function decodeBudget(maxBytes: number): number {
  return Math.max(DECODE_BUDGET_FACTOR * maxBytes, DECODE_BUDGET_FLOOR);
}
