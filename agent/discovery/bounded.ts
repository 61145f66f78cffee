/**
 * A Map with a size limit that forgets entries nobody used first: the discovery plane's caches
 * (endorsements, cool-downs, rate buckets) must hold a whole fleet's working set, yet stay
 * bounded whatever a flood sends.
 *
 * Eviction is "second chance" (CLOCK), an approximation of least-recently-used: a lookup only
 * marks its entry as used; when room is needed, the oldest entries are visited in insertion
 * order, and one marked since the last visit is unmarked and moved to the back instead of
 * being forgotten. So entries a fleet keeps using stay, and a flood of one-off keys (spoofed
 * sources) evicts its own entries first.
 *
 * Why not a true LRU (delete and re-insert on every lookup): the discovery plane looks up its
 * rate buckets by the source address and key id of every datagram, strings made fresh for each
 * one; re-inserting kept that fresh string (and churned the Map's storage) for seconds, long
 * enough to be promoted out of the young generation, so at 1,000 peers the heap grew by
 * hundreds of bytes per datagram until a full collection (docs/benchmarks.md, "Where
 * discovery's memory goes"). Here a lookup allocates nothing and keeps nothing.
 *
 * @example
 *   const seen = new LruMap<string, number>(4096);
 *   seen.set(key, now);
 *   seen.get(key); // marks it used: it survives the next eviction pass
 */
interface Slot<V> {
  value: V;
  used: boolean;
}

export class LruMap<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, Slot<V>>();

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`LruMap size must be a positive integer, got ${max}`);
    this.#max = max;
  }

  get size(): number {
    return this.#map.size;
  }

  /** The value, marked as used. */
  get(key: K): V | undefined {
    const slot = this.#map.get(key);
    if (slot === undefined) return undefined;
    slot.used = true;
    return slot.value;
  }

  /** The value without marking it. */
  peek(key: K): V | undefined {
    return this.#map.get(key)?.value;
  }

  /** A new key goes to the back (evicting one first when full); an existing one is updated in place and marked used. */
  set(key: K, value: V): void {
    const slot = this.#map.get(key);
    if (slot !== undefined) {
      slot.value = value;
      slot.used = true;
      return;
    }
    if (this.#map.size >= this.#max) this.#evictOne();
    this.#map.set(key, { value, used: false });
  }

  delete(key: K): boolean {
    return this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }

  /** In insertion order (the order of the last second chance for entries that had one). */
  *entries(): IterableIterator<[K, V]> {
    for (const [key, slot] of this.#map) yield [key, slot.value];
  }

  /** Forgets the oldest entry not used since its last visit; at most one pass over the map. */
  #evictOne(): void {
    for (const [key, slot] of this.#map) {
      this.#map.delete(key);
      if (!slot.used) return;
      slot.used = false;
      this.#map.set(key, slot);
    }
  }
}
