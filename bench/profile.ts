/**
 * Where one sequential dispatch spends its time, measured from outside the agent (nothing in
 * agent/ is instrumented): `perf record` traces the system calls of the client (this process),
 * the agent and its Python workers with CLOCK_MONOTONIC timestamps, so one call's request and
 * reply can be followed across the three processes:
 *
 *   t0 client send ─► t1 agent recv ─► t2 agent send to worker ─► t3 worker read returns
 *   ─► t4 worker write ─► t5 agent recv of the reply ─► t6 agent send ─► t7 client recv
 *
 * A second `perf record -a` takes the scheduler's wake-up and switch events, so every hop's
 * wait for a CPU is known, and who held the CPU meanwhile. The agent runs with JSC's GC log
 * (BUN_JSC_logGC=1, a runtime option read from the environment: the binary is unchanged), so
 * calls during which a collection ran are marked. The raw baseline is traced the same way
 * (t0, t1, t6, t7). Prints the per-stage table (median, p90, p99 in µs) and writes
 * bench/results/profile-latest.json.
 *
 * Needs root (or perf_event_paranoid ≤ -1) and Debian's linux-perf.
 * Usage: bun bench/profile.ts   Env: SKEIN_PROFILE_CALLS (2000 per target), SKEIN_BENCH_OUT.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Procs } from './lib/procs.ts';
import { agentConfig, client, echoCall, ROOT, startAgent, startBaseline } from './lib/skein.ts';
import { quantile } from './lib/stats.ts';
import { warmUp, type Call } from './lib/workload.ts';
import { resultHeader, writeResults } from './lib/rounds.ts';

const CALLS = Number(process.env.SKEIN_PROFILE_CALLS ?? 2000);
const OUT = process.env.SKEIN_BENCH_OUT ?? join(ROOT, 'bench/results/profile-latest.json');
const NR = { read: 0, write: 1, writev: 20, sendto: 44, recvfrom: 45, sendmsg: 46, recvmsg: 47 } as const;
const SENDS = new Set<number>([NR.write, NR.writev, NR.sendto, NR.sendmsg]);
const RECVS = new Set<number>([NR.read, NR.recvfrom, NR.recvmsg]);

if (spawnSync('perf', ['stat', '-e', 'task-clock', 'true']).status !== 0) {
  console.error('bench/profile.ts needs perf (Debian: apt-get install linux-perf) and the right to trace (root)');
  process.exit(2);
}

interface Sys {
  pid: number;
  tid: number;
  nr: number;
  fd: number;
  ret: number;
  enter: number;
  exit: number;
}
interface Sched {
  kind: 'wakeup' | 'switch';
  t: number;
  cpu: number;
  pid: number; // woken task, or the task switched in
  prevPid?: number;
  prevComm?: string;
}

/** Runs `work` while perf records the syscalls of `pids` and the scheduler system-wide. */
async function traced(procs: Procs, name: string, pids: number[], work: () => Promise<void>): Promise<{ sys: Sys[]; sched: Sched[] }> {
  const sysFile = join(procs.dir, `${name}.sys.data`);
  const schedFile = join(procs.dir, `${name}.sched.data`);
  const perfSys = spawn('perf', ['record', '-q', '-e', 'raw_syscalls:sys_enter,raw_syscalls:sys_exit', '-k', 'mono', '-m', '4M', '-o', sysFile, '-p', pids.join(',')], { stdio: 'ignore' });
  const perfSched = spawn('perf', ['record', '-q', '-a', '-e', 'sched:sched_wakeup,sched:sched_switch', '-k', 'mono', '-m', '4M', '-o', schedFile], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1500)); // perf attaches
  await work();
  for (const p of [perfSys, perfSched]) {
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGINT');
    await gone;
  }
  const script = (file: string) => {
    const r = spawnSync('perf', ['script', '-i', file, '-F', 'pid,tid,cpu,time,event,trace', '--ns'], { encoding: 'utf8', maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`perf script failed: ${r.stderr}`);
    return r.stdout;
  };
  return { sys: parseSys(script(sysFile)), sched: parseSched(script(schedFile), new Set(pids)) };
}

const LINE = /^\s*(\d+)\/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$/;

