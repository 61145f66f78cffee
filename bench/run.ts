/**
 * `npm run bench`: the compiled agent on loopback (mTLS, strict sandbox, audit on) with the
 * `echo` routine, next to the raw baseline (bench/baseline-server.ts) measured in the same run
 * with the same client, and the agent with bearer-jwt + routine-policy. Rounds are
 * interleaved; prints medians of rounds with their ranges and writes the figures to
 * bench/results/latest.json (docs/benchmarks.md describes the file). Then the first 2,000
 * calls after a fresh start and h2load; the cold start is bench/startup.ts's. Every process
 * started here is stopped by PID.
 *
 * Env: SKEIN_BENCH_ROUNDS (default 5; 1 for a quick run), SKEIN_BENCH_SEQ (sequential calls
 * per round, 2000), SKEIN_BENCH_CONC_CALLS (calls at 64 concurrent per round, 20000),
 * SKEIN_BENCH_OUT (results file, bench/results/latest.json), SKEIN_BENCH_COMPARE (the path of
 * another skein binary, e.g. one built before a change: measured as target "compare" in the
 * same interleaved rounds, its ratio to skein printed, for before/after figures of one run).
 */
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { Procs } from './lib/procs.ts';
import { fmtSpread, measureRounds, resultHeader, callTarget, writeResults, type Sizes } from './lib/rounds.ts';
import { ratio } from './lib/stats.ts';
import { agentConfig, client, echoCall, ROOT, startAgent, startBaseline } from './lib/skein.ts';
import { CONCURRENCY } from './lib/workload.ts';
import { freshRounds } from './lib/fresh.ts';
import { h2loadRounds } from './lib/h2load.ts';

const ROUNDS = Number(process.env.SKEIN_BENCH_ROUNDS ?? 5);
const SIZES: Sizes = { sequential: Number(process.env.SKEIN_BENCH_SEQ ?? 2000), concurrent: Number(process.env.SKEIN_BENCH_CONC_CALLS ?? 20000), warmUp: 300 };
const OUT = process.env.SKEIN_BENCH_OUT ?? join(ROOT, 'bench/results/latest.json');
const COMPARE = process.env.SKEIN_BENCH_COMPARE;
if (!(ROUNDS >= 1 && SIZES.sequential >= 100 && SIZES.concurrent >= CONCURRENCY)) {
  console.error(`SKEIN_BENCH_ROUNDS must be ≥ 1, SKEIN_BENCH_SEQ ≥ 100 and SKEIN_BENCH_CONC_CALLS ≥ ${CONCURRENCY}`);
  process.exit(2);
}

const procs = new Procs();
const agent = await startAgent(procs, agentConfig('bench'));
const basePort = await startBaseline(procs, agent);

// The same agent with authentication and authorization plugins: bearer-jwt (EdDSA) and
// routine-policy, for the overhead figure (target: p50 within 15% of without).
const jwtKey = generateKeyPairSync('ed25519');
const authAgent = await startAgent(
  procs,
  agentConfig('bench-auth', {
    plugins: {
      dir: join(ROOT, 'plugins'),
      enabled: [
        { name: 'bearer-jwt', options: { algorithms: ['EdDSA'], keys: [jwtKey.publicKey.export({ type: 'spki', format: 'pem' }).toString()], audience: 'skein' } },
        { name: 'routine-policy', options: { rules: [{ effect: 'allow', identities: ['jwt:bench'], routines: ['echo'] }], default: 'deny' } },
      ],
    },
  }),
);
const compareAgent = COMPARE ? await startAgent(procs, agentConfig('bench-compare'), { bin: [COMPARE] }) : undefined;
const token = await new SignJWT({ sub: 'bench', aud: 'skein' }).setProtectedHeader({ alg: 'EdDSA' }).setExpirationTime('1h').sign(jwtKey.privateKey);

console.log(`skein bench: ${ROUNDS} interleaved rounds, ${SIZES.sequential} sequential + ${SIZES.concurrent} calls at ${CONCURRENCY} concurrent per round and target; medians of rounds (ranges)\n`);
const baseClient = client(basePort, agent.creds);
const skeinClient = client(agent.port, agent.creds);
const authClient = client(authAgent.port, authAgent.creds, { token });
const compareClient = compareAgent ? client(compareAgent.port, compareAgent.creds) : undefined;
const results = await measureRounds(
  [
    ...(compareClient ? [callTarget('compare', `${COMPARE}: as skein, another build`, echoCall(compareClient), SIZES)] : []),
    callTarget('baseline', 'raw Bun node:http2 + mTLS echo server (bench/baseline-server.ts), same client', echoCall(baseClient), SIZES),
    callTarget('skein', 'dist/skein: mTLS, sandbox strict, audit on (stderr to a file), echo in Python', echoCall(skeinClient), SIZES),
    callTarget('skein+plugins', 'as skein, with bearer-jwt (EdDSA) + routine-policy', echoCall(authClient), SIZES),
  ],
  ROUNDS,
);
for (const c of [baseClient, skeinClient, authClient, compareClient]) await c?.close();
if (compareAgent) await procs.stop(compareAgent.started.proc);
await procs.stop(authAgent.started.proc);
await procs.stop(agent.started.proc);

