/**
 * The worker protocol alone, without HTTP: `echo` of a 100-byte string through the pool
 * (sequential, like bench/run.ts's sequential figure), and, with protocol v2, a 1 MiB bytes
 * round trip. Real sandboxed workers, the agent's own pool wiring (test/helpers/pool.ts).
 *
 *   bun bench/worker-protocol.ts            (env: SKEIN_BENCH_SEQ, default 2000; SKEIN_BENCH_ROUNDS, default 3)
 */
import { rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPools } from '../test/helpers/pool.ts';

const SEQ = Number(process.env.SKEIN_BENCH_SEQ ?? 2000);
const ROUNDS = Number(process.env.SKEIN_BENCH_ROUNDS ?? 3);
const ROOT = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'skein-bench-proto-'));
const { pools } = await startPools(
  {
    workers: { poolSize: 1, isolation: 'shared', maxCallsPerWorker: 0 },
    limits: { maxResultBytes: 4 * 1024 * 1024 },
    routines: { echo: { file: join(ROOT, 'routines/examples.py') } },
  },
  dir,
);

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
const call = async (args: unknown[]) => {
  const outcome = await pools.dispatch({ routine: 'echo', args, kwargs: {}, timeoutMs: 10_000 });
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
};

async function measure(name: string, n: number, args: unknown[]): Promise<void> {
  for (let i = 0; i < Math.min(300, n); i++) await call(args);
  const p50s: number[] = [];
  const p99s: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await call(args);
      times.push(performance.now() - t);
    }
    p50s.push(quantile(times, 0.5) * 1000);
    p99s.push(quantile(times, 0.99) * 1000);
  }
  console.log(`${name}: p50 ${p50s.map((x) => x.toFixed(1)).join(' / ')} µs, p99 ${p99s.map((x) => x.toFixed(1)).join(' / ')} µs (rounds of ${n})`);
}

try {
  await measure('echo 100-byte string', SEQ, ['x'.repeat(100)]);
  if (process.argv.includes('--bytes')) await measure('echo 1 MiB bytes', Math.max(50, SEQ / 20), [new Uint8Array(1024 * 1024).fill(7)]);
} finally {
  await pools.destroy();
  rmSync(dir, { recursive: true, force: true });
}
