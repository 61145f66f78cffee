/**
 * `npm run bench`: the compiled agent on loopback over mTLS with the `echo` routine, next to
 * the raw baseline (bench/baseline-server.ts) measured in the same run with the same client.
 * Prints medians over ROUNDS rounds: sequential p50/p99 latency and throughput at 64
 * concurrent calls on one HTTP/2 connection. Every process started here is stopped by PID.
 *
 * Env: SKEIN_BENCH_ROUNDS (default 5), SKEIN_BENCH_SEQ (calls per sequential round, 2000),
 * SKEIN_BENCH_CONC_CALLS (calls per concurrent round, 20000).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { SkeinClient } from '../agent/client/index.ts';

const ROOT = resolve(import.meta.dir, '..');
const ROUNDS = Number(process.env.SKEIN_BENCH_ROUNDS ?? 5);
const SEQ = Number(process.env.SKEIN_BENCH_SEQ ?? 2000);
const CONC_CALLS = Number(process.env.SKEIN_BENCH_CONC_CALLS ?? 20000);
const CONCURRENCY = 64;

const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'skein-bench-'));
const cleanup = () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
};
process.on('exit', cleanup);

/**
 * Starts a process and resolves with the first match of `pattern` in its output. An agent's
 * stderr goes to a file, as a deployed agent's logs do: a pipe read by this process would wake
 * it for every audit line and bill the agent for a context switch per call.
 */
function startAndWait(cmd: string, args: string[], pattern: RegExp, stream: 'stdout' | 'stderr'): Promise<{ proc: ChildProcess; match: RegExpMatchArray }> {
  const logFile = join(dir, `${basename(cmd)}-${children.length}.log`);
  const fd = openSync(logFile, 'w');
  const proc = spawn(cmd, args, {
    cwd: dir,
    stdio: stream === 'stderr' ? ['ignore', 'ignore', fd] : ['ignore', 'pipe', fd],
    env: { ...process.env, CBOR_NATIVE_ACCELERATION_DISABLED: 'true' },
  });
  closeSync(fd);
  children.push(proc);
  return new Promise((res, rej) => {
    let seen = '';
    let done = false;
    const check = () => {
      if (done) return;
      if (stream === 'stderr') seen = readFileSync(logFile, 'utf8');
      const m = seen.match(pattern);
      if (m) {
        done = true;
        clearInterval(poll);
        clearTimeout(timer);
        proc.stdout?.resume();
        res({ proc, match: m });
      }
    };
    const poll = setInterval(check, 20);
    const timer = setTimeout(() => {
      clearInterval(poll);
      rej(new Error(`${cmd} did not start:\n${seen || readFileSync(logFile, 'utf8')}`));
    }, 20_000);
    proc.stdout?.on('data', (d: Buffer) => {
      if (!done) seen += d;
      check();
    });
    proc.on('exit', (code) => {
      if (!done) {
        clearInterval(poll);
        clearTimeout(timer);
        rej(new Error(`${cmd} exited ${code}:\n${readFileSync(logFile, 'utf8')}`));
      }
    });
  });
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function sequential(client: SkeinClient): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < SEQ; i++) {
    const t = performance.now();
    await client.dispatch('echo', { args: [i] });
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { p50: quantile(times, 0.5), p99: quantile(times, 0.99) };
}

