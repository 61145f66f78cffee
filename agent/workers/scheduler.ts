/**
 * The queue in front of a pool's workers: which waiting call runs next when a worker frees.
 *
 *  - Priority levels (PRIORITIES: high, normal, low): a higher level is served first.
 *  - Aging: a call that has waited calls.agingMs is served as if one level higher (twice
 *    that: two levels), so a low call is never starved by a stream of higher ones. Levels are
 *    compared by the effective level of their oldest servable call; at equal effective level
 *    the older call's level goes first.
 *  - Within a level, the pool's routines take turns (round robin), and within a routine,
 *    callers (CallRequest.caller; undefined is one anonymous lane) take turns by deficit round
 *    robin: a caller of weight w is served up to w calls per turn, FIFO within its own lane.
 *    One caller flooding a routine delays another caller's call by at most the sum of the
 *    other lanes' weights, whatever the flood's size.
 *  - routines.<name>.maxConcurrency: a routine with that many calls running is skipped (its
 *    calls stay queued, in order) while other routines' calls are served.
 *
 * Costs: push, remove and pop are O(levels × routines of the pool) — both small and fixed
 * by the config — independent of how many calls wait (limits.queueSize may be a million).
 * Cancellation and deadlines remove a call in O(1) through its entry.
 */
import { DEFAULT_PRIORITY, PRIORITIES, type Priority } from './call.ts';
import { Chain, type ChainNode } from './chain.ts';

export interface SchedulerOptions {
  /** calls.agingMs: the wait that promotes a call by one level. */
  agingMs: number;
  /** routines.<name>.maxConcurrency, for the routines that set it. */
  maxConcurrency?: Readonly<Record<string, number>>;
  /** Monotonic clock in milliseconds (default performance.now); tests inject one. */
  now?: () => number;
}

/** How a call is queued: its routine (for maxConcurrency), level, and fairness lane. */
export interface Placement {
  routine: string;
  priority?: Priority;
  /** The caller's fairness key (agent/calls/weights.ts callerKey); undefined: the anonymous lane. */
  caller?: string;
  /** The caller's share per turn, a positive number (calls.weights; default 1). */
  weight?: number;
}

interface Entry<T> {
  item: T;
  /** When it was queued (now()). */
  at: number;
  lane: Lane<T>;
  inLane: ChainNode<Entry<T>>;
  inAge: ChainNode<Entry<T>>;
}

/** One caller's calls of one routine at one level, FIFO. */
interface Lane<T> {
  key: string | undefined;
  weight: number;
  /** Calls this lane may still be served in its current turn. */
  deficit: number;
  entries: Chain<Entry<T>>;
  inRing: ChainNode<Lane<T>>;
  queue: RoutineQueue<T>;
}

/** One routine's calls at one level: lanes taking turns, plus every call in arrival order (for aging). */
interface RoutineQueue<T> {
  routine: string;
  lanes: Map<string | undefined, Lane<T>>;
  /** Lanes with calls; the head's turn is running. */
  ring: Chain<Lane<T>>;
  byAge: Chain<Entry<T>>;
  inLevel: ChainNode<RoutineQueue<T>>;
  level: Level<T>;
}

interface Level<T> {
  index: number;
  routines: Map<string, RoutineQueue<T>>;
  /** Routines with calls at this level; the head is next in turn. */
  ring: Chain<RoutineQueue<T>>;
}

const LEVEL_OF: Readonly<Record<Priority, number>> = Object.fromEntries(PRIORITIES.map((p, i) => [p, i])) as Record<Priority, number>;

/**
 * @example
 *   const s = new Scheduler<string>({ agingMs: 5000 });
 *   s.push('a', { routine: 'add', priority: 'low' });
 *   s.push('b', { routine: 'add', priority: 'high' });
 *   s.pop(); // 'b'
 */
export class Scheduler<T> {
  #agingMs: number;
  #now: () => number;
  #levels: Array<Level<T>> = PRIORITIES.map((_, index) => ({ index, routines: new Map(), ring: new Chain() }));
  #entries = new Map<T, Entry<T>>();
  #caps: Map<string, number>;
  /** Calls running per routine that has a cap (routines without one are not counted). */
  #running = new Map<string, number>();

