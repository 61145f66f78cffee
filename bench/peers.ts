/**
 * `npm run bench:peers`: the bench workload (echo of a 100-byte string: sequential p50/p99,
 * then throughput at 64 in flight) against skein and the systems it is compared with, in
 * interleaved rounds on this machine:
 *
 *   baseline  raw Bun node:http2 + mTLS echo (bench/baseline-server.ts), the agent's client
 *   skein     dist/skein: mTLS, sandbox strict, audit on
 *   pipe      a Python process echoing JSON lines over a pipe (bench/lib/pipe-echo.ts)
 *   celery    Celery + Redis (Debian's python3-celery, redis-server): solo-pool worker
 *   dask      Dask distributed (Debian's python3-distributed): LocalCluster, 2 worker
 *             processes, mutual TLS
 *
 * Celery and Dask are driven by their own Python clients (bench/peers/driver.py), the others
 * by this process. Missing Debian packages are installed with apt-get when run as root;
 * otherwise it fails at once naming them. Everything listens on 127.0.0.1 only (redis on a
 * port picked here), every loop is bounded, and every process is stopped by its PID.
 * Prints the side-by-side table (medians of rounds, ranges) and writes
 * bench/results/peers-latest.json.
 *
 * Env: SKEIN_BENCH_ROUNDS (5), SKEIN_BENCH_SEQ (sequential calls per round, 2000),
 * SKEIN_BENCH_CONC_CALLS (calls at 64 in flight per round for skein, baseline and pipe:
 * 20000), SKEIN_BENCH_PEER_CONC_CALLS (the same for Celery and Dask: 3000),
 * SKEIN_BENCH_OUT (bench/results/peers-latest.json).
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Procs, freePort } from './lib/procs.ts';
import { callTarget, fmtSpread, measureRounds, resultHeader, writeResults, type Sizes, type Target } from './lib/rounds.ts';
import { ratio } from './lib/stats.ts';
import { agentConfig, client, echoCall, ROOT, startAgent, startBaseline } from './lib/skein.ts';
import { startPipeEcho } from './lib/pipe-echo.ts';
import { CONCURRENCY, PAYLOAD } from './lib/workload.ts';

const ROUNDS = Number(process.env.SKEIN_BENCH_ROUNDS ?? 5);
const SEQ = Number(process.env.SKEIN_BENCH_SEQ ?? 2000);
const FAST: Sizes = { sequential: SEQ, concurrent: Number(process.env.SKEIN_BENCH_CONC_CALLS ?? 20000), warmUp: 300 };
const SLOW: Sizes = { sequential: SEQ, concurrent: Number(process.env.SKEIN_BENCH_PEER_CONC_CALLS ?? 3000), warmUp: 100 };
const OUT = process.env.SKEIN_BENCH_OUT ?? join(ROOT, 'bench/results/peers-latest.json');
/** Debian's interpreter: the one python3-celery and python3-distributed install into. */
const DEBIAN_PYTHON = '/usr/bin/python3';
const PACKAGES = ['redis-server', 'python3-redis', 'python3-celery', 'python3-distributed', 'python3-dask', 'python3-cryptography'];
const PEERS_DIR = join(ROOT, 'bench/peers');
/** A driver's answer to one command: a round of 2,000 Dask calls takes ~20 s here. */
const ANSWER_TIMEOUT_MS = 600_000;

function missingPackages(): string[] {
  return PACKAGES.filter((p) => spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' }).stdout?.includes('install ok installed') !== true);
}

function ensurePackages(): void {
  let missing = missingPackages();
  if (!missing.length) return;
  if (process.getuid?.() !== 0) {
    console.error(`bench:peers needs the Debian packages ${missing.join(', ')}: install them (apt-get install ${missing.join(' ')}) or run as root`);
    process.exit(2);
  }
  console.error(`installing ${missing.join(', ')} with apt-get`);
  const apt = (...args: string[]) => spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 900_000 });
  // A fresh machine has no package lists yet: update once, then install.
  if (apt('install', '-y', '-q', '--no-install-recommends', ...missing).status !== 0) {
    apt('update', '-q');
    apt('install', '-y', '-q', '--no-install-recommends', ...missing);
  }
  missing = missingPackages();
  if (missing.length) {
    console.error(`apt-get could not install ${missing.join(', ')}`);
    process.exit(2);
  }
}

/** A Python driver (bench/peers/driver.py) answering one JSON line per command. */
async function startDriver(
  procs: Procs,
  kind: 'celery' | 'dask',
  env: Record<string, string>,
): Promise<{ target: (sizes: Sizes, description: string) => Target; proc: ChildProcess; info: Record<string, unknown> }> {
  const started = await procs.start(DEBIAN_PYTHON, [join(PEERS_DIR, 'driver.py'), kind], /^\{"ready": true.*\}$/m, {
    stream: 'stdout',
    stdin: true,
    cwd: PEERS_DIR,
    env: { ...env, SKEIN_BENCH_PAYLOAD: PAYLOAD },
    timeoutMs: 120_000,
  });
  const proc = started.proc;
  const lines = createInterface({ input: proc.stdout! });
  const queue: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  lines.on('line', (l) => {
    if (!l.startsWith('{')) return; // what is left of the ready line's chunk
    if (waiters.length) waiters.shift()!(l);
    else queue.push(l);
  });
  const ask = (cmd: string): Promise<Record<string, number>> =>
    new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`${kind} driver did not answer "${cmd}" within ${ANSWER_TIMEOUT_MS / 1000} s`)), ANSWER_TIMEOUT_MS);
      const take = (l: string) => {
        clearTimeout(timer);
        res(JSON.parse(l) as Record<string, number>);
      };
      proc.stdin!.write(`${cmd}\n`);
      if (queue.length) take(queue.shift()!);
      else waiters.push(take);
    });
  // The ready line itself was consumed by Procs.start's matcher before `lines` existed.
  const info = JSON.parse(started.match[0]) as Record<string, unknown>;
  return {
    proc,
    info,
    target: (sizes, description) => ({
      name: kind,
      description,
      warmUp: async () => void (await ask(`warm ${sizes.warmUp}`)),
      round: async () => {
        const r = await ask(`round ${sizes.sequential} ${sizes.concurrent}`);
        return { p50: r.p50!, p99: r.p99!, throughput: r.throughput! };
      },
    }),
  };
}