function parseSys(text: string): Sys[] {
  const open = new Map<number, { nr: number; fd: number; enter: number }>();
  const out: Sys[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const tid = Number(m[2]);
    const t = Number(m[4]) * 1e6; // µs
    const body = m[6]!;
    if (m[5] === 'raw_syscalls:sys_enter') {
      const e = /^NR (\d+) \(([0-9a-f]+)/.exec(body);
      if (e) open.set(tid, { nr: Number(e[1]), fd: parseInt(e[2]!, 16), enter: t });
    } else {
      const e = /^NR (\d+) = (-?\d+)/.exec(body);
      const o = open.get(tid);
      if (e && o && o.nr === Number(e[1])) out.push({ pid: Number(m[1]), tid, nr: o.nr, fd: o.fd, ret: Number(e[2]), enter: o.enter, exit: t });
      open.delete(tid);
    }
  }
  return out.sort((a, b) => a.enter - b.enter);
}

function parseSched(text: string, pids: Set<number>): Sched[] {
  const out: Sched[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const t = Number(m[4]) * 1e6;
    const cpu = Number(m[3]);
    if (m[5] === 'sched:sched_wakeup') {
      const pid = Number(/ pid=(\d+)/.exec(m[6]!)?.[1]);
      if (pids.has(pid)) out.push({ kind: 'wakeup', t, cpu, pid });
    } else if (m[5] === 'sched:sched_switch') {
      const s = /prev_comm=(.*?) prev_pid=(\d+) .*next_pid=(\d+)/.exec(m[6]!);
      if (s && pids.has(Number(s[3]))) out.push({ kind: 'switch', t, cpu, pid: Number(s[3]), prevPid: Number(s[2]), prevComm: s[1] });
    }
  }
  return out;
}

/**
 * The agent's descriptors, from what it does with them: the client connection is read and
 * written, a worker's stdin only written, its reply socket only read (log writes use write(),
 * the sockets sendto/recvfrom).
 */
function agentFds(sys: Sys[], pid: number): { tls: number; toWorker: number; fromWorker: number } {
  const sends = new Map<number, number>();
  const recvs = new Map<number, number>();
  for (const s of sys) {
    if (s.pid !== pid || s.ret <= 0) continue;
    if (s.nr === NR.sendto) sends.set(s.fd, (sends.get(s.fd) ?? 0) + 1);
    if (s.nr === NR.recvfrom) recvs.set(s.fd, (recvs.get(s.fd) ?? 0) + 1);
  }
  const top = (m: Map<number, number>, keep: (fd: number) => boolean) => [...m].filter(([fd]) => keep(fd)).sort((a, b) => b[1] - a[1])[0]?.[0] ?? -1;
  const tls = top(sends, (fd) => recvs.has(fd));
  return { tls, toWorker: top(sends, (fd) => fd !== tls && !recvs.has(fd)), fromWorker: top(recvs, (fd) => fd !== tls && !sends.has(fd)) };
}

/** The agent's writes to fd 2 (the GC log under BUN_JSC_logGC): all, and those during a call. */
let gcWrites = { total: 0, duringCalls: 0 };

interface CallTrace {
  t: number[]; // t0..t7 (baseline: t2..t5 NaN)
  gc: boolean;
  agentSyscalls: { inbound: number; outbound: number };
  logWrite: { onPath: boolean; us: number };
}

/** Follows each call through the merged, time-ordered syscalls (a state machine per call). */
function calls(sys: Sys[], o: { client: number; server: number; workers: Set<number> | null }): CallTrace[] {
  const fds = o.workers ? agentFds(sys, o.server) : { tls: -1, toWorker: -1, fromWorker: -1 };
  // Events of interest in time order: sends by enter, receives by exit.
  const ev = sys
    .filter((s) => s.ret >= 0 || s.nr === NR.write)
    .map((s) => ({ s, t: RECVS.has(s.nr) ? s.exit : s.enter }))
    .sort((a, b) => a.t - b.t);
  const out: CallTrace[] = [];
  gcWrites = { total: 0, duringCalls: 0 };
  let state = 0;
  let cur: CallTrace = fresh();
  function fresh(): CallTrace {
    return { t: Array(8).fill(NaN), gc: false, agentSyscalls: { inbound: 0, outbound: 0 }, logWrite: { onPath: false, us: 0 } };
  }
  for (const { s, t } of ev) {
    const isClient = s.pid === o.client && s.tid === o.client;
    const isServer = s.pid === o.server;
    if (isServer && s.nr === NR.write && s.fd === 2) {
      gcWrites.total++;
      if (state >= 1) gcWrites.duringCalls++;
    }
    if (isServer && s.nr === NR.write && (s.fd === 2 || s.fd > 2) && state >= 1) {
      // fd 2: the JSC GC log (BUN_JSC_logGC); other write()s: the log and audit stream file.
      if (s.fd === 2) cur.gc = true;
      else {
        cur.logWrite.us += s.exit - s.enter;
        if (state === 2 || state === 6) cur.logWrite.onPath = true;
      }
    }
    if (isServer && s.tid === o.server) {
      if (state === 2) cur.agentSyscalls.inbound++;
      if (state === 6) cur.agentSyscalls.outbound++;
    }
    switch (state) {
      case 0:
        if (isClient && SENDS.has(s.nr) && s.ret > 0) {
          cur.t[0] = t;
          state = 1;
        }
        break;
      case 1:
        if (isServer && RECVS.has(s.nr) && s.ret > 0 && (fds.tls === -1 || s.fd === fds.tls)) {
          cur.t[1] = t;
          state = o.workers ? 2 : 6;
        }
        break;
      case 2:
        if (isServer && s.nr === NR.sendto && s.fd === fds.toWorker) {
          cur.t[2] = t;
          state = 3;
        }
        break;
      case 3:
        if (o.workers!.has(s.pid) && s.nr === NR.read && s.fd === 0 && s.ret > 0) {
          cur.t[3] = t;
          state = 4;
        }
        break;
      case 4:
        if (o.workers!.has(s.pid) && s.nr === NR.write && s.fd !== 2 && s.fd !== 1) {
          cur.t[4] = t;
          state = 5;
        }
        break;
      case 5:
        if (isServer && s.nr === NR.recvfrom && s.fd === fds.fromWorker && s.ret > 0) {
          cur.t[5] = t;
          state = 6;
        }
        break;
      case 6:
        if (isServer && SENDS.has(s.nr) && s.nr !== NR.write && (fds.tls === -1 || s.fd === fds.tls)) {
          cur.t[6] = t;
          state = 7;
        }
        break;
      case 7:
        if (isClient && RECVS.has(s.nr) && s.ret > 0) {
          cur.t[7] = t;
          out.push(cur);
          cur = fresh();
          state = 0;
        }
        break;
    }
  }
  return out;
}

/**
 * For each wake-up of a traced task, how long until it ran, and whether the CPU it ran on was
 * idle (swapper: the cost is the idle vCPU's exit) or busy with another task (contention).
 */
function wakeLatencies(sched: Sched[]): Map<number, Array<{ t: number; us: number; fromIdle: boolean; prevComm: string }>> {
  const pending = new Map<number, number>();
  const out = new Map<number, Array<{ t: number; us: number; fromIdle: boolean; prevComm: string }>>();
  for (const e of sched.sort((a, b) => a.t - b.t)) {
    if (e.kind === 'wakeup') pending.set(e.pid, e.t);
    else if (pending.has(e.pid)) {
      const w = pending.get(e.pid)!;
      pending.delete(e.pid);
      if (!out.has(e.pid)) out.set(e.pid, []);
      out.get(e.pid)!.push({ t: w, us: e.t - w, fromIdle: e.prevPid === 0, prevComm: e.prevComm ?? '?' });
    }
  }
  return out;
}

const q = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? { median: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), n: s.length } : { median: NaN, p90: NaN, p99: NaN, n: 0 };
};

