/**
 * The one workload every bench target runs: `echo` of a 100-byte string, 2,000 sequential
 * calls for p50/p99 after a warm-up, then a fixed number of calls with 64 in flight for
 * throughput. Targets are functions that make one call, so skein, the raw baseline and the
 * peers are measured by the same loops.
 */
import { quantile } from './stats.ts';

/** 100 ASCII bytes: the same on every wire (CBOR, JSON, pickle) give or take framing. */
export const PAYLOAD = 'skein-bench:'.padEnd(100, '0123456789');
export const CONCURRENCY = 64;

export type Call = () => Promise<unknown>;

export async function warmUp(call: Call, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await call();
}

export async function sequential(call: Call, n: number): Promise<{ p50: number; p99: number }> {
  const times = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call();
    times[i] = performance.now() - t;
  }
  times.sort((a, b) => a - b);
  return { p50: quantile(times, 0.5), p99: quantile(times, 0.99) };
}

/** Calls per second with `concurrency` calls in flight until `n` have completed. */
export async function concurrent(call: Call, n: number, concurrency = CONCURRENCY): Promise<number> {
  let issued = 0;
  const t = performance.now();
  const lane = async () => {
    while (issued < n) {
      issued++;
      await call();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return n / ((performance.now() - t) / 1000);
}