  constructor(opts: SchedulerOptions) {
    this.#agingMs = opts.agingMs;
    this.#now = opts.now ?? (() => performance.now());
    this.#caps = new Map(Object.entries(opts.maxConcurrency ?? {}));
    for (const routine of this.#caps.keys()) this.#running.set(routine, 0);
  }

  /** Calls waiting. */
  get size(): number {
    return this.#entries.size;
  }

  /** Calls waiting by the level they were queued at. */
  depth(): Record<Priority, number> {
    const depth = Object.fromEntries(PRIORITIES.map((p) => [p, 0])) as Record<Priority, number>;
    for (const level of this.#levels) for (let n = level.ring.head; n; n = n.next) depth[PRIORITIES[level.index]!] += n.value.byAge.size;
    return depth;
  }

  /** Queues `item` (each item at most once at a time). */
  push(item: T, placement: Placement): void {
    const level = this.#levels[LEVEL_OF[placement.priority ?? DEFAULT_PRIORITY]]!;
    let queue = level.routines.get(placement.routine);
    if (!queue) {
      queue = { routine: placement.routine, lanes: new Map(), ring: new Chain(), byAge: new Chain(), level } as RoutineQueue<T>;
      queue.inLevel = level.ring.push(queue);
      level.routines.set(placement.routine, queue);
    }
    let lane = queue.lanes.get(placement.caller);
    if (!lane) {
      lane = { key: placement.caller, weight: 1, deficit: 0, entries: new Chain(), queue } as Lane<T>;
      lane.inRing = queue.ring.push(lane);
      queue.lanes.set(placement.caller, lane);
    }
    // The latest call's weight: a config reload may have changed the caller's weight.
    lane.weight = placement.weight ?? 1;
    const entry = { item, at: this.#now(), lane } as Entry<T>;
    entry.inLane = lane.entries.push(entry);
    entry.inAge = queue.byAge.push(entry);
    this.#entries.set(item, entry);
  }

  /** Takes `item` out of the queue (cancelled, deadline passed); false if it was not queued. */
  remove(item: T): boolean {
    const entry = this.#entries.get(item);
    if (!entry) return false;
    this.#detach(entry);
    return true;
  }

  /**
   * The next call to run, counted as running for its routine's cap (report its end with
   * ended()); undefined when nothing waits or every waiting call's routine is at its cap.
   */
  pop(): T | undefined {
    if (this.#entries.size === 0) return undefined;
    const now = this.#now();
    let best: Level<T> | undefined;
    let bestEffective = Infinity;
    let bestAt = Infinity;
    for (const level of this.#levels) {
      let oldest = Infinity;
      for (let n = level.ring.head; n; n = n.next) if (this.canStart(n.value.routine)) oldest = Math.min(oldest, n.value.byAge.head!.value.at);
      if (oldest === Infinity) continue;
      const effective = Math.max(0, level.index - Math.floor(Math.max(0, now - oldest) / this.#agingMs));
      if (effective < bestEffective || (effective === bestEffective && oldest < bestAt)) {
        best = level;
        bestEffective = effective;
        bestAt = oldest;
      }
    }
    if (!best) return undefined;
    let node = best.ring.head;
    while (!this.canStart(node!.value.routine)) node = node!.next;
    const queue = node!.value;
    const lane = queue.ring.head!.value;
    if (lane.deficit < 1) lane.deficit += lane.weight;
    const entry = lane.entries.head!.value;
    lane.deficit--;
    this.#detach(entry);
    // The lane's turn ends with its share spent (an emptied lane left the ring already).
    if (lane.entries.size > 0 && lane.deficit < 1) queue.ring.rotate();
    // The routine's turn at this level ends with every call: routines sharing a pool alternate.
    if (queue.byAge.size > 0) this.#toBack(best.ring, queue.inLevel);
    this.started(queue.routine);
    return entry.item;
  }

  /** Every waiting call, in no particular order; the queue is left empty. */
  drain(): T[] {
    const items = [...this.#entries.keys()];
    for (const entry of [...this.#entries.values()]) this.#detach(entry);
    return items;
  }

  /** Whether a call of `routine` may start now (its routine is below its maxConcurrency). */
  canStart(routine: string): boolean {
    const cap = this.#caps.get(routine);
    return cap === undefined || this.#running.get(routine)! < cap;
  }

  /** Counts a call of `routine` as running (pop() does it for the calls it hands out). */
  started(routine: string): void {
    const n = this.#running.get(routine);
    if (n !== undefined) this.#running.set(routine, n + 1);
  }

  /** A running call of `routine` ended. True when the routine has a cap: a call it held back may run now. */
  ended(routine: string): boolean {
    const n = this.#running.get(routine);
    if (n === undefined) return false;
    this.#running.set(routine, Math.max(0, n - 1));
    return true;
  }

  #detach(entry: Entry<T>): void {
    this.#entries.delete(entry.item);
    const lane = entry.lane;
    const queue = lane.queue;
    lane.entries.remove(entry.inLane);
    queue.byAge.remove(entry.inAge);
    if (lane.entries.size === 0) {
      // DRR: a lane that empties forfeits what is left of its turn.
      queue.ring.remove(lane.inRing);
      queue.lanes.delete(lane.key);
    }
    if (queue.byAge.size === 0) {
      queue.level.ring.remove(queue.inLevel);
      queue.level.routines.delete(queue.routine);
    }
  }

  #toBack(ring: Chain<RoutineQueue<T>>, node: ChainNode<RoutineQueue<T>>): void {
    if (ring.tail === node) return;
    ring.remove(node);
    node.value.inLevel = ring.push(node.value);
  }
}
