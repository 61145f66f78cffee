/**
 * The calls bench (part of `npm run bench`): what the call shapes of docs/calls.md cost, each
 * next to the raw transport moving the same bytes in the same run (bench/baseline-server.ts,
 * same client, same mTLS), in interleaved rounds:
 *   - stream items/s: one stream of ITEMS 1 KiB items (a generator routine) per round;
 *   - stream MB/s: one stream of 64 × 256 KiB items;
 *   - 1 MiB bytes round trip: a CBOR byte string in, the same bytes out (sequential, ms);
 *   - async submit rate: POST /v1/calls/echo at 64 concurrent (202s per second), next to the
 *     baseline's echo round trips per second.
 * Figures go to bench/results/calls.json. Every process started here is stopped by its PID.
 * Env: SKEIN_BENCH_ROUNDS (default 5).
 */
import { join } from 'node:path';
import { decodeMultiple } from 'cbor-x';
import { Procs } from './lib/procs.ts';
import { backlogRun, call, decoder, Raw, rate } from './lib/raw-h2.ts';
import { fmtSpread, resultHeader, writeResults } from './lib/rounds.ts';
import { spread, type Spread } from './lib/stats.ts';
import { agentConfig, ROOT, startAgent, startBaseline } from './lib/skein.ts';
import { CONCURRENCY } from './lib/workload.ts';

const ROUNDS = Number(process.env.SKEIN_BENCH_ROUNDS ?? 5);
const ITEMS = 2000;
const BIG = { n: 64, size: 256 * 1024 };
const MiB = 1024 * 1024;
const SUBMITS = 2000;
const OUT = process.env.SKEIN_BENCH_CALLS_OUT ?? join(ROOT, 'bench/results/calls.json');

/** A stream of n items of size bytes: seconds until its last frame, checked to be done. */
async function stream(raw: Raw, path: string, n: number, size: number): Promise<number> {
  const t = performance.now();
  const body = await call(raw, path, [n, size], 200, { accept: 'application/cbor-seq' });
  const seconds = (performance.now() - t) / 1000;
  const frames = decodeMultiple(body) as Array<Record<string, unknown>>;
  const last = frames[frames.length - 1];
  if (frames.length !== n + 1 || last?.done !== true) throw new Error(`${path}: stream ended with ${JSON.stringify(last).slice(0, 200)} after ${frames.length - 1} items`);
  return seconds;
}

async function bytesRoundTrip(raw: Raw, path: string, data: Uint8Array): Promise<number> {
  const t = performance.now();
  const out = decoder.decode(await call(raw, path, [data], 200)) as { result: Uint8Array };
  const ms = performance.now() - t;
  if (out.result.length !== data.length) throw new Error(`${path}: ${out.result.length} bytes came back for ${data.length}`);
  return ms;
}

const procs = new Procs();
const agent = await startAgent(
  procs,
  agentConfig('bench-calls', {
    authorization: { allow: [{ identities: ['spiffe://skein.local/client/dev-client'], routines: ['*'] }] },
    routines: { echo: { file: join(ROOT, 'routines/examples.py') }, blob: { file: join(ROOT, 'bench/routines.py') }, items: { file: join(ROOT, 'bench/routines.py') } },
    limits: { maxBodyBytes: 4 * MiB, maxResultBytes: 64 * MiB },
    // Submissions outrun the pool: room for every call of every round.
    calls: { maxStored: 1_000_000 },
  }),
);
const basePort = await startBaseline(procs, agent);
const sk = new Raw(agent.port, agent.creds);
const base = new Raw(basePort, agent.creds);
const data = new Uint8Array(MiB).map((_, i) => i & 0xff);