const STAGES = [
  { key: 'clientToServer', from: 0, to: 1, what: 'client send → server has the request (loopback TCP, wake-up, TLS record read)' },
  { key: 'agentInbound', from: 1, to: 2, what: 'agent: TLS decrypt, HTTP/2, hono routing, identity, authn/authz + audit, body read and CBOR decode, pool' },
  { key: 'toWorker', from: 2, to: 3, what: 'agent send → Python worker has the call (socketpair, worker wake-up)' },
  { key: 'python', from: 3, to: 4, what: 'Python: json.loads, the routine, leftover checks, json.dumps' },
  { key: 'fromWorker', from: 4, to: 5, what: 'worker write → agent has the reply (agent wake-up)' },
  { key: 'agentOutbound', from: 5, to: 6, what: 'agent: reply parse + JSON checks, leftovers (/proc), metrics, CBOR encode, HTTP/2, TLS encrypt' },
  { key: 'serverToClient', from: 6, to: 7, what: 'server send → client has the reply (loopback TCP, client wake-up)' },
  { key: 'serverBaseline', from: 1, to: 6, what: 'raw baseline server: request to reply' },
  { key: 'onWire', from: 0, to: 7, what: 'client send → client recv' },
] as const;

function breakdown(cs: CallTrace[]) {
  return Object.fromEntries(STAGES.map((s) => [s.key, q(cs.map((c) => c.t[s.to]! - c.t[s.from]!))]));
}

