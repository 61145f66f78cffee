/**
 * The async calls bench: what accepting async calls costs, and what async work costs the
 * sync callers of the same agent. Interleaved rounds, each:
 *   - the raw baseline's echo round trips/s at 64 concurrent (bench/baseline-server.ts: same
 *     client, same mTLS), then async submits/s: BACKLOG × POST /v1/calls/sink at 64
 *     concurrent (202s per second);
 *   - sync echo p50/p99 (SEQ sequential calls, own connection) at once, while the agent runs
 *     that backlog (the bench checks it was still running at the end);
 *   - sync echo p50/p99 while another connection submits async calls at a paced PACED/s;
 *   - sync echo p50/p99 with the agent idle.
 * The async calls go to `sink` (the echo function in a pool of its own worker), so the sync
 * `echo` calls never wait for a worker behind them: what they pay is the agent's event loop
 * and CPU, which the store's commits share. After each backlog the bench waits for the agent
 * to have run it, so no measurement shares the CPU with the last one's.
 * Figures go to bench/results/calls-async-latest.json (not versioned). Every process started
 * here is stopped by its PID. Env: SKEIN_BENCH_ROUNDS (default 5), SKEIN_BENCH_SEQ (1000).
 */
import { join } from 'node:path';
import { Procs } from './lib/procs.ts';
import { backlogRun, call, decoder, Raw, rate } from './lib/raw-h2.ts';
import { fmtSpread, resultHeader, writeResults } from './lib/rounds.ts';
import { quantile, spread, type Spread } from './lib/stats.ts';
import { agentConfig, ROOT, startAgent, startBaseline } from './lib/skein.ts';
import { CONCURRENCY, PAYLOAD } from './lib/workload.ts';

const ROUNDS = Number(process.env.SKEIN_BENCH_ROUNDS ?? 5);
const SEQ = Number(process.env.SKEIN_BENCH_SEQ ?? 1000);
const BACKLOG = 4000;
const PACED = 1000;
const OUT = process.env.SKEIN_BENCH_CALLS_ASYNC_OUT ?? join(ROOT, 'bench/results/calls-async-latest.json');
const EXAMPLES = join(ROOT, 'routines/examples.py');

async function syncEcho(raw: Raw): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < SEQ; i++) {
    const t = performance.now();
    await call(raw, '/v1/dispatch/echo', [PAYLOAD], 200);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { p50: quantile(times, 0.5), p99: quantile(times, 0.99) };
}

/** Runs `measure` while async calls are submitted at `perSecond` (in 10 ms ticks); returns its figures and the 202s per second meanwhile. */
async function whileSubmitting<T>(raw: Raw, perSecond: number, measure: () => Promise<T>): Promise<{ value: T; submitsPerSecond: number }> {
  let accepted = 0;
  const inFlight = new Set<Promise<unknown>>();
  const t = performance.now();
  const tick = setInterval(() => {
    for (let i = 0; i < perSecond / 100; i++) {
      const p = call(raw, '/v1/calls/sink', [PAYLOAD], 202).then(() => accepted++);
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    }
  }, 10);
  const value = await measure();
  clearInterval(tick);
  const seconds = (performance.now() - t) / 1000;
  await Promise.all(inFlight);
  return { value, submitsPerSecond: accepted / seconds };
}

async function queuedLeft(raw: Raw): Promise<boolean> {
  const res = await raw.request('/v1/calls?status=queued&limit=1', undefined, { accept: 'application/cbor' }, 'GET');
  return (decoder.decode(res.body) as { calls: unknown[] }).calls.length > 0;
}

const procs = new Procs();
const agent = await startAgent(
  procs,
  agentConfig('bench-calls-async', {
    authorization: { allow: [{ identities: ['spiffe://skein.local/client/dev-client'], routines: ['*'] }] },
    routines: { echo: { file: EXAMPLES }, sink: { file: EXAMPLES, function: 'echo', workers: 1 } },
    // Submissions outrun the pool: room for every call of every round.
    calls: { maxStored: 1_000_000, maxBytes: 1024 * 1024 * 1024 },
  }),
);
const basePort = await startBaseline(procs, agent);
const sync = new Raw(agent.port, agent.creds);
const submitter = new Raw(agent.port, agent.creds);
const base = new Raw(basePort, agent.creds);

