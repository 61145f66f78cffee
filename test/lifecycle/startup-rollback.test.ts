/**
 * A failure at each start-up step stops exactly what had started, in the test process
 * (agent/runtime's startAgent with real workers, plugins and sockets): no child process is
 * left, and no timer, socket, watcher or child handle created during the attempt outlives
 * it (async_hooks counts unref'd timers too); plugins that had loaded are closed once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinError } from '../../common/errors/index.ts';
import { stopAll } from '../helpers/agent.ts';
import { FAILURE_STEPS, failureCases, type FailureContext } from './failures.ts';
import { childrenOf, inProcessAgent, trackResources } from './in-process.ts';

let ctx: FailureContext;
beforeAll(async () => {
  ctx = await failureCases();
});
afterAll(async () => {
  await ctx?.close();
  await stopAll();
});

describe('a start-up failure stops exactly what had started', () => {
  it.each(FAILURE_STEPS)('%s', async (step) => {
    const c = ctx.cases.find((k) => k.step === step)!;
    const agent = inProcessAgent(c.config);
    const tracked = trackResources();
    let error: unknown;
    try {
      await agent.start();
    } catch (err) {
      error = err;
    }
    // Timers that end on their own (a 20 ms goodbye gap, a socket's close) have ended by now.
    await new Promise((r) => setTimeout(r, 300));
    // A timer's destroy hook runs after its callback: let this wait's own timer be counted out.
    for (let t = 0; t < 3; t++) await new Promise((r) => setImmediate(r));
    tracked.stop();
    expect(error, c.step).toBeInstanceOf(SkeinError);
    expect((error as SkeinError).code, `${c.step}: ${(error as Error).message}`).toBe(c.code);
    expect((error as Error).message).toMatch(c.message);
    const line = agent.lines.find((l) => l.msg === 'start-up failed; stopped what had started');
    expect(line?.stopped, c.step).toEqual(c.stopped);
    expect(tracked.live(), c.step).toEqual([]);
    expect(childrenOf(process.pid), c.step).toEqual([]);
    // The "closes" plugin loads in the plugins row (before the one that fails) and in every later row.
    const loadedCloses = agent.lines.some((l) => l.msg === 'plugin loaded' && l.plugin === 'closes');
    expect(loadedCloses).toBe(c.stopped.includes('plugins') || step === FAILURE_STEPS[2]);
    expect(agent.lines.filter((l) => l.msg === 'plugin closed').length, c.step).toBe(loadedCloses ? 1 : 0);
  });
});
