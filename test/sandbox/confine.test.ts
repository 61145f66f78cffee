/**
 * Runs the confinement module's own suite (test/sandbox/test_confine.py: every layer, the
 * canary, escape techniques and compatibility, applied directly in fresh interpreters) so
 * it is part of `npm test`.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';

it('test_confine.py passes', { timeout: 120_000 }, () => {
  const r = spawnSync('python3', ['-I', '-S', join(import.meta.dirname, 'test_confine.py')], { encoding: 'utf8', env: { ...process.env, SKEIN_SPAWN_RUNS: '5' }, timeout: 110_000 });
  expect(r.stderr + r.stdout).not.toMatch(/FAILED|Traceback/);
  expect(r.status).toBe(0);
});
