/**
 * The async calls as one part of the agent: the results store and the runner feeding it to
 * the pools, opened, started, drained and destroyed together (agent/lifecycle).
 *
 * The store needs Bun's built-in SQLite, which the compiled agent always has. Run from source
 * under Node (the in-process tests), there is none: the part then starts without the store,
 * says so in a warning, and /v1/calls is not served — everything else works as before.
 */
import type { Audit } from '../audit/index.ts';
import type { AgentConfig } from '../config/schema.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import type { Logger } from '../log/index.ts';
import type { CallDispatcher } from '../workers/call.ts';
import { CallRunner, inFlightBound } from './runner.ts';
import { CallStore, sqliteAvailable, storePathOf } from './store.ts';

export interface AsyncCallsDeps {
  config: AgentConfig;
  /** Runs the calls (the call service). */
  pool: CallDispatcher;
  /** Workers across the pools: about one async call per worker is in flight. */
  workers: number;
  isRoutine: (name: string) => boolean;
  log: Logger;
  audit?: Audit;
}

export class AsyncCalls implements Component {
  /** Undefined when this runtime has no bun:sqlite. */
  readonly store: CallStore | undefined;
  readonly runner: CallRunner | undefined;
  #life = new Lifecycle({
    drain: async () => {
      await this.runner?.close();
      await this.store?.close();
    },
    abort: async (reason) => {
      await this.runner?.destroy(reason);
      await this.store?.destroy(reason);
    },
  });

  private constructor(store: CallStore | undefined, runner: CallRunner | undefined) {
    this.store = store;
    this.runner = runner;
  }

  /** Opens the store (SKEIN_ERR_CONFIG naming calls.store when it cannot) and builds the runner; start() runs it. */
  static async open({ config, pool, workers, isRoutine, log, audit }: AsyncCallsDeps): Promise<AsyncCalls> {
    if (!(await sqliteAvailable())) {
      log.warn('async calls are off: this runtime has no bun:sqlite (the compiled agent has it); /v1/calls is not served');
      return new AsyncCalls(undefined, undefined);
    }
    const { calls, limits } = config;
    const store = await CallStore.open({ path: storePathOf(config), maxStored: calls.maxStored, maxBytes: calls.maxBytes, resultTtlMs: calls.resultTtlMs });
    const runner = new CallRunner({
      store,
      pool,
      routine: (name) => (isRoutine(name) ? { idempotent: config.routines[name]?.idempotent === true } : undefined),
      maxInFlight: inFlightBound(workers, limits.queueSize),
      agingMs: calls.agingMs,
      // A call may wait this long in a pool's own queue before it starts (see runner.ts).
      queueSlackMs: limits.maxTimeoutMs,
      log,
      audit,
    });
    return new AsyncCalls(store, runner);
  }

  /** Runs what the last run left (queued calls, calls cut off mid-run) and what is submitted from now on. */
  start(): void {
    this.runner?.start();
  }

  /** Takes no more calls from the store; resolves once the calls with the pools ended (their drain bounds it), then closes the store. */
  close(): Promise<void> {
    return this.#life.close();
  }

  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }
}