// ---- run ----
const procs = new Procs();
const agent = await startAgent(procs, agentConfig('profile'), { env: { BUN_JSC_logGC: '1' } });
const basePort = await startBaseline(procs, agent);
const basePid = Number(
  readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8')
    .trim()
    .split(' ')
    .find((p) => p && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('baseline-server')),
);
const agentPid = agent.started.proc.pid!;
const workerPids = readFileSync(`/proc/${agentPid}/task/${agentPid}/children`, 'utf8').trim().split(' ').map(Number);
const skeinClient = client(agent.port, agent.creds);
const baseClient = client(basePort, agent.creds);
const seq = async (call: Call) => {
  const times: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    await call();
    times.push((performance.now() - t) * 1000);
  }
  return times;
};
await warmUp(echoCall(skeinClient), 500);
await warmUp(echoCall(baseClient), 500);
const agentThreads = () => readdirSync(`/proc/${agentPid}/task`).length;

const gcLinesBefore = readFileSync(agent.started.logFile, 'utf8')
  .split('\n')
  .filter((l) => l.startsWith('[GC<')).length;
let skeinTimes: number[] = [];
const sk = await traced(procs, 'skein', [process.pid, agentPid, ...workerPids], async () => {
  skeinTimes = await seq(echoCall(skeinClient));
});
const gcLog = readFileSync(agent.started.logFile, 'utf8')
  .split('\n')
  .filter((l) => l.startsWith('[GC<'))
  .slice(gcLinesBefore);
let baseTimes: number[] = [];
const bl = await traced(procs, 'baseline', [process.pid, basePid], async () => {
  baseTimes = await seq(echoCall(baseClient));
});
await skeinClient.close();
await baseClient.close();

const skCalls = calls(sk.sys, { client: process.pid, server: agentPid, workers: new Set(workerPids) });
const gcLogWrites = gcWrites;
const blCalls = calls(bl.sys, { client: process.pid, server: basePid, workers: null });
const skStages = breakdown(skCalls);
const blStages = breakdown(blCalls);
// Client: from the reply's arrival to the next call's send (decode, timing, encode).
const clientGap = (cs: CallTrace[]) => q(cs.slice(1).map((c, i) => c.t[0]! - cs[i]!.t[7]!));

// The slowest 1% of skein calls: which stage grew, and what else was true of them.
const total = (c: CallTrace) => c.t[7]! - c.t[0]!;
const sorted = [...skCalls].sort((a, b) => total(b) - total(a));
const tail = sorted.slice(0, Math.max(1, Math.floor(skCalls.length / 100)));
const body = sorted.slice(Math.floor(skCalls.length / 4), Math.floor((skCalls.length * 3) / 4));
const meanOf = (cs: CallTrace[], f: (c: CallTrace) => number) => cs.reduce((a, c) => a + f(c), 0) / cs.length;
const tailAnalysis = Object.fromEntries(
  STAGES.filter((s) => s.key !== 'serverBaseline' && s.key !== 'onWire').map((s) => [
    s.key,
    { tailMean: meanOf(tail, (c) => c.t[s.to]! - c.t[s.from]!), typicalMean: meanOf(body, (c) => c.t[s.to]! - c.t[s.from]!) },
  ]),
);

// Wake-ups: the agent's main thread, the hot worker, the client.
const wakes = wakeLatencies(sk.sched);
const hotWorker = workerPids.map((p) => ({ p, n: sk.sys.filter((x) => x.pid === p && x.nr === NR.read).length })).sort((a, b) => b.n - a.n)[0]!.p;
const wakeStats = (pid: number) => {
  const w = wakes.get(pid) ?? [];
  return {
    ...q(w.map((x) => x.us)),
    fromIdleShare: w.filter((x) => x.fromIdle).length / Math.max(1, w.length),
    contended: q(w.filter((x) => !x.fromIdle).map((x) => x.us)),
    busyWith: topComms(w.filter((x) => !x.fromIdle && x.us > 100).map((x) => x.prevComm)),
  };
};
function topComms(xs: string[]) {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return Object.fromEntries([...m].sort((a, b) => b[1] - a[1]).slice(0, 6));
}
// Tail calls whose run waited for a CPU held by another task for > 200 µs on some hop.
const contendedTail = tail.filter((c) =>
  [process.pid, agentPid, hotWorker].some((pid) => (wakes.get(pid) ?? []).some((w) => !w.fromIdle && w.us > 200 && w.t >= c.t[0]! - 50 && w.t <= c.t[7]!)),
).length;

