/**
 * One measured scenario: N simulated agents (sending from `sources` addresses) already
 * advertising, then a real agent "a" started cold beside them. Another real agent, "b", is a's
 * peer on a second group only a listens to as well (so b is not loaded by the simulated fleet)
 * and the only peer offering `echo`; an "idle" agent has a's config on groups nobody uses: the
 * baseline of CPU and memory with no peers. Everything runs in namespaces made here and is
 * stopped by PID, and the namespaces deleted, before this returns (Running.stop on a throw).
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spiffeId } from '../../agent/pki/index.ts';
import { ROOT, BIN } from '../lib/skein.ts';
import { CONFIG_SCHEMA } from '../../agent/config/schema.ts';
import { stopProcess } from '../../test/helpers/netns.ts';
import { ADMIN, AGENT_PORT, cpuSeconds, memoryOf, startRealAgent, waitForLog, type RealAgent } from './agents.ts';
import { controlled, type Controlled } from './control.ts';
import { clientCert, endorsedKey, FLEET, fingerprintOf, newFleet, seedOf, simCertificates, simName, TRUST_DOMAIN } from './material.ts';
import { createFleetNet, type FleetNet } from './net.ts';
import type { ResponderStats, SendStats, SimSpec } from './spec.ts';

export interface ScenarioOptions {
  agents: number;
  sources: number;
  seconds: number;
  /** The discovery settings of every agent, simulated and real. */
  discovery: { intervalMs: number; ttlMs: number; wireVersion: 1 | 2; budgetBytesPerSec: number };
  /** Those given on the command line: the real agents' configs set only these (the rest are their defaults). */
  overrides: Partial<ScenarioOptions['discovery']>;
  convergeTimeoutMs: number;
  cache: string;
  log: (s: string) => void;
}

export interface ScenarioResult {
  agents: number;
  sources: number;
  discovery: ScenarioOptions['discovery'];
  /** Peers agent "a" should list: the simulated agents and "b". */
  expectedPeers: number;
  /** receiveBufferDrops: adverts a's socket lost (buffer full) from its start until converged or timed out. */
  convergence: { reached: boolean; fromSpawnMs: number | null; fromDiscoveryStartMs: number | null; maxListed: number; receiveBufferDrops: number };
  /** The real agents' requests for records the simulator heard, and how many simulated agents they asked. */
  wants: { requests: number; asked: number };
  window: { seconds: number; listedMin: number; listedMax: number };
  /**
   * At a's host over the window. advertsPerSec: UDP datagrams that reached its UDP layer
   * (/proc/net/snmp: delivered + errors); advertBytesPerSec: those at link level (the
   * simulator's mean datagram + 42 bytes of Ethernet, IP and UDP headers); receiveBufferDrops:
   * adverts lost because the agent's socket buffer was full. link*: everything the interface
   * received (identity-check TCP included). sim*: what the simulator sent (a cross-check).
   */
  atHost: {
    advertsPerSec: number;
    advertBytesPerSec: number;
    receiveBufferDropsPerSec: number;
    linkPacketsPerSec: number;
    linkBytesPerSec: number;
    simDatagramsPerSec: number;
    simMeanDatagramBytes: number;
    sendErrors: number;
  };
  /** Over the window (steady state); checks: discovery's share while the new peers' identity checks ran (start-up, before the window), over checksSeconds. */
  cpu: { agent: number; idle: number; discovery: number; checks: number; checksSeconds: number };
  /**
   * Medians over the window; checksBytes: discovery's RSS while the identity checks ran.
   * discoveryAnonBytes / discoveryFileBytes: the anonymous and file-backed parts of
   * discoveryBytes (agents.ts, memoryOf); discoveryMin/MaxBytes: the lowest and highest
   * sample of the window (a − idle), which a collection cycle longer than the samples shows.
   */
  rss: {
    agentBytes: number;
    idleBytes: number;
    discoveryBytes: number;
    discoveryAnonBytes: number;
    discoveryFileBytes: number;
    discoveryMinBytes: number;
    discoveryMaxBytes: number;
    checksBytes: number;
  };
  /** Agent a's identity checks of its new peers: dials counted at the simulated endpoints, outcomes from a's log. */
  /** duringWindow: connections a made in the window (0 unless its checks outlasted the settling bound). */
  identityChecks: ResponderStats & { proved: number; unreachable: number; mismatch: number; handshakeTimeouts: number; duringWindow: number };
  /** From a's log over the whole run: peers added (first sight or back after expiring) and expired. */
  table: { discovered: number; expired: number };
  /** Why GET /v1/peers on a failed three times after the window (an agent too busy to serve), if it did. */
  apiFailure?: string;
  rejected: Record<string, number>;
  /** Per peer (null: not seen within 3 × ttl + 5 s); `*Ms` the slowest. */
  /** vanishSinceLastAdvert: from the vanished peer's last advert to its drop (the ttl plus the expiry sweep). */
  churn: {
    vanish: Array<number | null>;
    vanishSinceLastAdvert: number[];
    join: Array<number | null>;
    change: Array<number | null>;
    vanishMs: number | null;
    joinMs: number | null;
    changeMs: number | null;
  };
  /** discoverMs/addedMs null when --discover failed (`error`: its JSON answer, e.g. no listed peer offers the routine). */
  dispatch: { discoverMs: number | null; directMs: number | null; addedMs: number | null; ranOn: string | undefined; error?: string; peersFetchMs: number | null };
  setup: { certificatesMs: number };
}