const got = {
  baselineEchoPerSecond: [] as number[],
  asyncSubmitsPerSecond: [] as number[],
  backlogP50: [] as number[],
  backlogP99: [] as number[],
  pacedP50: [] as number[],
  pacedP99: [] as number[],
  pacedSubmitsPerSecond: [] as number[],
  idleP50: [] as number[],
  idleP99: [] as number[],
};

// Warm-up: workers, JIT, connections, the store's first pages.
for (let i = 0; i < 200; i++) {
  await call(sync, '/v1/dispatch/echo', [PAYLOAD], 200);
  await call(submitter, '/v1/calls/sink', [PAYLOAD], 202);
  await call(base, '/echo', [PAYLOAD], 200);
}
await backlogRun(submitter);
const f = (x: { p50: number; p99: number }) => `${x.p50.toFixed(3)}/${x.p99.toFixed(3)}`;
for (let r = 0; r < ROUNDS; r++) {
  got.baselineEchoPerSecond.push(await rate(BACKLOG, () => call(base, '/echo', [PAYLOAD], 200)));
  got.asyncSubmitsPerSecond.push(await rate(BACKLOG, () => call(submitter, '/v1/calls/sink', [PAYLOAD], 202)));
  const backlog = await syncEcho(sync);
  if (!(await queuedLeft(submitter))) process.stderr.write('  (the backlog ran out before the sync calls ended: raise BACKLOG)\n');
  got.backlogP50.push(backlog.p50);
  got.backlogP99.push(backlog.p99);
  await backlogRun(submitter);
  const paced = await whileSubmitting(submitter, PACED, () => syncEcho(sync));
  got.pacedP50.push(paced.value.p50);
  got.pacedP99.push(paced.value.p99);
  got.pacedSubmitsPerSecond.push(paced.submitsPerSecond);
  await backlogRun(submitter);
  const idle = await syncEcho(sync);
  got.idleP50.push(idle.p50);
  got.idleP99.push(idle.p99);
  process.stderr.write(
    `  round ${r + 1}/${ROUNDS}: ${Math.round(got.asyncSubmitsPerSecond.at(-1)!)} submits/s (baseline ${Math.round(got.baselineEchoPerSecond.at(-1)!)} echo/s); ` +
      `sync echo p50/p99 ms: backlog running ${f(backlog)}, submitting ${Math.round(paced.submitsPerSecond)}/s ${f(paced.value)}, idle ${f(idle)}\n`,
  );
}
sync.close();
submitter.close();
base.close();
await procs.stop(agent.started.proc);

const figures: Record<string, Spread> = Object.fromEntries(Object.entries(got).map(([k, v]) => [k, spread(v)]));
const ratio = spread(got.asyncSubmitsPerSecond.map((x, i) => x / got.baselineEchoPerSecond[i]!));
console.log(`\nskein async calls bench: ${ROUNDS} interleaved rounds; medians of rounds (ranges)\n`);
console.log('| measure | figure |');
console.log('|---|---|');
console.log(`| async submits/s @${CONCURRENCY} | ${fmtSpread(figures.asyncSubmitsPerSecond!, 0)} |`);
console.log(`| raw h2 baseline echo round trips/s @${CONCURRENCY} | ${fmtSpread(figures.baselineEchoPerSecond!, 0)} (submits ÷ baseline ${ratio.median.toFixed(2)}×) |`);
console.log(`| sync echo p50 / p99 (ms), idle | ${fmtSpread(figures.idleP50!)} / ${fmtSpread(figures.idleP99!)} |`);
console.log(`| sync echo p50 / p99 (ms), a backlog of ${BACKLOG} running | ${fmtSpread(figures.backlogP50!)} / ${fmtSpread(figures.backlogP99!)} |`);
console.log(
  `| sync echo p50 / p99 (ms), async submissions at ${PACED}/s (achieved ${fmtSpread(figures.pacedSubmitsPerSecond!, 0)}) | ${fmtSpread(figures.pacedP50!)} / ${fmtSpread(figures.pacedP99!)} |`,
);
writeResults(OUT, { ...resultHeader('calls-async', ROUNDS, {}), figures: { ...figures, submitsToBaseline: ratio }, rounds: got });
console.log(`\nwrote ${OUT}`);
process.exit(0);