const gcPauses = gcLog.map((l) => Number(/ p=([\d.]+)ms/.exec(l)?.[1] ?? NaN)).filter(Number.isFinite);
const result = {
  ...resultHeader('profile', 1, { skein: { sequential: CALLS, concurrent: 0, warmUp: 500 }, baseline: { sequential: CALLS, concurrent: 0, warmUp: 500 } }),
  units: { stages: 'µs' },
  clientMeasured: { skein: q(skeinTimes), baseline: q(baseTimes) },
  traced: { skein: skCalls.length, baseline: blCalls.length },
  stages: { skein: skStages, baseline: blStages },
  clientGap: { skein: clientGap(skCalls), baseline: clientGap(blCalls) },
  agent: {
    threads: agentThreads(),
    syscallsOnPath: { inbound: q(skCalls.map((c) => c.agentSyscalls.inbound)), outbound: q(skCalls.map((c) => c.agentSyscalls.outbound)) },
    logWrites: {
      callsWithWrite: skCalls.filter((c) => c.logWrite.us > 0).length,
      onCriticalPath: skCalls.filter((c) => c.logWrite.onPath).length,
      us: q(skCalls.filter((c) => c.logWrite.us > 0).map((c) => c.logWrite.us)),
    },
    gc: { logWrites: gcLogWrites, collections: gcLog.length, pausesMs: q(gcPauses), callsWithGc: skCalls.filter((c) => c.gc).length, tailCallsWithGc: tail.filter((c) => c.gc).length },
  },
  wakeUps: { agent: wakeStats(agentPid), worker: wakeStats(hotWorker), client: wakeStats(process.pid) },
  tail: { calls: tail.length, thresholdUs: total(tail.at(-1)!), stages: tailAnalysis, contendedOnSomeHop: contendedTail, withGc: tail.filter((c) => c.gc).length },
};

const f = (n: number) => (Number.isFinite(n) ? n.toFixed(0).padStart(5) : '    –');
console.log(
  `traced ${skCalls.length}/${CALLS} skein calls and ${blCalls.length}/${CALLS} baseline calls (client-measured p50 ${q(skeinTimes).median.toFixed(0)} / ${q(baseTimes).median.toFixed(0)} µs, p99 ${q(skeinTimes).p99.toFixed(0)} / ${q(baseTimes).p99.toFixed(0)} µs)\n`,
);
console.log('| stage | skein median | p90 | p99 | baseline median | p99 | what |');
console.log('|---|---|---|---|---|---|---|');
for (const s of STAGES) {
  const a = skStages[s.key]!;
  const b = blStages[s.key]!;
  console.log(`| ${s.key} | ${f(a.median)} | ${f(a.p90)} | ${f(a.p99)} | ${f(b.median)} | ${f(b.p99)} | ${s.what} |`);
}
const cg = result.clientGap;
console.log(`| client (reply → next send) | ${f(cg.skein.median)} | ${f(cg.skein.p90)} | ${f(cg.skein.p99)} | ${f(cg.baseline.median)} | ${f(cg.baseline.p99)} | client decode, timing, encode |`);
console.log(`\nwake-up → running (µs): agent ${JSON.stringify(result.wakeUps.agent)}\nworker ${JSON.stringify(result.wakeUps.worker)}\nclient ${JSON.stringify(result.wakeUps.client)}`);
console.log(`\nGC: ${JSON.stringify(result.agent.gc)}\nlog/audit writes: ${JSON.stringify(result.agent.logWrites)}\nagent syscalls on the path: ${JSON.stringify(result.agent.syscallsOnPath)}`);
console.log(
  `\nslowest 1% (${tail.length} calls ≥ ${result.tail.thresholdUs.toFixed(0)} µs): ${contendedTail} waited > 200 µs for a CPU held by another task, ${result.tail.withGc} had a GC; stage means tail vs middle half:`,
);
for (const [k, v] of Object.entries(tailAnalysis)) console.log(`  ${k.padEnd(16)} ${v.tailMean.toFixed(0).padStart(6)} vs ${v.typicalMean.toFixed(0).padStart(5)} µs`);
writeResults(OUT, result);
console.log(`\nwrote ${OUT}`);
process.exit(0);