const SIM_ROUTINES = ['sim-a', 'sim-b', 'sim-c', 'sim-d'];
const DISPATCH_RUNS = 5;
/** Peers that vanish, join and change at once in the churn phase. */
const CHURN = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const BUN = join(ROOT, 'node_modules/.bin/bun');
/** The agent's default pace of identity checks (discovery.identityChecks.perSecond): how long settling may take. */
const IDENTITY_CHECKS_PER_SECOND = CONFIG_SCHEMA.fields.discovery.fields.identityChecks.fields.perSecond.default;

/** Everything a scenario started, so teardown (and SIGINT) can stop it by PID. */
export class Running {
  net: FleetNet | undefined;
  sim: Controlled | undefined;
  responder: Controlled | undefined;
  /** a's probe, and the idle agent's (scraped alike, so what monitoring costs is not counted as discovery). */
  probes: Controlled[] = [];
  agents: RealAgent[] = [];

  async stop(): Promise<void> {
    for (const p of this.probes) p.proc.stdin?.end();
    await Promise.all(this.agents.map((a) => stopProcess(a.proc, 3000)));
    await Promise.all([stopProcess(this.sim?.proc, 2000), stopProcess(this.responder?.proc, 2000), ...this.probes.map((p) => stopProcess(p.proc, 1000))]);
    this.net?.destroy();
    this.net = undefined;
  }

