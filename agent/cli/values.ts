/**
 * Routine values on a text stream. Bytes (a Uint8Array result) print as {"$bytes": "<base64>"},
 * the form the agent itself gives JSON callers (docs/calls.md, "Bytes"), so `skein dispatch`
 * output reads the same whichever encoding carried it; `--output FILE` writes them raw.
 */

/** JSON text of a value, bytes as {"$bytes": base64}; `indent` as for JSON.stringify. */
export function jsonText(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    function (this: Record<string, unknown>, key: string, v: unknown) {
      // The holder's own value: JSON.stringify has already applied Buffer's toJSON to `v`.
      const raw = this[key];
      return raw instanceof Uint8Array ? { $bytes: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') } : v;
    },
    indent,
  );
}

/** A result as `skein dispatch` prints it: a string as itself, anything else as indented JSON. */
export function resultText(value: unknown): string {
  return typeof value === 'string' ? value : jsonText(value, 2);
}