type Pair = { skein: number[]; baseline: number[] };
const got: Record<string, Pair> = {
  itemsPerSecond: { skein: [], baseline: [] },
  mbPerSecond: { skein: [], baseline: [] },
  bytesRoundTripMs: { skein: [], baseline: [] },
  asyncSubmitsPerSecond: { skein: [], baseline: [] },
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// Warm-up: workers, JIT, connections.
for (let i = 0; i < 3; i++) {
  await stream(sk, '/v1/dispatch/items', 100, 1024);
  await stream(base, '/stream', 100, 1024);
  await bytesRoundTrip(sk, '/v1/dispatch/blob', data);
  await bytesRoundTrip(base, '/echo', data);
}
for (let r = 0; r < ROUNDS; r++) {
  got.itemsPerSecond!.skein.push(ITEMS / (await stream(sk, '/v1/dispatch/items', ITEMS, 1024)));
  got.itemsPerSecond!.baseline.push(ITEMS / (await stream(base, '/stream', ITEMS, 1024)));
  got.mbPerSecond!.skein.push((BIG.n * BIG.size) / MiB / (await stream(sk, '/v1/dispatch/items', BIG.n, BIG.size)));
  got.mbPerSecond!.baseline.push((BIG.n * BIG.size) / MiB / (await stream(base, '/stream', BIG.n, BIG.size)));
  const trips = { skein: [] as number[], baseline: [] as number[] };
  for (let i = 0; i < 10; i++) {
    trips.skein.push(await bytesRoundTrip(sk, '/v1/dispatch/blob', data));
    trips.baseline.push(await bytesRoundTrip(base, '/echo', data));
  }
  got.bytesRoundTripMs!.skein.push(median(trips.skein));
  got.bytesRoundTripMs!.baseline.push(median(trips.baseline));
  got.asyncSubmitsPerSecond!.skein.push(await rate(SUBMITS, () => call(sk, '/v1/calls/echo', ['x'], 202)));
  got.asyncSubmitsPerSecond!.baseline.push(await rate(SUBMITS, () => call(base, '/echo', ['x'], 200)));
  await backlogRun(sk);
  process.stderr.write(
    `  round ${r + 1}/${ROUNDS}: ${Object.entries(got)
      .map(([k, v]) => `${k} ${v.skein.at(-1)!.toFixed(1)} vs ${v.baseline.at(-1)!.toFixed(1)}`)
      .join(', ')}\n`,
  );
}
sk.close();
base.close();
await procs.stop(agent.started.proc);

const summary: Record<string, { skein: Spread; baseline: Spread; ratio: Spread }> = {};
for (const [k, v] of Object.entries(got)) summary[k] = { skein: spread(v.skein), baseline: spread(v.baseline), ratio: spread(v.skein.map((x, i) => x / v.baseline[i]!)) };
const rows: Array<[string, string, number]> = [
  [`stream items/s (${ITEMS} × 1 KiB items)`, 'itemsPerSecond', 0],
  [`stream MB/s (${BIG.n} × 256 KiB items)`, 'mbPerSecond', 1],
  ['1 MiB bytes round trip (ms, CBOR byte string in and out)', 'bytesRoundTripMs', 2],
  [`async submits/s @${CONCURRENCY} (baseline: echo round trips/s)`, 'asyncSubmitsPerSecond', 0],
];
console.log(`\nskein calls bench: ${ROUNDS} interleaved rounds; medians of rounds (ranges)\n`);
console.log('| measure | raw h2 baseline | skein | ratio |');
console.log('|---|---|---|---|');
for (const [label, key, digits] of rows) {
  const s = summary[key]!;
  console.log(`| ${label} | ${fmtSpread(s.baseline, digits)} | ${fmtSpread(s.skein, digits)} | ${s.ratio.median.toFixed(2)}× (${s.ratio.min.toFixed(2)}–${s.ratio.max.toFixed(2)}) |`);
}
writeResults(OUT, { ...resultHeader('calls', ROUNDS, {}), figures: summary, rounds: got });
console.log(`\nwrote ${OUT}`);
process.exit(0);
