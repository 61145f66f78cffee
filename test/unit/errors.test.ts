import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_TABLE, isErrorCode, SkeinError, toSkeinError } from '../../common/errors/index.ts';

describe('error table', () => {
  it.each(Object.entries(ERROR_TABLE))('%s is well-formed', (code, entry) => {
    expect(code).toMatch(/^SKEIN_ERR_[A-Z_]+$/);
    expect(isErrorCode(code)).toBe(true);
    const err = new SkeinError(code as keyof typeof ERROR_TABLE, 'x');
    expect(err.status).toBe(entry.status);
    expect(err.exitCode).toBe(entry.exit);
    expect(entry.what.length).toBeGreaterThan(5);
    // Server-side codes map to an HTTP error status; client-side codes have none.
    if (entry.status !== 0) expect(entry.status).toBeGreaterThanOrEqual(400);
  });

  it('the four failure kinds never share a status or exit code', () => {
    const kinds = ['SKEIN_ERR_UNAUTHENTICATED', 'SKEIN_ERR_FORBIDDEN', 'SKEIN_ERR_ROUTINE_RAISED', 'SKEIN_ERR_TRANSPORT'] as const;
    const statuses = kinds.map((k) => ERROR_TABLE[k].status);
    expect(new Set(statuses).size).toBe(kinds.length);
    expect(ERROR_TABLE.SKEIN_ERR_ROUTINE_RAISED.exit).not.toBe(ERROR_TABLE.SKEIN_ERR_TRANSPORT.exit);
    expect(ERROR_TABLE.SKEIN_ERR_DEADLINE_EXCEEDED.exit).not.toBe(ERROR_TABLE.SKEIN_ERR_ROUTINE_RAISED.exit);
  });

  it('wraps foreign errors as internal, keeping the cause', () => {
    const cause = new TypeError('boom');
    const err = toSkeinError(cause);
    expect(err.code).toBe('SKEIN_ERR_INTERNAL');
    expect(err.cause).toBe(cause);
    expect(isErrorCode('NOPE')).toBe(false);
  });
});

describe('docs/api.md lists every code a server can send', () => {
  const doc = readFileSync(join(import.meta.dirname, '../../docs/api.md'), 'utf8');
  const errors = doc.slice(doc.indexOf('## Errors'));
  // Rows of the form "| 404 | `SKEIN_ERR_…` | when |".
  const rows = [...errors.matchAll(/^\| (\d{3}) \| `(SKEIN_ERR_[A-Z_]+)` \|/gm)].map((m) => ({ status: Number(m[1]), code: m[2]! }));

  it.each(Object.entries(ERROR_TABLE).filter(([, e]) => e.status > 0))('%s is in the table with its status', (code, entry) => {
    expect(rows).toContainEqual({ status: entry.status, code });
  });

  it("every row names a code of the table, with the table's status", () => {
    for (const row of rows) {
      expect(isErrorCode(row.code), row.code).toBe(true);
      expect(ERROR_TABLE[row.code as keyof typeof ERROR_TABLE].status).toBe(row.status);
    }
  });

  it('names every client-side code (status 0 codes a client raises) in its client-side list', () => {
    const clientSide = errors.slice(errors.indexOf('Client-side codes'));
    for (const code of ['SKEIN_ERR_TLS', 'SKEIN_ERR_TRANSPORT', 'SKEIN_ERR_CLIENT_TIMEOUT', 'SKEIN_ERR_ABORTED', 'SKEIN_ERR_BAD_RESPONSE', 'SKEIN_ERR_PEER_IDENTITY', 'SKEIN_ERR_NO_PEERS'])
      expect(clientSide).toContain(code);
  });
});
