import { describe, expect, it } from 'vitest';
import { ERROR_TABLE, isErrorCode, SkeinError, toSkeinError } from '../../agent/errors/index.ts';

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
