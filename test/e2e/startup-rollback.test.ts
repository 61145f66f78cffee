/**
 * A start-up that fails at any step, through the binary: exit 2 with the step's error, the
 * log names exactly what had started and was stopped (last first), a plugin that had loaded
 * is closed once, the workers it logged are gone, and the process exits promptly on its own
 * terms. The same failures are accounted handle by handle in test/lifecycle/startup-rollback.test.ts.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alive, baseConfig, runCli, stopAll, tempDir } from '../helpers/agent.ts';
import { FAILURE_STEPS, failureCases, type FailureContext } from '../lifecycle/failures.ts';

let ctx: FailureContext;
beforeAll(async () => {
  ctx = await failureCases();
});
afterAll(async () => {
  await ctx?.close();
  await stopAll();
});

const parse = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('a start-up failure at each step', () => {
  it.each(FAILURE_STEPS)('%s: exit 2, and exactly what had started is stopped', async (step) => {
    const c = ctx.cases.find((k) => k.step === step)!;
    const path = join(tempDir(), 'agent.config.json');
    writeFileSync(path, JSON.stringify(baseConfig(c.config)), { mode: 0o600 });
    const started = Date.now();
    const r = await runCli(['agent', '--config', path], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(2);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r.stderr).toMatch(new RegExp(`error \\[${c.code}\\]: ${c.message.source}`));
    const lines = parse(r.stderr);
    expect(lines.find((l) => l.msg === 'start-up failed; stopped what had started')?.stopped, r.stderr).toEqual(c.stopped);
    // The "closes" plugin loads in the plugins row (before the one that fails) and in every later row.
    const loaded = lines.some((l) => l.msg === 'plugin loaded' && l.plugin === 'closes');
    expect(loaded).toBe(c.stopped.includes('plugins') || step === FAILURE_STEPS[2]);
    expect(lines.filter((l) => l.msg === 'plugin closed' && l.plugin === 'closes').length).toBe(loaded ? 1 : 0);
    // The audit stream's last line says why; the workers it recorded are gone.
    expect(lines.filter((l) => l.event === 'agent.stop').at(-1)).toMatchObject({ reason: 'start-failed', code: c.code });
    for (const spawn of lines.filter((l) => l.event === 'worker.spawn')) expect(alive(spawn.pid as number)).toBe(false);
  });
});