ensurePackages();
const procs = new Procs();

const agent = await startAgent(procs, agentConfig('bench'));
const basePort = await startBaseline(procs, agent);
const pipe = await startPipeEcho(procs);

const redisPort = await freePort();
const redis = await procs.start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], /Ready to accept connections/, {
  stream: 'stdout',
});
redis.proc.stdout?.resume();
const redisEnv = { SKEIN_BENCH_REDIS_URL: `redis://127.0.0.1:${redisPort}/0` };
// --pool solo: one process runs the tasks (the published Celery figures used a solo worker);
// no gossip, mingle or heartbeat: nothing but the bench on the broker.
// Log level warning: at info the worker writes two lines per task. Its banner (stdout) shows it
// started; the driver's first call waits until it consumes.
const celeryWorker = await procs.start(
  DEBIAN_PYTHON,
  ['-m', 'celery', '-A', 'celery_app', 'worker', '--pool', 'solo', '-l', 'warning', '--without-gossip', '--without-mingle', '--without-heartbeat'],
  /\[queues\]/,
  { stream: 'stdout', cwd: PEERS_DIR, env: redisEnv, timeoutMs: 60_000 },
);
celeryWorker.proc.stdout?.resume();
const celery = await startDriver(procs, 'celery', redisEnv);
const dask = await startDriver(procs, 'dask', {});

const baseClient = client(basePort, agent.creds);
const skeinClient = client(agent.port, agent.creds);
console.log(
  `skein bench:peers: ${ROUNDS} interleaved rounds; per round and target ${SEQ} sequential calls, then ${FAST.concurrent} (skein, baseline, pipe) or ${SLOW.concurrent} (Celery, Dask) calls at ${CONCURRENCY} in flight; medians of rounds (ranges)\n`,
);
const results = await measureRounds(
  [
    callTarget('baseline', 'raw Bun node:http2 + mTLS echo server, same client as skein', echoCall(baseClient), FAST),
    callTarget('skein', 'dist/skein: mTLS, sandbox strict, audit on, echo in a Python worker', echoCall(skeinClient), FAST),
    callTarget('pipe', 'Python pipe echo: JSON lines over a pipe, no network, no sandbox (pipelined for throughput)', pipe.call, FAST),
    celery.target(SLOW, `Celery ${String(celery.info.version)} + Redis, solo worker, JSON, Python client`),
    dask.target(SLOW, `Dask distributed ${String(dask.info.version)}, LocalCluster of 2 worker processes, mutual TLS, Python client`),
  ],
  ROUNDS,
);

for (const d of [celery, dask]) {
  d.proc.stdin!.write('quit\n');
  await procs.stop(d.proc, 20_000);
}
await skeinClient.close();
await baseClient.close();
for (const p of [celeryWorker.proc, redis.proc, pipe.proc, agent.started.proc]) await procs.stop(p);

const base = results.baseline!;
const x = (s: { median: number; min: number; max: number }) => `${s.median.toFixed(2)}× (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
console.log('\n| system | p50 (ms) | p99 (ms) | throughput @64 (calls/s) | p50 vs raw | p99 vs raw | throughput vs raw |');
console.log('|---|---|---|---|---|---|---|');
for (const [name, r] of Object.entries(results)) {
  console.log(
    `| ${name} | ${fmtSpread(r.p50)} | ${fmtSpread(r.p99)} | ${fmtSpread(r.throughput, 0)} | ${x(ratio(r.rounds, base.rounds, 'p50'))} | ${x(ratio(r.rounds, base.rounds, 'p99'))} | ${x(ratio(r.rounds, base.rounds, 'throughput'))} |`,
  );
}
console.log('');
for (const [name, r] of Object.entries(results)) console.log(`${name}: ${r.description}`);
const sizes = Object.fromEntries(Object.keys(results).map((k) => [k, k === 'celery' || k === 'dask' ? SLOW : FAST]));
writeResults(OUT, {
  ...resultHeader('peers', ROUNDS, sizes),
  peers: { celery: { python: celery.info.python, version: celery.info.version }, dask: { python: dask.info.python, version: dask.info.version, tls: true } },
  targets: results,
  ratiosToBaseline: Object.fromEntries(
    Object.entries(results).map(([k, r]) => [k, { p50: ratio(r.rounds, base.rounds, 'p50'), p99: ratio(r.rounds, base.rounds, 'p99'), throughput: ratio(r.rounds, base.rounds, 'throughput') }]),
  ),
});
console.log(`\nwrote ${OUT}`);
process.exit(0);