  /** Synchronous last resort (process exit): SIGKILL by PID, then the namespaces. */
  kill(): void {
    for (const p of [...this.agents.map((a) => a.proc), this.sim?.proc, this.responder?.proc, ...this.probes.map((c) => c.proc)]) {
      if (p?.pid !== undefined && p.exitCode === null && p.signalCode === null) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    this.net?.destroy();
    this.net = undefined;
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}

export async function runScenario(o: ScenarioOptions, running: Running): Promise<ScenarioResult> {
  const { log } = o;
  const dir = mkdtempSync(join(tmpdir(), 'skein-fleet-'));
  const group = { address: `239.255.${100 + Math.floor(Math.random() * 100)}.${1 + Math.floor(Math.random() * 250)}`, port: 40_000 + Math.floor(Math.random() * 19_000) };
  // "b" hears only a's group of two (it is a's peer, not the simulated fleet's: one agent
  // under that load is enough for a 2-core machine); "idle" has the same two groups, unused.
  const pair = { address: group.address, port: group.port + 1 };
  const idleGroups = [2, 3].map((k) => ({ address: group.address, port: group.port + k }));
  const total = o.agents + CHURN; // held back: they join later
  const sources = Math.min(o.sources, o.agents);

  log(`  ${o.agents} simulated agents from ${sources} source address(es); namespaces …\n`);
  const net = createFleetNet(['a', 'b', 'idle'], sources + CHURN);
  running.net = net;
  const { certs, keyPem, generatedMs } = await simCertificates(o.cache, total, log);
  const fleet = newFleet();
  const shared = sources < o.agents;
  const spec: SimSpec = {
    fleet: FLEET,
    group,
    interface: net.simGateway,
    ...o.discovery,
    peerCount: o.agents + 1,
    rootKey: fleet.rootKey,
    trustDomain: TRUST_DOMAIN,
    capacity: 4,
    tlsKey: keyPem,
    agents: certs.map((c, i) => {
      const joiner = i >= o.agents;
      // Behind shared addresses, joiners share them too; otherwise each has its own.
      const source = net.simAddress(joiner && !shared ? sources + i - o.agents : i % sources);
      const { key, endorsement } = endorsedKey(fleet, c.name);
      return {
        name: c.name,
        spiffe: spiffeId(TRUST_DOMAIN, 'agent', c.name),
        source,
        // Agents behind one address (a NAT) are told apart by port, as a port forward would.
        endpoint: { address: source, port: shared ? 20_000 + i : AGENT_PORT },
        routines: SIM_ROUTINES,
        seed: seedOf(key),
        endorsement: Buffer.from(endorsement).toString('base64'),
        cert: c.cert,
        tlsFingerprint: fingerprintOf(c.cert),
        active: !joiner,
      };
    }),
  };
  const specFile = join(dir, 'sim.json');
  writeFileSync(specFile, JSON.stringify(spec), { mode: 0o600 });

  const maxSeconds = String(600 + o.seconds * 4);
  /** A Bun script of the harness in namespace `ns`, driven over stdin/stdout, its stderr in `<log>.log` of the scenario's folder. */
  const startScript = (ns: string, script: string, args: string[], label: string, log: string) => {
    const file = join(dir, `${log}.log`);
    const fd = openSync(file, 'w');
    const proc = net.exec(ns, BUN, [join(ROOT, 'bench/fleet', script), ...args], { stdio: ['pipe', 'pipe', fd], env: { ...process.env, CBOR_NATIVE_ACCELERATION_DISABLED: 'true' } });
    closeSync(fd);
    return controlled(proc, label, () => tail(file));
  };
  const responder = startScript(net.simNs, 'responder-proc.ts', [specFile, maxSeconds], 'responder', 'responder');
  running.responder = responder;
  await responder.event('ready', 60_000);

  const sim = startScript(net.simNs, 'simulator.ts', [specFile, maxSeconds], 'simulator', 'simulator');
  running.sim = sim;
  const simReady = Number((await sim.event('ready', 120_000)).at);

  const client = await clientCert(o.cache);
  const timing = o.overrides;
  const base = { timing, clientSpiffe: client.spiffe, routines: ['echo'] };
  const b = await startRealAgent(net, fleet, o.cache, dir, { ...base, name: 'b', groups: [pair] });
  const idle = await startRealAgent(net, fleet, o.cache, dir, { ...base, name: 'idle', groups: idleGroups });
  running.agents.push(b, idle);
  await Promise.all([waitForLog(b, 'discovery started', 30_000), waitForLog(idle, 'discovery started', 30_000)]);

  // The probes first (each polls until its agent answers), so their own start-up is not timed.
  // The idle agent is scraped as often as a (monitoring scrapes every agent): what serving
  // /metrics costs — its compiled code, its garbage — is then in both, not counted as discovery.
  const aHost = net.hosts.get('a')!;
  const startProbe = (name: string) => {
    const host = net.hosts.get(name)!;
    const args = [JSON.stringify({ admin: `http://${ADMIN}`, peer: `${host.address}:${AGENT_PORT}`, cert: client.cert, key: client.key, ca: client.ca })];
    const probe = startScript(host.ns, 'probe.ts', args, `probe of ${name}`, `probe-${name}`);
    running.probes.push(probe);
    return probe;
  };
  const probe = startProbe('a');
  const idleProbe = startProbe('idle');
  await Promise.all([probe.event('ready', 30_000), idleProbe.event('ready', 30_000)]);

  // The simulated fleet has been advertising for at least one (stretched) interval: its steady state.
  await sleep(Math.max(0, simReady + Math.max(o.discovery.intervalMs, o.discovery.ttlMs / 3) * 1.5 - Date.now()));

  log(`  starting agent "a" cold among ${o.agents + 1} peers …\n`);
  const drops0 = net.udpCounters(aHost.ns).receiveBufferDrops;
  const a = await startRealAgent(net, fleet, o.cache, dir, { ...base, name: 'a', groups: [group, pair] });
  running.agents.push(a);
  const expected = o.agents + 1;
  const converged = await probe.call<{ metAt: number | null; max: number; polls: number }>(
    { op: 'until-count', atLeast: expected, timeoutMs: o.convergeTimeoutMs, everyMs: 100 },
    o.convergeTimeoutMs + 15_000,
  );
  await idleProbe.call({ op: 'scrape', times: converged.polls, everyMs: 100 }, converged.polls * 1000 + 15_000);
  const discoveryStartedAt = await waitForLog(a, 'discovery started', 5000).catch(() => NaN);
  const convergence = {
    reached: converged.metAt !== null,
    fromSpawnMs: converged.metAt === null ? null : converged.metAt - a.spawnedAt,
    fromDiscoveryStartMs: converged.metAt === null || Number.isNaN(discoveryStartedAt) ? null : converged.metAt - discoveryStartedAt,
    maxListed: converged.max,
    receiveBufferDrops: net.udpCounters(aHost.ns).receiveBufferDrops - drops0,
  };
  log(`  convergence: ${convergence.reached ? `${convergence.fromSpawnMs} ms from spawn` : `not reached in ${o.convergeTimeoutMs} ms (most listed ${converged.max} of ${expected})`}\n`);

  // Settle: every new peer's identity check has run (no new connection for 2 s). Checks are
  // paced (discovery.identityChecks.perSecond, 10/s by default: 1,000 peers take ~100 s) and
  // happen once per new peer, so they are start-up work, not the steady state: the window
  // starts after them, bounded by their expected duration (+30 s). What they cost is measured
  // over this phase and reported beside the window (`cpu.checks`, `rss.checksBytes`).
  const checksDeadline = Date.now() + Math.ceil(o.agents / IDENTITY_CHECKS_PER_SECOND) * 1000 + 30_000;
  const k0 = { a: cpuSeconds(a.pid), idle: cpuSeconds(idle.pid), t: performance.now() };
  const checkRss = { a: [] as number[], idle: [] as number[] };
  for (;;) {
    const r = await responder.call<ResponderStats>({ op: 'responder', from: a.address }, 10_000);
    if (Date.now() - r.lastAt > 2000 || Date.now() > checksDeadline) break;
    checkRss.a.push(memoryOf(a.pid).rss);
    checkRss.idle.push(memoryOf(idle.pid).rss);
    await sleep(500);
  }
  const k1 = { a: cpuSeconds(a.pid), idle: cpuSeconds(idle.pid), t: performance.now() };
  const checksPhase = {
    seconds: (k1.t - k0.t) / 1000,
    discovery: (k1.a - k0.a - (k1.idle - k0.idle)) / Math.max(0.001, (k1.t - k0.t) / 1000),
    rssBytes: checkRss.a.length ? median(checkRss.a) - median(checkRss.idle) : NaN,
  };
  const checksBefore = (await responder.call<ResponderStats>({ op: 'responder', from: a.address }, 10_000)).connections;
  log(`  steady window of ${o.seconds} s …\n`);
  const s0 = await sim.call<SendStats>({ op: 'stats' }, 10_000);
  const rx0 = net.rxCounters(a.ns);
  const udp0 = net.udpCounters(a.ns);
  const c0 = { a: cpuSeconds(a.pid), idle: cpuSeconds(idle.pid), t: performance.now() };
  const listed: number[] = [];
  const mem = { a: [] as Array<ReturnType<typeof memoryOf>>, idle: [] as Array<ReturnType<typeof memoryOf>> };
  const windowEnd = Date.now() + o.seconds * 1000;
  while (Date.now() < windowEnd) {
    await sleep(Math.min(2000, Math.max(0, windowEnd - Date.now())));
    mem.a.push(memoryOf(a.pid));
    mem.idle.push(memoryOf(idle.pid));
    const [n] = await Promise.all([probe.call<{ count?: number }>({ op: 'count' }, 10_000), idleProbe.call({ op: 'count' }, 10_000)]);
    if (n.count !== undefined) listed.push(n.count);
  }
  const c1 = { a: cpuSeconds(a.pid), idle: cpuSeconds(idle.pid), t: performance.now() };
  const rx1 = net.rxCounters(a.ns);
  const udp1 = net.udpCounters(a.ns);
  const s1 = await sim.call<SendStats>({ op: 'stats' }, 10_000);
  const secs = (c1.t - c0.t) / 1000;
  const simSecs = (s1.at - s0.at) / 1000;
  const cpu = { agent: (c1.a - c0.a) / secs, idle: (c1.idle - c0.idle) / secs, discovery: 0 };
  cpu.discovery = cpu.agent - cpu.idle;
  const rssA = median(mem.a.map((m) => m.rss));
  const rssIdle = median(mem.idle.map((m) => m.rss));
  const part = (k: 'anon' | 'file') => median(mem.a.map((m) => m[k])) - median(mem.idle.map((m) => m[k]));
  const sampled = mem.a.map((m, i) => m.rss - mem.idle[i]!.rss);
  const simMeanDatagramBytes = (s1.bytes - s0.bytes) / Math.max(1, s1.datagrams - s0.datagrams);
  const advertsPerSec = (udp1.delivered - udp0.delivered + udp1.errors - udp0.errors) / secs;
  const atHost = {
    advertsPerSec,
    advertBytesPerSec: advertsPerSec * (simMeanDatagramBytes + 42),
    receiveBufferDropsPerSec: (udp1.receiveBufferDrops - udp0.receiveBufferDrops) / secs,
    linkPacketsPerSec: (rx1.packets - rx0.packets) / secs,
    linkBytesPerSec: (rx1.bytes - rx0.bytes) / secs,
    simDatagramsPerSec: (s1.datagrams - s0.datagrams) / simSecs,
    simMeanDatagramBytes,
    sendErrors: s1.errors - s0.errors,
  };
  // After the window: a minute or more since a's start, so firstMinute is whole.
  const lines = (msg: string, detail = '') =>
    readFileSync(a.logFile, 'utf8')
      .split('\n')
      .filter((l) => l.includes(`"msg":"${msg}`) && l.includes(detail)).length;
  const identityChecks = {
    ...(await responder.call<ResponderStats>({ op: 'responder', from: a.address }, 10_000)),
    proved: lines('peer proved its identity'),
    unreachable: lines('peer unreachable for its identity check'),
    mismatch: lines('peer failed its identity check'),
    // No handshake in time (a peer too busy to answer): counted among the unreachable.
    handshakeTimeouts: lines('peer unreachable for its identity check', 'no TLS handshake within'),
  };

  const snapshot = await probe.call<{ count: number | null; rejected: Record<string, number>; fetchMs: number | null; failed?: string }>({ op: 'peers' }, 60_000);
  if (snapshot.failed) log(`  GET /v1/peers failed three times: ${snapshot.failed}\n`);
  const rejected = Object.fromEntries(Object.entries(snapshot.rejected).filter(([k, v]) => k !== 'accepted' && v > 0));

  log('  churn: a peer vanishes, one joins, one changes its routines …\n');
  const lastAdvert: number[] = [];
  const churnOf = async (indices: number[], cmd: (index: number) => Record<string, unknown>, present: boolean, routine?: string) => {
    const answers = await Promise.all(indices.map((index) => sim.call<{ at: number; lastSentAt?: number }>(cmd(index), 10_000)));
    const timeoutMs = o.discovery.ttlMs * 3 + 5000;
    const agents = indices.map(simName);
    const seen = await probe.call<{ metAt: Record<string, number | null> }>({ op: 'until-peers', agents, present, ...(routine ? { routine } : {}), timeoutMs, everyMs: 100 }, timeoutMs + 30_000);
    answers.forEach((a, i) => a.lastSentAt !== undefined && seen.metAt[agents[i]!] != null && lastAdvert.push(seen.metAt[agents[i]!]! - a.lastSentAt));
    return agents.map((agent, i) => (seen.metAt[agent] == null ? null : seen.metAt[agent]! - answers[i]!.at));
  };
  const slowest = (xs: Array<number | null>) => (xs.some((x) => x === null) ? null : Math.max(...(xs as number[])));
  const c = Math.min(CHURN, Math.floor(o.agents / 2));
  const range = (from: number) => Array.from({ length: c }, (_, i) => from + i);
  // Only a listed peer can vanish from the list: wait (bounded) until the chosen ones are.
  const listedFirst = await probe.call<{ metAt: Record<string, number | null> }>(
    { op: 'until-peers', agents: range(0).map(simName), present: true, timeoutMs: o.discovery.ttlMs * 3, everyMs: 100 },
    o.discovery.ttlMs * 3 + 30_000,
  );
  const vanish = await churnOf(range(0), (index) => ({ op: 'vanish', index }), false);
  vanish.forEach((_, i) => listedFirst.metAt[simName(i)] === null && (vanish[i] = null));
  const joined = await churnOf(range(o.agents), (index) => ({ op: 'join', index }), true);
  const change = await churnOf(range(c), (index) => ({ op: 'change', index, routines: [...SIM_ROUTINES.slice(0, 3), 'sim-changed'] }), true, 'sim-changed');

  log(`  dispatch --discover vs direct, ${DISPATCH_RUNS} each …\n`);
  const dispatch = await measureDispatch(a, b, client);
  dispatch.peersFetchMs = snapshot.fetchMs;

  const wants = await sim.call<{ requests: number; asked: number }>({ op: 'wants' }, 10_000);
  await running.stop();
  running.agents = [];
  running.probes = [];
  const result: ScenarioResult = {
    agents: o.agents,
    sources,
    discovery: o.discovery,
    expectedPeers: expected,
    convergence,
    window: { seconds: secs, listedMin: Math.min(...listed), listedMax: Math.max(...listed) },
    atHost,
    cpu: { ...cpu, checks: checksPhase.discovery, checksSeconds: checksPhase.seconds },
    rss: {
      agentBytes: rssA,
      idleBytes: rssIdle,
      discoveryBytes: rssA - rssIdle,
      discoveryAnonBytes: part('anon'),
      discoveryFileBytes: part('file'),
      discoveryMinBytes: Math.min(...sampled),
      discoveryMaxBytes: Math.max(...sampled),
      checksBytes: checksPhase.rssBytes,
    },
    identityChecks: { ...identityChecks, duringWindow: identityChecks.connections - checksBefore },
    wants,
    table: { discovered: lines('peer discovered'), expired: lines('peer expired') },
    ...(snapshot.failed ? { apiFailure: snapshot.failed } : {}),
    rejected,
    churn: { vanish, vanishSinceLastAdvert: lastAdvert, join: joined, change, vanishMs: slowest(vanish), joinMs: slowest(joined), changeMs: slowest(change) },
    dispatch,
    setup: { certificatesMs: generatedMs },
  };
  // Its logs and configs are kept only when the scenario failed (the error names the logs).
  rmSync(dir, { recursive: true, force: true });
  return result;
}

/**
 * `skein dispatch echo --discover` through "a" (which must pick "b", the only peer offering
 * echo, among all the others) against `skein dispatch echo --peer b`, alternating, each a
 * fresh CLI process in a's namespace; the difference of the medians is what discovery adds:
 * fetching a's peer table and choosing from it (the call itself is the same).
 */
async function measureDispatch(a: RealAgent, b: RealAgent, client: { cert: string; key: string; ca: string }) {
  const creds = ['--cert', client.cert, '--key', client.key, '--ca', client.ca];
  const run = (args: string[]) =>
    new Promise<{ ms: number; out: string; code: number | null }>((resolve) => {
      const started = performance.now();
      const p = spawn('ip', ['netns', 'exec', a.ns, BIN, 'dispatch', 'echo', '--args', '["fleet"]', '--json', '--timeout', '10000', ...args, ...creds], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d));
      const killer = setTimeout(() => p.kill('SIGKILL'), 30_000);
      p.on('close', (code) => {
        clearTimeout(killer);
        resolve({ ms: performance.now() - started, out, code });
      });
    });
  const discover: number[] = [];
  const direct: number[] = [];
  let ranOn: string | undefined;
  let error: string | undefined;
  for (let i = 0; i < DISPATCH_RUNS; i++) {
    const x = await run(['--peer', b.endpoint]);
    if (x.code !== 0) {
      error = `direct to b: exit ${x.code}: ${x.out.trim()}`;
      break;
    }
    direct.push(x.ms);
    const d = await run(['--discover', '--peer', a.endpoint]);
    if (d.code !== 0) {
      error = `exit ${d.code}: ${d.out.trim()}`;
      break;
    } else {
      ranOn = (JSON.parse(d.out) as { peer?: string }).peer;
      discover.push(d.ms);
    }
  }
  if (error) return { discoverMs: null, directMs: direct.length ? median(direct) : null, addedMs: null, ranOn, error, peersFetchMs: 0 };
  return { discoverMs: median(discover), directMs: median(direct), addedMs: median(discover) - median(direct), ranOn, peersFetchMs: 0 } as ScenarioResult['dispatch'];
}
