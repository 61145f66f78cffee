/**
 * Runs the confinement module's own suite (test/sandbox/test_confine.py: every layer, the
 * canary, escape techniques and compatibility, applied directly in fresh interpreters) so
 * it is part of `npm test`. Its skips (a package or a kernel feature the host lacks) follow
 * the suite's one policy (test/helpers/requires.ts): a warning outside CI, a failure in CI.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { reportSkips } from '../helpers/requires.ts';

it('test_confine.py passes', { timeout: 120_000 }, () => {
  const r = spawnSync('python3', ['-I', '-S', join(import.meta.dirname, 'test_confine.py'), '-v'], { encoding: 'utf8', env: { ...process.env, SKEIN_SPAWN_RUNS: '5' }, timeout: 110_000 });
  const out = r.stderr + r.stdout;
  expect(out).not.toMatch(/FAILED|Traceback/);
  expect(r.status).toBe(0);
  // unittest -v: "test_x (__main__.Class.test_x) ... skipped 'needs … (apt-get install …)'"
  const skipped = [...out.matchAll(/^(\w+) \([^)]*\) \.\.\. skipped '(.*)'$/gm)].map((m) => `${m[1]}: ${m[2]}`);
  reportSkips('test/sandbox/test_confine.py', skipped);
});
