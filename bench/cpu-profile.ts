/**
 * Where the agent's own CPU time per dispatch goes, by component, measured from outside:
 *
 * 1. The compiled agent (mTLS, sandbox strict, audit on) serves SKEIN_PROFILE_CALLS sequential
 *    echo calls; its CPU time (utime + stime from /proc, all threads and the main thread) over
 *    those calls gives the agent's CPU µs per call, unperturbed by any profiler.
 * 2. The same agent run from source under Bun's sampling profiler (`bun --cpu-prof
 *    agent/main.ts`, one sample per 100 µs of JavaScript) serves the same calls; each sample
 *    is charged to the innermost frame that belongs to a component (stream and event plumbing
 *    is transparent, so a write from the audit stream counts as audit), and the shares are
 *    applied to the main thread's user-mode CPU per call from step 1 (an approximation: the
 *    sampler sees JavaScript and the native functions it calls, not the event loop's own work).
 *    During step 1, perf's cpu-clock sampling splits the main thread's CPU into kernel,
 *    the runtime's native code and JIT-compiled JavaScript.
 *
 * JSC's sampler sees JavaScript and the native functions it calls, not the garbage collector
 * (bench/profile.ts counts collections with BUN_JSC_logGC) nor the event loop's own native work.
 * Usage: bun bench/cpu-profile.ts   Env: SKEIN_PROFILE_CALLS (3000), SKEIN_BENCH_OUT.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Procs } from './lib/procs.ts';
import { agentConfig, client, echoCall, ROOT, startAgent, type AgentHandle } from './lib/skein.ts';
import { resultHeader, writeResults } from './lib/rounds.ts';
import { warmUp } from './lib/workload.ts';

const CALLS = Number(process.env.SKEIN_PROFILE_CALLS ?? 3000);
const OUT = process.env.SKEIN_BENCH_OUT ?? join(ROOT, 'bench/results/cpu-profile-latest.json');
const INTERVAL_US = 100;
const CLOCK_TICKS = 100;

/** Component of a frame by its source; null: transparent plumbing (look further out). */
const COMPONENTS: Array<[RegExp, string]> = [
  [/agent\/audit\//, 'audit stream'],
  [/agent\/metrics\/|prom-client/, 'metrics'],
  [/agent\/plugin-host\/|agent\/server\/identity\.ts|jose/, 'authn/authz'],
  [/cbor-x|agent\/codec\//, 'codec (CBOR, JSON checks)'],
  [/agent\/workers\/pool|agent\/workers\/circuit|agent\/workers\/scheduler/, 'pool, scheduler, deadline, leftovers check'],
  [/agent\/calls\//, 'call service (audit call lines, metrics)'],
  [/agent\/workers\//, 'worker hop (socket write, reply read)'],
  [/agent\/log\//, 'logging'],
  [/node_modules\/hono\//, 'hono (routing, context)'],
  [/@hono\/node-server/, '@hono/node-server adapter'],
  [/agent\/server\//, 'agent/server (app, listener)'],
  [/node:http2|internal:tls|internal:http2|node:tls|node:net/, 'HTTP/2 + TLS (node:http2)'],
  [/file:\/\/.*\/(agent|common|signing)\//, 'other agent code'],
];
const TRANSPARENT = /^(|internal:streams\/.*|internal:fs\/streams|node:events|internal:primordials|internal:validators|node:stream|node:buffer)$/;

interface Node {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

function componentOf(stack: Node[]): string {
  for (const n of stack) {
    const url = n.callFrame.url;
    const hit = COMPONENTS.find(([re]) => re.test(url));
    if (hit) return hit[1];
    if (!TRANSPARENT.test(url)) return `other: ${url.replace(/^file:\/\/.*node_modules\//, '')}`;
  }
  return 'runtime (event loop, microtasks, native)';
}

async function serve(agent: AgentHandle): Promise<{ wallUsPerCall: number }> {
  const c = client(agent.port, agent.creds);
  const call = echoCall(c);
  await warmUp(call, 500);
  const t = performance.now();
  for (let i = 0; i < CALLS; i++) await call();
  const wall = ((performance.now() - t) * 1000) / CALLS;
  await c.close();
  return { wallUsPerCall: wall };
}

const procs = new Procs();

/** CPU seconds of each thread of `pid`, by thread name (JSC's helpers are named). */
function threadCpu(pid: number): Map<string, { user: number; sys: number }> {
  const out = new Map<string, { user: number; sys: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
      const name = Number(tid) === pid ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+$/, '');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const prev = out.get(name) ?? { user: 0, sys: 0 };
      out.set(name, { user: prev.user + Number(f[11]) / CLOCK_TICKS, sys: prev.sys + Number(f[12]) / CLOCK_TICKS });
    } catch {
      // a thread that ended meanwhile
    }
  }
  return out;
}
function cpuDelta(a: ReturnType<typeof threadCpu>, b: ReturnType<typeof threadCpu>, calls: number) {
  const out: Record<string, { userUs: number; sysUs: number }> = {};
  for (const [name, v] of b) {
    const p = a.get(name) ?? { user: 0, sys: 0 };
    const d = { userUs: ((v.user - p.user) * 1e6) / calls, sysUs: ((v.sys - p.sys) * 1e6) / calls };
    if (d.userUs + d.sysUs > 0) out[name] = d;
  }
  return out;
}

// 1. CPU per call of the compiled agent, per thread, over a second pass (the first warms up).
const compiled = await startAgent(procs, agentConfig('cpu'));
const pid = compiled.started.proc.pid!;
await serve(compiled);
const before = threadCpu(pid);
// perf samples the main thread meanwhile (cpu-clock, 5 kHz): kernel, the runtime's native
// code (the binary is stripped, so no finer), JIT-compiled JavaScript.
const perfFile = join(procs.dir, 'main.perf.data');
const perf = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '5000', '-o', perfFile, '-t', String(pid)], { stdio: 'ignore' });
await new Promise((r) => setTimeout(r, 1000));
const { wallUsPerCall } = await serve(compiled);
const threads = cpuDelta(before, threadCpu(pid), CALLS + 500);
const perfGone = new Promise((r) => perf.once('exit', r));
perf.kill('SIGINT');
await perfGone;
const report = spawnSync('perf', ['report', '-i', perfFile, '--sort', 'dso', '--stdio', '-q'], { encoding: 'utf8' }).stdout ?? '';
const byDso: Record<string, number> = {};
for (const m of report.matchAll(/^\s*([\d.]+)%\s+(.+?)\s*$/gm)) {
  const dso = m[2]!.startsWith('[JIT]')
    ? 'JIT-compiled JavaScript'
    : m[2] === '[kernel.kallsyms]'
      ? 'kernel'
      : m[2] === 'skein'
        ? 'runtime native code (interpreter, HTTP/2, TLS, GC, event loop)'
        : `other: ${m[2]}`;
  byDso[dso] = (byDso[dso] ?? 0) + Number(m[1]) / 100;
}
await procs.stop(compiled.started.proc);
const main = threads.main ?? { userUs: 0, sysUs: 0 };
const allUs = Object.values(threads).reduce((a, t) => a + t.userUs + t.sysUs, 0);

// 2. Shares from Bun's sampling profiler on the agent run from source; its own main-thread CPU
// per call scales the samples back to the unprofiled agent.
const profDir = join(procs.dir, 'cpuprof');
const sampled = await startAgent(procs, agentConfig('cpu-src'), {
  bin: [process.execPath, '--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${INTERVAL_US}`, join(ROOT, 'agent/main.ts')],
});
await serve(sampled);
await procs.stop(sampled.started.proc, 20_000);
const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error('bun --cpu-prof wrote no profile');
const prof = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const ch of n.children ?? []) parent.set(ch, n.id);
const stackOf = (id: number) => {
  const s: Node[] = [];
  for (let i: number | undefined = id; i !== undefined; i = parent.get(i)) s.push(nodes.get(i)!);
  return s;
};
// The serving window: from the first sample inside a dispatch (after start-up's own work) to
// the last one; start-up (sandbox probes, PKI, module loading) and shutdown are left out.
const inDispatch = (s: Node[]) => s.some((n) => /agent\/server\/dispatch\.ts/.test(n.callFrame.url));
const stacks = prof.samples.map(stackOf);
const first = stacks.findIndex(inDispatch);
let last = stacks.length - 1;
while (last > first && !inDispatch(stacks[last]!)) last--;
const counts = new Map<string, number>();
for (const s of stacks.slice(first, last + 1)) {
  const c = componentOf(s);
  counts.set(c, (counts.get(c) ?? 0) + 1);
}
const sampledTotal = [...counts.values()].reduce((a, b) => a + b, 0);
const components = [...counts].sort((a, b) => b[1] - a[1]).map(([name, n]) => ({ name, share: n / sampledTotal, usPerCall: (n / sampledTotal) * main.userUs }));

const f = (n: number) => n.toFixed(0);
console.log(
  `compiled agent: ${f(allUs)} µs CPU per call on all threads; main thread ${f(main.userUs + main.sysUs)} µs (user ${f(main.userUs)}, kernel ${f(main.sysUs)}); ${f(wallUsPerCall)} µs wall per sequential call`,
);
console.log(
  `other threads (µs per call): ${Object.entries(threads)
    .filter(([n]) => n !== 'main')
    .map(([n, t]) => `${n} ${f(t.userUs + t.sysUs)}`)
    .join(', ')}\n`,
);
console.log(
  `main thread by code (perf cpu-clock): ${Object.entries(byDso)
    .map(([k, v]) => `${k} ${(v * 100).toFixed(0)} %`)
    .join(', ')}\n`,
);
console.log(`| component (main thread) | share of sampled JS | ≈ µs of user CPU per call |`);
console.log('|---|---|---|');
for (const c of components.filter((c) => c.share >= 0.005)) console.log(`| ${c.name} | ${(c.share * 100).toFixed(1)} % | ${f(c.usPerCall)} |`);
console.log(`\n(${sampledTotal} samples at ${INTERVAL_US} µs over ${CALLS + 500} calls; a share applied to the main thread's user-mode CPU per call; components under 0.5 % left out)`);
writeResults(OUT, {
  ...resultHeader('cpu-profile', 1, { skein: { sequential: CALLS, concurrent: 0, warmUp: 500 } }),
  wallUsPerCall,
  cpuPerCallUs: { allThreads: allUs, threads },
  mainThreadByCode: byDso,
  samples: sampledTotal,
  intervalUs: INTERVAL_US,
  components,
});
console.log(`wrote ${OUT}`);
process.exit(0);
