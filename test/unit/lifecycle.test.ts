/**
 * The lifecycle contract (agent/lifecycle): close() drains once however often and however
 * concurrently it is called, destroy() aborts once and cuts a drain short, a destroy after
 * a finished close has nothing to do; the start-up stack destroys what started, last first,
 * and keeps going when one part fails to stop.
 */
import { describe, expect, it } from 'vitest';
import { Lifecycle, released, type Component } from '../../agent/lifecycle/index.ts';
import { covers } from '../../agent/lifecycle/reloadable.ts';
import { StartStack } from '../../agent/lifecycle/stack.ts';

/** A component whose drain waits until released by hand, counting what ran. */
function probe() {
  const ran = { drain: 0, abort: 0 };
  let finishDrain!: () => void;
  const drainGate = new Promise<void>((r) => (finishDrain = r));
  const life = new Lifecycle({
    drain: async () => {
      ran.drain++;
      await drainGate;
    },
    abort: () => {
      ran.abort++;
      finishDrain(); // aborting ends whatever the drain waited for
    },
  });
  return { life, ran, finishDrain };
}

const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

describe('Lifecycle', () => {
  it('close() twice, concurrently: one drain, both callers wait for it (the second never skips the wait)', async () => {
    const { life, ran, finishDrain } = probe();
    const first = life.close();
    const second = life.close();
    expect(second).toBe(first);
    expect(life.closed).toBe(true);
    expect(await settled(second)).toBe(false);
    finishDrain();
    await Promise.all([first, second]);
    expect(ran).toEqual({ drain: 1, abort: 0 });
    await life.close();
    expect(ran.drain).toBe(1);
  });

  it('destroy() during a drain aborts once and settles the pending close()', async () => {
    const { life, ran } = probe();
    const closing = life.close();
    await new Promise((r) => setImmediate(r));
    const d1 = life.destroy(new Error('second signal'));
    const d2 = life.destroy();
    expect(d2).toBe(d1);
    await Promise.all([closing, d1, d2]);
    expect(ran).toEqual({ drain: 1, abort: 1 });
    expect(life.destroyed).toBe(true);
  });

  it('destroy() first: close() afterwards does not drain, it resolves with the destroy', async () => {
    const { life, ran } = probe();
    await life.destroy();
    await life.close();
    expect(ran).toEqual({ drain: 0, abort: 1 });
  });

  it('destroy() after a finished close() has nothing left to do', async () => {
    const { life, ran, finishDrain } = probe();
    finishDrain();
    await life.close();
    await life.destroy();
    expect(ran).toEqual({ drain: 1, abort: 0 });
  });

  it('a drain that fails rejects every close() with the same error', async () => {
    const life = new Lifecycle({ drain: () => Promise.reject(new Error('boom')), abort: () => {} });
    await expect(life.close()).rejects.toThrow('boom');
    await expect(life.close()).rejects.toThrow('boom');
  });

  it('released(): close and destroy, in any order and together, release once', async () => {
    let n = 0;
    const c = released(() => void n++);
    await Promise.all([c.close(), c.destroy(), c.close()]);
    await c.destroy();
    expect(n).toBe(1);
    expect(c.closed).toBe(true);
  });
});

describe('StartStack', () => {
  const part = (name: string, log: string[], fail = false): Component => ({
    close: async () => void log.push(`close ${name}`),
    destroy: async () => {
      log.push(`destroy ${name}`);
      if (fail) throw new Error(`${name} would not stop`);
    },
  });

  it('unwind() destroys what was pushed, last first, once; a part that fails to stop does not stop the rest', async () => {
    const log: string[] = [];
    const errors: string[] = [];
    const stack = new StartStack({ onError: (name, err) => errors.push(`${name}: ${(err as Error).message}`) });
    stack.push('workers', part('workers', log));
    stack.push('plugins', part('plugins', log, true));
    stack.push('listener', part('listener', log));
    expect(stack.names).toEqual(['workers', 'plugins', 'listener']);
    expect(await stack.unwind()).toEqual(['listener', 'plugins', 'workers']);
    expect(log).toEqual(['destroy listener', 'destroy plugins', 'destroy workers']);
    expect(errors).toEqual(['plugins: plugins would not stop']);
    expect(await stack.unwind()).toEqual([]);
    expect(log).toHaveLength(3);
  });

  it('close() drains what was pushed, last first', async () => {
    const log: string[] = [];
    const stack = new StartStack();
    stack.push('a', part('a', log));
    stack.push('b', part('b', log));
    await stack.close();
    expect(log).toEqual(['close b', 'close a']);
  });
});

describe('covers', () => {
  it('a key covers itself and the keys below it, not siblings that share a prefix', () => {
    expect(covers(['plugins'], 'plugins')).toBe(true);
    expect(covers(['plugins'], 'plugins.enabled')).toBe(true);
    expect(covers(['plugins'], 'pluginsX')).toBe(false);
    expect(covers(['tls.cert'], 'tls.certificate')).toBe(false);
    expect(covers(['tls.cert', 'tls.key'], 'tls.key')).toBe(true);
  });
});
