/**
 * Start-up in one place: each part is recorded on a stack as soon as it exists (before its
 * own start finishes, so a half-started pool is stopped too), and when a later step fails
 * everything recorded is destroyed, last first. Nothing that started is left running — no
 * worker, timer, socket or watcher — and nothing that never started is touched. Before this,
 * every step of runtime/index.ts repeated its own list of what to undo, and the lists drifted.
 *
 * @example
 *   const stack = new StartStack();
 *   try {
 *     const pool = stack.push('workers', buildPools(…));
 *     await pool.start();
 *     stack.push('listener', await listen(…));
 *   } catch (err) {
 *     await stack.unwind(err);   // destroys the listener (if any), then the pool
 *     throw err;
 *   }
 */
import type { Component } from './index.ts';

export interface StackOptions {
  /** A destroy that failed: reported, and the rest of the unwind still runs. */
  onError?: (name: string, err: unknown) => void;
}

export class StartStack {
  readonly #started: Array<{ name: string; component: Component }> = [];
  readonly #opts: StackOptions;

  constructor(opts: StackOptions = {}) {
    this.#opts = opts;
  }

  /** Records a part that has started, or begun to; returns it. */
  push<T extends Component>(name: string, component: T): T {
    this.#started.push({ name, component });
    return component;
  }

  /** The names recorded, in start order. */
  get names(): string[] {
    return this.#started.map((s) => s.name);
  }

  /**
   * Destroys every recorded part, last first, one after the other (a later part may use an
   * earlier one until it is gone). Never throws; returns the names destroyed, in that order.
   */
  async unwind(reason?: Error): Promise<string[]> {
    const done: string[] = [];
    for (const { name, component } of this.#started.splice(0).reverse()) {
      try {
        await component.destroy(reason);
      } catch (err) {
        this.#opts.onError?.(name, err);
      }
      done.push(name);
    }
    return done;
  }

  /** Closes (drains) every recorded part not closed yet, last first; a failure is reported and the rest still close. */
  async close(): Promise<void> {
    for (const { name, component } of this.#started.slice().reverse()) {
      try {
        await component.close();
      } catch (err) {
        this.#opts.onError?.(name, err);
      }
    }
  }
}
