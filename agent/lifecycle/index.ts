/**
 * One lifecycle for every long-lived part of the agent (worker pools, the auth pipeline, the
 * listeners, discovery, the audit stream, the TLS watch, timers…), modelled on undici's
 * dispatcher base (lib/dispatcher/dispatcher-base.js):
 *
 *   close()    drains: stop taking new work, let what is in flight finish (each component
 *              bounds how long), release what it holds. Resolves when done.
 *   destroy()  aborts: stop at once, fail what is in flight, release what it holds. Called
 *              during a drain it cuts the drain short: the pending close() resolves with it.
 *
 * Both are idempotent and safe to call concurrently: every caller of close() gets the same
 * promise (a second close during a drain waits for that drain; it never skips it), and every
 * caller of destroy() the same. A destroy() after a finished close() has nothing left to do.
 * Why one contract: before it, each part had its own verbs (stop, close(ms), destroy,
 * stopAccepting…), the second call of some skipped the wait or ran close hooks twice, and
 * start-up rollback was written by hand at every step (see ./stack.ts).
 *
 * Components own a `Lifecycle` and delegate to it; use after close is each component's own
 * typed answer (a pool refuses calls with SKEIN_ERR_SHUTTING_DOWN).
 *
 * @example
 *   class Pool implements Component {
 *     #life = new Lifecycle({ drain: () => this.#drain(), abort: () => this.#killAll() });
 *     close() { return this.#life.close(); }
 *     destroy(reason?: Error) { return this.#life.destroy(reason); }
 *   }
 */

/** The contract: `close()` drains, `destroy()` aborts; both idempotent and concurrent-safe. */
export interface Component {
  close(): Promise<void>;
  destroy(reason?: Error): Promise<void>;
}

export interface LifecycleHooks {
  /** The graceful stop: runs once, on the first close(). */
  drain(): Promise<void> | void;
  /** The immediate stop: runs once, on the first destroy() (unless a close() already finished). */
  abort(reason?: Error): Promise<void> | void;
}

/** Makes a component's close()/destroy() idempotent and concurrent-safe (see the module comment). */
export class Lifecycle implements Component {
  readonly #hooks: LifecycleHooks;
  #closing: Promise<void> | undefined;
  #destroying: Promise<void> | undefined;
  #drained = false;
  /** Set while a drain runs: settles that drain's close() with a destroy() that cuts it short. */
  #onDestroy: (() => void) | undefined;

  constructor(hooks: LifecycleHooks) {
    this.#hooks = hooks;
  }

  /** True once close() or destroy() was called: the component takes no new work. */
  get closed(): boolean {
    return this.#closing !== undefined || this.#destroying !== undefined;
  }

  /** True once destroy() was called (before close() finished). */
  get destroyed(): boolean {
    return this.#destroying !== undefined;
  }

  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    if (this.#destroying) return (this.#closing = this.#destroying);
    const drained = Promise.resolve()
      .then(() => this.#hooks.drain())
      .then(() => {
        this.#drained = true;
      });
    // A destroy() during the drain settles the close() with it.
    this.#closing = new Promise<void>((resolve, reject) => {
      drained.then(resolve, reject);
      this.#onDestroy = () => this.#destroying!.then(resolve, reject);
    });
    return this.#closing;
  }

  destroy(reason?: Error): Promise<void> {
    if (this.#destroying) return this.#destroying;
    if (this.#drained) return (this.#destroying = Promise.resolve());
    this.#destroying = Promise.resolve().then(() => this.#hooks.abort(reason));
    this.#onDestroy?.();
    return this.#destroying;
  }
}

/** A component with nothing to drain: close() and destroy() both run `release` once. */
export function released(release: () => Promise<void> | void): Component & { readonly closed: boolean } {
  let once: Promise<void> | undefined;
  const run = () => (once ??= Promise.resolve().then(release));
  return new Lifecycle({ drain: run, abort: run });
}