async function concurrent(client: SkeinClient): Promise<number> {
  let next = 0;
  const t = performance.now();
  const lane = async () => {
    while (next < CONC_CALLS) {
      next++;
      await client.dispatch('echo', { args: [next] });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return CONC_CALLS / ((performance.now() - t) / 1000);
}

/**
 * Rounds are interleaved across targets (baseline, skein, skein + plugins), so every target
 * sees the same machine conditions in each round and the ratios compare like with like.
 */
async function measureAll(targets: Array<{ name: string; client: SkeinClient }>) {
  for (const t of targets) for (let i = 0; i < 300; i++) await t.client.dispatch('echo', { args: [i] }); // warm-up
  const rounds = new Map<string, Array<{ p50: number; p99: number; tput: number }>>(targets.map((t) => [t.name, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const t of targets) {
      const seq = await sequential(t.client);
      const tput = await concurrent(t.client);
      rounds.get(t.name)!.push({ ...seq, tput });
      process.stderr.write(`  round ${r + 1}/${ROUNDS} ${t.name}: p50 ${seq.p50.toFixed(3)} ms, p99 ${seq.p99.toFixed(3)} ms, ${Math.round(tput)} calls/s\n`);
    }
  }
  return Object.fromEntries(
    [...rounds].map(([name, rs]) => [name, { p50: median(rs.map((x) => x.p50)), p99: median(rs.map((x) => x.p99)), tput: median(rs.map((x) => x.tput)) }]),
  );
}

const config = {
  agent: { name: 'bench', listen: '127.0.0.1:0', stateDir: 'state' },
  log: { level: 'warn', format: 'json' },
  // Authorization is deny by default: the development client may run echo.
  authorization: { allow: [{ identities: ['spiffe://skein.local/client/dev-client'], routines: ['echo'] }] },
  routines: { echo: { file: join(ROOT, 'routines/examples.py') } },
};
writeFileSync(join(dir, 'agent.config.json'), JSON.stringify(config));
const bin = join(ROOT, 'dist/skein');
// The same agent with authentication and authorization plugins: bearer-jwt (EdDSA) and
// routine-policy, for the overhead figure (target: p50 within 15% of without).
const jwtKey = generateKeyPairSync('ed25519');
const pluginConfig = {
  ...config,
  agent: { name: 'bench-auth', listen: '127.0.0.1:0', stateDir: 'state-auth' },
  plugins: {
    dir: join(ROOT, 'plugins'),
    enabled: [
      { name: 'bearer-jwt', options: { algorithms: ['EdDSA'], keys: [jwtKey.publicKey.export({ type: 'spki', format: 'pem' }).toString()], audience: 'skein' } },
      { name: 'routine-policy', options: { rules: [{ effect: 'allow', identities: ['jwt:bench'], routines: ['echo'] }], default: 'deny' } },
    ],
  },
};
writeFileSync(join(dir, 'agent-auth.config.json'), JSON.stringify(pluginConfig));
const token = await new SignJWT({ sub: 'bench', aud: 'skein' }).setProtectedHeader({ alg: 'EdDSA' }).setExpirationTime('1h').sign(jwtKey.privateKey);
const agent = await startAndWait(bin, ['agent', '--config', join(dir, 'agent.config.json'), '--log-level', 'info'], /"msg":"listening","address":"[^"]*:(\d+)"/, 'stderr');
const agentPort = Number(agent.match[1]);
const pki = join(dir, 'state/pki');
const creds = { cert: readFileSync(join(pki, 'client-dev-client.crt')), key: readFileSync(join(pki, 'client-dev-client.key')), ca: readFileSync(join(pki, 'ca.crt')) };
const baseline = await startAndWait(process.execPath, [join(ROOT, 'bench/baseline-server.ts'), join(pki, 'agent-bench.crt'), join(pki, 'agent-bench.key'), join(pki, 'ca.crt')], /^(\d+)\n/, 'stdout');
const basePort = Number(baseline.match[1]);

const authAgent = await startAndWait(bin, ['agent', '--config', join(dir, 'agent-auth.config.json'), '--log-level', 'info'], /"msg":"listening","address":"[^"]*:(\d+)"/, 'stderr');
const authPki = join(dir, 'state-auth/pki');

console.log(`skein bench: ${ROUNDS} interleaved rounds, ${SEQ} sequential + ${CONC_CALLS} calls at ${CONCURRENCY} concurrent per round and target; medians\n`);
const baseClient = new SkeinClient({ peer: `127.0.0.1:${basePort}`, ...creds });
const skeinClient = new SkeinClient({ peer: `127.0.0.1:${agentPort}`, ...creds });
const authClient = new SkeinClient({
  peer: `127.0.0.1:${Number(authAgent.match[1])}`,
  cert: readFileSync(join(authPki, 'client-dev-client.crt')),
  key: readFileSync(join(authPki, 'client-dev-client.key')),
  ca: readFileSync(join(authPki, 'ca.crt')),
  token,
});
const results = await measureAll([
  { name: 'baseline', client: baseClient },
  { name: 'skein', client: skeinClient },
  { name: 'auth', client: authClient },
]);
const base = results.baseline!;
const sk = results.skein!;
const auth = results.auth!;
for (const c of [baseClient, skeinClient, authClient]) await c.close();
authAgent.proc.kill('SIGTERM');

const fmt = (n: number) => n.toFixed(3).padStart(8);
console.log('\n| measure | raw h2 baseline | skein (echo, Python, mTLS) | ratio |');
console.log('|---|---|---|---|');
console.log(`| sequential p50 (ms) | ${fmt(base.p50)} | ${fmt(sk.p50)} | ${(sk.p50 / base.p50).toFixed(2)}× |`);
console.log(`| sequential p99 (ms) | ${fmt(base.p99)} | ${fmt(sk.p99)} | ${(sk.p99 / base.p99).toFixed(2)}× |`);
console.log(`| throughput @${CONCURRENCY} (calls/s) | ${Math.round(base.tput)} | ${Math.round(sk.tput)} | ${(sk.tput / base.tput).toFixed(2)}× |`);
console.log(`| with bearer-jwt + routine-policy: p50 (ms) | | ${fmt(auth.p50)} | ${(auth.p50 / sk.p50).toFixed(2)}× of skein |`);
console.log(`| with bearer-jwt + routine-policy: throughput @${CONCURRENCY} | | ${Math.round(auth.tput)} | ${(auth.tput / sk.tput).toFixed(2)}× of skein |`);
console.log(`\ntargets: p50 ≤ 0.5 ms → ${sk.p50 <= 0.5 ? 'met' : 'NOT met'}; ≥ 5000 calls/s → ${sk.tput >= 5000 ? 'met' : 'NOT met'}; auth p50 within 15% → ${auth.p50 <= sk.p50 * 1.15 ? 'met' : 'NOT met'}`);

agent.proc.kill('SIGTERM');
baseline.proc.kill('SIGTERM');
process.exit(0);