// The first 2,000 calls after a fresh start (the agent's and the baseline's), then h2load.
console.log(`\nfresh starts: ${ROUNDS} interleaved rounds, a new baseline and a new agent each, 200 warm-up + 2,000 timed sequential calls`);
const fresh = await freshRounds(procs, ROUNDS);
console.log(`h2load: ${ROUNDS} interleaved rounds of ${SIZES.concurrent} requests, 1 connection, ${CONCURRENCY} streams, one-way TLS (agent: bearer token)`);
const h2 = await h2loadRounds(procs, ROUNDS, SIZES.concurrent);

const base = results.baseline!;
const sk = results.skein!;
const auth = results['skein+plugins']!;
const ratios = {
  p50: ratio(sk.rounds, base.rounds, 'p50'),
  p99: ratio(sk.rounds, base.rounds, 'p99'),
  throughput: ratio(sk.rounds, base.rounds, 'throughput'),
  pluginsP50: ratio(auth.rounds, sk.rounds, 'p50'),
  pluginsThroughput: ratio(auth.rounds, sk.rounds, 'throughput'),
};
// The goals of the transport-speed work, judged on the medians of rounds.
const goals = {
  'p50 ≤ 1.5× raw': ratios.p50.median <= 1.5,
  'p99 ≤ 2× raw': ratios.p99.median <= 2,
  'p99 ≤ 1 ms': sk.p99.median <= 1,
  'throughput ≥ 0.6× raw': ratios.throughput.median >= 0.6,
  'fresh start: p99 ≤ 2× raw': fresh.ratios.p99.median <= 2,
  'fresh start: p99 ≤ 1 ms': fresh.skein.p99.median <= 1,
  'h2load ≥ 0.5× raw': h2.ratio.median >= 0.5,
  'plugins p50 within 10%': ratios.pluginsP50.median <= 1.1,
};

const x = (s: { median: number; min: number; max: number }) => `${s.median.toFixed(2)}× (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
console.log('\n| measure | raw h2 baseline | skein (echo, Python, mTLS) | ratio |');
console.log('|---|---|---|---|');
console.log(`| sequential p50 (ms) | ${fmtSpread(base.p50)} | ${fmtSpread(sk.p50)} | ${x(ratios.p50)} |`);
console.log(`| sequential p99 (ms) | ${fmtSpread(base.p99)} | ${fmtSpread(sk.p99)} | ${x(ratios.p99)} |`);
console.log(`| throughput @${CONCURRENCY} (calls/s) | ${fmtSpread(base.throughput, 0)} | ${fmtSpread(sk.throughput, 0)} | ${x(ratios.throughput)} |`);
console.log(`| with bearer-jwt + routine-policy: p50 (ms) | | ${fmtSpread(auth.p50)} | ${x(ratios.pluginsP50)} of skein |`);
console.log(`| with bearer-jwt + routine-policy: throughput @${CONCURRENCY} | | ${fmtSpread(auth.throughput, 0)} | ${x(ratios.pluginsThroughput)} of skein |`);
if (results.compare) {
  const cmp = results.compare;
  for (const k of ['p50', 'p99', 'throughput'] as const)
    console.log(`| compare (${COMPARE}) ${k} | | ${fmtSpread(cmp[k], k === 'throughput' ? 0 : 3)} | skein ÷ compare ${x(ratio(sk.rounds, cmp.rounds, k))} |`);
}
console.log(`| first 2,000 calls after a fresh start: p50 (ms) | ${fmtSpread(fresh.baseline.p50)} | ${fmtSpread(fresh.skein.p50)} | ${x(fresh.ratios.p50)} |`);
console.log(`| first 2,000 calls after a fresh start: p99 (ms) | ${fmtSpread(fresh.baseline.p99)} | ${fmtSpread(fresh.skein.p99)} | ${x(fresh.ratios.p99)} |`);
console.log(`| h2load @${CONCURRENCY}, one-way TLS (req/s) | ${fmtSpread(h2.baseline.throughput, 0)} | ${fmtSpread(h2.skein.throughput, 0)} (bearer token) | ${x(h2.ratio)} |`);
console.log(
  `\ngoals: ${Object.entries(goals)
    .map(([k, v]) => `${k} → ${v ? 'met' : 'NOT met'}`)
    .join('; ')}`,
);

writeResults(OUT, {
  ...resultHeader('bench', ROUNDS, { baseline: SIZES, skein: SIZES, 'skein+plugins': SIZES }),
  targets: results,
  fresh,
  h2load: h2,
  ratios,
  goals,
});
console.log(`\nwrote ${OUT}`);
process.exit(0);
