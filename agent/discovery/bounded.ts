/**
 * A Map with a size limit that forgets the least recently used entry first: the discovery
 * plane's caches (endorsements, verified datagrams, cool-downs, rate buckets) must hold a whole
 * fleet's working set, yet stay bounded whatever a flood sends.
 *
 * @example
 *   const seen = new LruMap<string, number>(4096);
 *   seen.set(key, now);
 *   seen.get(key); // refreshes it: the entries a fleet keeps using are the ones kept
 */
export class LruMap<K, V> {
  readonly #max: number;
  readonly #map = new Map<K, V>();

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`LruMap size must be a positive integer, got ${max}`);
    this.#max = max;
  }

  get size(): number {
    return this.#map.size;
  }

  /** The value, refreshed as most recently used. */
  get(key: K): V | undefined {
    const v = this.#map.get(key);
    if (v !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, v);
    }
    return v;
  }

  /** The value without refreshing it. */
  peek(key: K): V | undefined {
    return this.#map.get(key);
  }

  set(key: K, value: V): void {
    this.#map.delete(key);
    if (this.#map.size >= this.#max) this.#map.delete(this.#map.keys().next().value!);
    this.#map.set(key, value);
  }

  delete(key: K): boolean {
    return this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }

  entries(): IterableIterator<[K, V]> {
    return this.#map.entries();
  }
}
