/**
 * The async results store and runner, run under Bun (bun:sqlite does not exist under Node):
 * store-harness.ts runs the scenarios and reports what it found; the end-to-end behaviour
 * through the binary is test/e2e/calls-async.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
let found: Record<string, any>;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'skein-store-'));
  const r = spawnSync(join(ROOT, 'node_modules/.bin/bun'), [join(ROOT, 'test/calls/store-harness.ts'), dir], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, CBOR_NATIVE_ACCELERATION_DISABLED: 'true' },
  });
  if (r.status !== 0) throw new Error(`harness failed (${r.status}): ${r.stderr}`);
  found = JSON.parse(r.stdout.trim().split('\n').pop()!);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('calls store', () => {
  it('gives back what was stored: bytes, integers beyond 2^53, "__proto__" keys; ids are 144-bit base64url', () => {
    expect(found.roundTrip).toEqual({ bytes: [0, 1, 255], big: true, float: -1.5, proto: ['__proto__'], kwargs: { k: 'v' }, idLength: 24 });
  });

  it('refuses a submission past calls.maxStored with STORE_FULL and keeps every accepted call', () => {
    expect(found.full.code).toBe('SKEIN_ERR_STORE_FULL');
    expect(found.full.message).toMatch(/holds 3 calls \(calls\.maxStored 3\).*never dropped/);
    expect(found.full.retry).toBeGreaterThanOrEqual(1);
    expect(found.stillThere).toBe(3);
  });

  it('forgets a finished call resultTtlMs after it finished, and a full store sweeps before refusing', () => {
    expect(found.finished).toEqual({ status: 'succeeded', result: [7] });
    expect(found.expiredReadsAbsent).toBe(true);
    expect(found.afterSweep).toBe(3);
  });

  it('stores a result too large for calls.maxBytes as a failure that says so', () => {
    expect(found.tooLarge.status).toBe('failed');
    expect(found.tooLarge.code).toBe('SKEIN_ERR_RESULT_TOO_LARGE');
    expect(found.tooLarge.message).toMatch(/does not fit in the async results store.*calls\.maxBytes 200/);
  });

  it('group commit: the writes of one turn are one transaction; one failing fails all and keeps none', () => {
    expect(found.groupCommit).toEqual({ turn: ['commit failed: boom', 'commit failed: boom', 'commit failed: boom'], next: 1, rows: [4] });
  });

  it('writes keep their order: a result committed before a cancellation stands', () => {
    expect(found.ordered).toEqual({ finished: 'succeeded', cancelled: null, status: 'succeeded' });
  });

  it('finds the oldest queued call of a level by an index (a backlog of N runs without an O(N) sort per pick)', () => {
    expect(found.oldestPlan).toMatch(/USING INDEX calls_waiting/);
    expect(found.oldestPlan).not.toMatch(/TEMP B-TREE/);
  });

  it('after a restart: running calls become interrupted, or queued for an idempotent routine; queued stay queued', () => {
    expect(found.recovered).toEqual({ a: 'interrupted', b: 'queued', q: 'queued', errorA: 'SKEIN_ERR_SHUTTING_DOWN' });
  });
});

describe('calls runner', () => {
  it('runs higher priority first, then owners in turn, each owner in submission order', () => {
    expect(found.order).toEqual(['high0', 'flood0', 'other0', 'flood1', 'other1', 'flood2', 'flood3']);
  });

  it('fails a call whose routine is no longer configured with UNKNOWN_ROUTINE', () => {
    expect(found.unknownRoutine).toEqual([['failed', 'SKEIN_ERR_UNKNOWN_ROUTINE']]);
  });

  it('counts the deadline from the start and stops the call at it; wait() is woken by the outcome', () => {
    expect(found.deadline.status).toBe('failed');
    expect(found.deadline.code).toBe('SKEIN_ERR_DEADLINE_EXCEEDED');
    expect(found.deadline.waitedMs).toBeLessThan(2000);
  });

  it('cancels a running call: its signal aborts and it stays cancelled', () => {
    // "slow" was aborted by its deadline first.
    expect(found.cancel).toEqual({ status: 'cancelled', aborted: ['slow', 'held'] });
  });
});
