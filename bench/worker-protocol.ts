/**
 * The worker protocol alone, without HTTP: `echo` of a 100-byte string through the pool
 * (sequential, like bench/run.ts's sequential figure), and, with protocol v2, a 1 MiB bytes
 * round trip. Real sandboxed workers, the agent's own pool wiring (test/helpers/pool.ts).
 * Besides latency it prints the CPU each call cost this process (the agent's side of the hop:
 * worker.ts, pool.ts, the codec) and the worker processes (/proc/<pid>/schedstat), per round.
 *
 *   bun bench/worker-protocol.ts [--bytes]
 *
 * Env: SKEIN_BENCH_SEQ (calls per round, default 2000), SKEIN_BENCH_ROUNDS (default 3),
 * SKEIN_BENCH_COMPARE (another source checkout of skein, e.g. `git archive` of the commit
 * before a change with node_modules linked in: its pools run in this same process, in rounds
 * interleaved with this tree's, for before/after figures of one run).
 */
import { readFileSync, rmSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { startPools as StartPools } from '../test/helpers/pool.ts';

const SEQ = Number(process.env.SKEIN_BENCH_SEQ ?? 2000);
const ROUNDS = Number(process.env.SKEIN_BENCH_ROUNDS ?? 3);
const ROOT = join(import.meta.dirname, '..');
const COMPARE = process.env.SKEIN_BENCH_COMPARE;

interface Target {
  name: string;
  dir: string;
  dispatch: (args: unknown[]) => Promise<unknown>;
  destroy: () => Promise<void>;
}

async function startTarget(name: string, root: string): Promise<Target> {
  const { startPools } = (await import(join(root, 'test/helpers/pool.ts'))) as { startPools: typeof StartPools };
  const dir = mkdtempSync(join(tmpdir(), 'skein-bench-proto-'));
  const { pools } = await startPools(
    {
      workers: { poolSize: 1, isolation: 'shared', maxCallsPerWorker: 0 },
      limits: { maxResultBytes: 4 * 1024 * 1024 },
      routines: { echo: { file: join(root, 'routines/examples.py') } },
    },
    dir,
  );
  return {
    name,
    dir,
    dispatch: async (args) => {
      const outcome = await pools.dispatch({ routine: 'echo', args, kwargs: {}, timeoutMs: 10_000 });
      if (!outcome.ok) throw outcome.error;
      return outcome.value;
    },
    destroy: () => pools.destroy(),
  };
}

/** CPU seconds run by every process below this one (the workers, bwrap if any): schedstat's nanoseconds, not stat's 10 ms ticks. */
function descendantsCpu(pid = process.pid): number {
  let total = 0;
  let children: string[];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim().split(' ').filter(Boolean);
  } catch {
    return 0;
  }
  for (const child of children) {
    try {
      total += Number(readFileSync(`/proc/${child}/schedstat`, 'latin1').split(' ', 1)[0]) / 1e9;
    } catch {
      continue;
    }
    total += descendantsCpu(Number(child));
  }
  return total;
}

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
const median = (xs: number[]) => quantile(xs, 0.5);

async function measure(name: string, targets: Target[], n: number, args: unknown[]): Promise<void> {
  for (const t of targets) for (let i = 0; i < Math.min(1000, n); i++) await t.dispatch(args);
  const figures = new Map(targets.map((t) => [t, { p50: [] as number[], p99: [] as number[], agent: [] as number[], workers: [] as number[] }]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
      const f = figures.get(t)!;
      const times: number[] = [];
      const cpu0 = process.cpuUsage();
      const w0 = descendantsCpu();
      for (let i = 0; i < n; i++) {
        const start = performance.now();
        await t.dispatch(args);
        times.push(performance.now() - start);
      }
      const cpu = process.cpuUsage(cpu0);
      f.workers.push(((descendantsCpu() - w0) * 1e6) / n);
      f.agent.push((cpu.user + cpu.system) / n);
      f.p50.push(quantile(times, 0.5) * 1000);
      f.p99.push(quantile(times, 0.99) * 1000);
    }
  }
  const fmt = (xs: number[]) => `${median(xs).toFixed(1)} (${xs.map((x) => x.toFixed(1)).join(' / ')})`;
  for (const t of targets) {
    const f = figures.get(t)!;
    console.log(`${name} [${t.name}]: p50 ${fmt(f.p50)} µs, p99 ${fmt(f.p99)} µs; CPU per call: agent ${fmt(f.agent)} µs, workers ${fmt(f.workers)} µs (rounds of ${n})`);
  }
  if (targets.length === 2) {
    // Round by round: adjacent rounds share the machine's load, so their ratio drifts less than the medians.
    const [a, b] = targets.map((t) => figures.get(t)!);
    const ratios = (k: 'p50' | 'p99' | 'agent' | 'workers') => median(a![k].map((x, i) => x / b![k][i]!)).toFixed(3);
    console.log(`${name} this ÷ compare, median of the rounds' ratios: p50 ${ratios('p50')}, p99 ${ratios('p99')}, agent CPU ${ratios('agent')}, workers CPU ${ratios('workers')}`);
  }
}

const targets = [await startTarget('this tree', ROOT)];
if (COMPARE) targets.push(await startTarget(`compare: ${COMPARE}`, resolve(COMPARE)));
try {
  await measure('echo 100-byte string', targets, SEQ, ['x'.repeat(100)]);
  if (process.argv.includes('--bytes')) await measure('echo 1 MiB bytes', targets, Math.max(50, SEQ / 20), [new Uint8Array(1024 * 1024).fill(7)]);
} finally {
  for (const t of targets) {
    await t.destroy();
    rmSync(t.dir, { recursive: true, force: true });
  }
}
