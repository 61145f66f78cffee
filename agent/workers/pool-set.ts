/**
 * Routines grouped by their resource limits: rlimits are per process, so a routine whose
 * limits differ from the defaults (routines.<name>.limits) runs in a pool of its own, and
 * every other routine shares the main pool. Dispatch goes to the routine's pool.
 */
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import { PRIORITIES, type Priority } from './call.ts';
import type { CallOutcome, ReadyInfo } from './worker.ts';
import type { DispatchRequest, WorkerPool } from './pool.ts';

export interface Dispatcher {
  dispatch(req: DispatchRequest): Promise<CallOutcome>;
  readonly stats: { workers: number; idle: number; queued: number; inFlight: number };
}

/** The pools as one component: close() drains them all together, destroy() kills them all. */
export class PoolSet implements Dispatcher, Component {
  #byRoutine = new Map<string, WorkerPool>();
  #pools: WorkerPool[];
  #life = new Lifecycle({
    drain: async () => void (await Promise.all(this.#pools.map((p) => p.close()))),
    abort: async (reason) => void (await Promise.all(this.#pools.map((p) => p.destroy(reason)))),
  });

  constructor(groups: Array<{ pool: WorkerPool; routines: string[] }>) {
    this.#pools = groups.map((g) => g.pool);
    for (const { pool, routines } of groups) for (const r of routines) this.#byRoutine.set(r, pool);
  }

  dispatch(req: DispatchRequest): Promise<CallOutcome> {
    // The app checks the routine exists before dispatching, so a miss is a bug.
    return this.#byRoutine.get(req.routine)!.dispatch(req);
  }

  get stats() {
    const total = { workers: 0, idle: 0, queued: 0, inFlight: 0 };
    for (const p of this.#pools) for (const k of Object.keys(total) as Array<keyof typeof total>) total[k] += p.stats[k];
    return total;
  }

  /** Queued calls by priority, over every pool. */
  queueDepth(): Record<Priority, number> {
    const total = Object.fromEntries(PRIORITIES.map((p) => [p, 0])) as Record<Priority, number>;
    for (const pool of this.#pools) for (const [p, n] of Object.entries(pool.queueDepth()) as Array<[Priority, number]>) total[p] += n;
    return total;
  }

  async start(): Promise<ReadyInfo[]> {
    return (await Promise.all(this.#pools.map((p) => p.start()))).flat();
  }

  close(): Promise<void> {
    return this.#life.close();
  }

  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }
}
