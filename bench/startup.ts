/**
 * `bun bench/startup.ts` (part of `npm run bench`): the start-up goals of the transport-speed
 * issue, measured in one run:
 *
 * - cold start: dist/skein spawned with its state (development PKI, calls store) already on
 *   disk, timed to its first answered `echo` over mTLS (client made before the spawn, its
 *   first dispatch sent as soon as the agent logs `listening`), with the agent's own log
 *   timestamps for the phases (first log line, sandbox ready, workers ready, listening);
 * - idle memory: after that first call and a settle period, the agent's and each worker's
 *   VmRSS (/proc/PID/status), PSS and USS (Private_Clean + Private_Dirty, /proc/PID/smaps_rollup):
 *   two workers share the interpreter's pages, so PSS is what one more worker costs;
 * - the strict sandbox's spawn cost: a worker's spawn → ready under profile `full` minus
 *   `none` (bench/lib/sandbox-spawn.ts, interleaved spawns, medians).
 *
 * Each figure is measured with the interpreter a default config finds on PATH (`python3`) and
 * with /usr/bin/python3 when that is another executable (on a machine where `python3` is a
 * version-manager shim, the shim runs once per start, ~170 ms); the goals are judged for each.
 * Starts are interleaved with SKEIN_BENCH_COMPARE (another binary, e.g. one built before a
 * change), and spawns with SKEIN_BENCH_COMPARE_SRC (that build's source tree, with
 * node_modules), as bench/run.ts does for calls.
 *
 * Env: SKEIN_BENCH_ROUNDS (cold starts per variant, at least 5), SKEIN_BENCH_SETTLE_MS (idle
 * wait before memory is read, 2000), SKEIN_BENCH_SPAWNS (spawns per profile, 30),
 * SKEIN_BENCH_STARTUP_OUT (bench/results/startup-latest.json; its own variable, as calls.ts has,
 * so SKEIN_BENCH_OUT given to `npm run bench` does not make two benches write one file). Every
 * process is stopped by PID.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Procs, freePort } from './lib/procs.ts';
import { resultHeader, writeResults, fmtSpread } from './lib/rounds.ts';
import { agentConfig, BIN, client, devClientCreds, echoCall, ROOT, startAgent } from './lib/skein.ts';
import { interleavedSpawns, loadSpawner, type SpawnSpec, type Spawner } from './lib/sandbox-spawn.ts';
import { median, spread, type Spread } from './lib/stats.ts';

const ROUNDS = Math.max(5, Number(process.env.SKEIN_BENCH_ROUNDS ?? 5));
const SETTLE_MS = Number(process.env.SKEIN_BENCH_SETTLE_MS ?? 2000);
const SPAWNS = Number(process.env.SKEIN_BENCH_SPAWNS ?? 30);
const OUT = process.env.SKEIN_BENCH_STARTUP_OUT ?? join(ROOT, 'bench/results/startup-latest.json');
const COMPARE = process.env.SKEIN_BENCH_COMPARE;
const COMPARE_SRC = process.env.SKEIN_BENCH_COMPARE_SRC;
const GOALS = { coldStartMs: 150, agentRssMiB: 60, workerRssMiB: 10, spawnAddedMs: 3 };
const MiB = 1024 * 1024;

/** The interpreter `python3` on PATH runs (a shim resolves to another executable). */
function executableOf(python: string): string | null {
  const r = spawnSync(python, ['-I', '-S', '-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}
const pathPython = executableOf('python3');
const pythons: { label: string; python: string; executable: string | null }[] = [{ label: 'python3', python: 'python3', executable: pathPython }];
if (existsSync('/usr/bin/python3') && (!pathPython || realpathSync(pathPython) !== realpathSync('/usr/bin/python3'))) {
  pythons.push({ label: '/usr/bin/python3', python: '/usr/bin/python3', executable: '/usr/bin/python3' });
}
const binaries: { label: string; bin: string }[] = [{ label: 'skein', bin: BIN }, ...(COMPARE ? [{ label: 'compare', bin: COMPARE }] : [])];
const variants = binaries.flatMap((b) => pythons.map((p) => ({ binary: b.label, bin: b.bin, python: p.python, executable: p.executable, name: `${b.label} · ${p.label}` })));

// ---- memory -----------------------------------------------------------------------------

interface Mem {
  rss: number;
  pss: number;
  uss: number;
}

function memOf(pid: number): Mem {
  const kB = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return { rss: kB(status, 'VmRSS'), pss: kB(rollup, 'Pss'), uss: kB(rollup, 'Private_Clean') + kB(rollup, 'Private_Dirty') };
}

/** Every descendant of `pid` (children of all its threads, recursively). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let kids: string;
    try {
      kids = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const k of kids.split(' ').filter(Boolean).map(Number)) out.push(k, ...descendants(k));
  }
  return out;
}

const isPython = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('python');
  } catch {
    return false;
  }
};

// ---- CPU ------------------------------------------------------------------------------

/** CPU time (ms) of a process's threads so far, from /proc/PID/task/TID/schedstat (ns). */
function cpuOf(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns / 1e6;
}

/** CPU time (ms) of the children `pid` has reaped (the start-up's interpreter runs), from /proc/PID/stat (clock ticks). */
function reapedCpuOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /, '')
    .split(' ');
  // After "(comm) ": state is field 3, so cutime (16) and cstime (17) are at 13 and 14.
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / 100;
}

// ---- cold starts -----------------------------------------------------------------------

const procs = new Procs();
const LOG_PHASES = { firstLog: 'starting skein agent', sandboxReady: 'sandbox ready', workersReady: 'workers ready', listening: 'listening' } as const;
type Phase = keyof typeof LOG_PHASES;

interface Start {
  ms: number;
  /**
   * CPU spent to the first answered echo by the agent (all threads), its live workers and the
   * interpreter runs it reaped (10 ms ticks): on a loaded machine, where wall time mostly
   * measures the wait for a core, this is what a change to the start-up's work shows in.
   */
  cpuMs: number;
  phases: Partial<Record<Phase, number>>;
  agent: Mem;
  workers: Mem[];
}

const stateName = (v: (typeof variants)[number]) => `startup-${v.binary}`;

async function coldStart(v: (typeof variants)[number]): Promise<Start> {
  const port = await freePort();
  const cfg = agentConfig(stateName(v), { workers: { python: v.python } }, `127.0.0.1:${port}`);
  const c = client(port, devClientCreds(join(procs.dir, `state-${stateName(v)}`, 'pki')));
  const wall0 = Date.now();
  const t0 = performance.now();
  const { started } = await startAgent(procs, cfg, { bin: [v.bin], pollMs: 1 });
  try {
    await echoCall(c)();
    const ms = performance.now() - t0;
    const pid = started.proc.pid!;
    const cpuMs = cpuOf(pid) + reapedCpuOf(pid) + descendants(pid).reduce((sum, d) => sum + cpuOf(d), 0);
    await c.close();
    const phases: Start['phases'] = {};
    for (const line of readFileSync(started.logFile, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      const rec = JSON.parse(line) as { ts?: string; msg?: string };
      for (const [k, msg] of Object.entries(LOG_PHASES)) if (rec.msg === msg && phases[k as Phase] === undefined && rec.ts) phases[k as Phase] = Date.parse(rec.ts) - wall0;
    }
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    return { ms, cpuMs, phases, agent: memOf(pid), workers: descendants(pid).filter(isPython).map(memOf) };
  } finally {
    await procs.stop(started.proc);
    // Let the kernel tear the workers' namespaces down before the next start.
    await new Promise((r) => setTimeout(r, 200));
  }
}

console.log(`skein startup bench: ${ROUNDS} cold starts per variant (interleaved), idle memory after the first call + ${SETTLE_MS} ms, ${SPAWNS} worker spawns per profile; medians (ranges)`);
for (const p of pythons) console.log(`  ${p.label}: ${p.executable ?? 'not runnable'}`);
// The first start of each binary creates the development PKI (key generation): not part of a cold start.
for (const v of variants) {
  if (v.python !== pythons[0]!.python) continue;
  const port = await freePort();
  await procs.stop((await startAgent(procs, agentConfig(stateName(v), { workers: { python: v.python } }, `127.0.0.1:${port}`), { bin: [v.bin] })).started.proc);
}
const starts = new Map<string, Start[]>(variants.map((v) => [v.name, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const v of variants) {
    const s = await coldStart(v);
    starts.get(v.name)!.push(s);
    process.stderr.write(
      `  start ${r + 1}/${ROUNDS} ${v.name}: ${s.ms.toFixed(1)} ms, CPU ${s.cpuMs.toFixed(0)} ms (listening at ${s.phases.listening ?? '?'} ms), agent RSS ${(s.agent.rss / MiB).toFixed(1)} MiB, workers ${s.workers.map((w) => (w.rss / MiB).toFixed(1)).join(' ')} MiB\n`,
    );
  }
}

// ---- sandbox spawn ----------------------------------------------------------------------

const scratch = mkdtempSync(join(tmpdir(), 'skein-bench-spawn-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const sources: { label: string; spawner: Spawner }[] = [{ label: 'skein', spawner: await loadSpawner(ROOT) }];
if (COMPARE_SRC) sources.push({ label: 'compare', spawner: await loadSpawner(COMPARE_SRC) });
const spawnSpecs: { spec: SpawnSpec; spawner: Spawner; variant: string; profile: 'none' | 'full' }[] = [];
for (const s of sources) {
  for (const p of pythons) {
    for (const profile of ['none', 'full'] as const) {
      const variant = `${s.label} · ${p.label}`;
      spawnSpecs.push({ spec: s.spawner.spec(`${variant} · ${profile}`, { profile }, p.python, scratch), spawner: s.spawner, variant, profile });
    }
  }
}
const { times: spawnTimes, cpu: spawnCpu } = await interleavedSpawns(spawnSpecs, SPAWNS);

// ---- figures ----------------------------------------------------------------------------

const mib = (xs: number[]) => spread(xs.map((x) => x / MiB));
const summary = Object.fromEntries(
  variants.map((v) => {
    const ss = starts.get(v.name)!;
    const spawnOf = (profile: 'none' | 'full') => spawnTimes.get(`${v.name} · ${profile}`) ?? [];
    const none = spawnOf('none');
    const full = spawnOf('full');
    const cpuOfProfile = (profile: 'none' | 'full') => spawnCpu.get(`${v.name} · ${profile}`) ?? [];
    const phases = Object.fromEntries(Object.keys(LOG_PHASES).map((k) => [k, spread(ss.map((s) => s.phases[k as Phase] ?? NaN))]));
    const workers = ss.flatMap((s) => s.workers);
    return [
      v.name,
      {
        binary: v.bin,
        python: v.python,
        executable: v.executable,
        coldStartMs: { ...spread(ss.map((s) => s.ms)), starts: ss.map((s) => s.ms) },
        coldStartCpuMs: spread(ss.map((s) => s.cpuMs)),
        phasesMs: phases,
        agentMiB: { rss: mib(ss.map((s) => s.agent.rss)), pss: mib(ss.map((s) => s.agent.pss)), uss: mib(ss.map((s) => s.agent.uss)) },
        workerMiB: { count: median(ss.map((s) => s.workers.length)), rss: mib(workers.map((w) => w.rss)), pss: mib(workers.map((w) => w.pss)), uss: mib(workers.map((w) => w.uss)) },
        spawnMs:
          none.length && full.length
            ? {
                none: spread(none),
                full: spread(full),
                addedByFull: median(full) - median(none),
                cpuNone: spread(cpuOfProfile('none')),
                cpuFull: spread(cpuOfProfile('full')),
                cpuAddedByFull: median(cpuOfProfile('full')) - median(cpuOfProfile('none')),
                spawns: SPAWNS,
              }
            : null,
        starts: ss,
      },
    ];
  }),
);

type Summary = (typeof summary)[string];
const goalsOf = (s: Summary) => ({
  [`cold start ≤ ${GOALS.coldStartMs} ms`]: s.coldStartMs.median <= GOALS.coldStartMs,
  [`agent idle RSS ≤ ${GOALS.agentRssMiB} MiB`]: s.agentMiB.rss.median <= GOALS.agentRssMiB,
  [`worker idle RSS ≤ ${GOALS.workerRssMiB} MiB`]: s.workerMiB.rss.median <= GOALS.workerRssMiB,
  [`strict spawn ≤ ${GOALS.spawnAddedMs} ms over none`]: s.spawnMs !== null && s.spawnMs.addedByFull <= GOALS.spawnAddedMs,
});
const goals = Object.fromEntries(variants.map((v) => [v.name, goalsOf(summary[v.name]!)]));

const names = variants.map((v) => v.name);
const row = (label: string, f: (s: Summary) => string) => console.log(`| ${label} | ${names.map((n) => f(summary[n]!)).join(' | ')} |`);
const fmt = (s: Spread, d = 1) => fmtSpread(s, d);
console.log(`\n| measure | ${names.join(' | ')} |`);
console.log(`|---|${names.map(() => '---').join('|')}|`);
row('cold start: spawn → first mTLS echo (ms)', (s) => fmt(s.coldStartMs));
row('  CPU to the first echo: agent + Python (ms)', (s) => fmt(s.coldStartCpuMs, 0));
for (const k of Object.keys(LOG_PHASES) as Phase[]) row(`  agent log "${LOG_PHASES[k]}" at (ms)`, (s) => fmt(s.phasesMs[k]!, 0));
row('agent idle RSS (MiB)', (s) => fmt(s.agentMiB.rss));
row('agent idle PSS / USS (MiB)', (s) => `${s.agentMiB.pss.median.toFixed(1)} / ${s.agentMiB.uss.median.toFixed(1)}`);
row('worker idle RSS (MiB, each)', (s) => fmt(s.workerMiB.rss));
row('worker idle PSS / USS (MiB, each)', (s) => `${s.workerMiB.pss.median.toFixed(1)} / ${s.workerMiB.uss.median.toFixed(1)}`);
row('worker spawn → ready, none (ms)', (s) => (s.spawnMs ? fmt(s.spawnMs.none) : '—'));
row('worker spawn → ready, full (ms)', (s) => (s.spawnMs ? fmt(s.spawnMs.full) : '—'));
row('full added over none (ms)', (s) => (s.spawnMs ? s.spawnMs.addedByFull.toFixed(1) : '—'));
row('worker CPU to ready, none / full (ms)', (s) => (s.spawnMs ? `${s.spawnMs.cpuNone.median.toFixed(1)} / ${s.spawnMs.cpuFull.median.toFixed(1)}` : '—'));
row('full added over none, CPU (ms)', (s) => (s.spawnMs ? s.spawnMs.cpuAddedByFull.toFixed(1) : '—'));
console.log('\ngoals:');
for (const [v, g] of Object.entries(goals))
  console.log(
    `  ${v}: ${Object.entries(g)
      .map(([k, ok]) => `${k} → ${ok ? 'met' : 'NOT met'}`)
      .join('; ')}`,
  );

writeResults(OUT, {
  ...resultHeader('startup', ROUNDS, {}),
  units: { coldStartMs: 'ms', phasesMs: 'ms after spawn (agent log timestamps, 1 ms resolution)', memory: 'MiB', spawnMs: 'ms' },
  settleMs: SETTLE_MS,
  pythons,
  variants: summary,
  goals,
});
console.log(`\nwrote ${OUT}`);
process.exit(0);
