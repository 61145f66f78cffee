/**
 * The simulator process, run inside the sender namespace by main.ts:
 *   bun bench/fleet/simulator.ts SPEC.json
 * Binds one UDP socket per source address, listens on the group for the real agents' requests
 * for records, and starts every active simulated agent at a random point of its first interval
 * (a fleet does not start in one millisecond). Prints {"event":"ready"} once everything is bound, then answers the commands
 * of spec.ts, one JSON line each. Exits when stdin closes, on SIGTERM, or after --max-seconds
 * (a bound, so a lost orchestrator never leaves it sending).
 */
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { DiscoveryReport } from '../../agent/discovery/report.ts';
import { createAdvertVerifier } from '../../agent/discovery/verifier.ts';
import { createLogger } from '../../agent/log/index.ts';
import { SimAgent } from './sim-agent.ts';
import type { SendStats, SimCommand, SimSpec } from './spec.ts';

const [specFile, maxSecondsArg] = process.argv.slice(2);
if (!specFile) throw new Error('usage: simulator.ts SPEC.json [MAX_SECONDS]');
const spec = JSON.parse(readFileSync(specFile, 'utf8')) as SimSpec;
const maxSeconds = Number(maxSecondsArg ?? 1800);
const out = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`);

const stats: SendStats = { at: 0, datagrams: 0, bytes: 0, errors: 0 };
const report = new DiscoveryReport({ log: createLogger({ level: 'warn' }), now: Date.now, verifierCounters: () => ({}) });

const sockets = new Map<string, Socket>();
for (const source of new Set(spec.agents.map((a) => a.source))) {
  const socket = createSocket({ type: 'udp4' });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, source, () => resolve());
  });
  socket.setMulticastInterface(spec.interface);
  socket.setMulticastTTL(1);
  socket.setMulticastLoopback(false);
  socket.on('error', () => stats.errors++);
  sockets.set(source, socket);
}
const agents = spec.agents.map((a) => new SimAgent(a, spec, sockets.get(a.source)!, report, stats));

// The real agents' records may ask for ours ("want": [] for every peer, or key ids): the agent's
// own verifier reads them, and the named simulated agents answer through their advertiser.
const byKey = new Map(agents.map((a) => [a.keyId, a]));
const wants = { requests: 0, asked: 0 };
const verifier = createAdvertVerifier({ fleet: spec.fleet, rootKeys: [spec.rootKey], trustDomains: [spec.trustDomain], now: Date.now });
const listener = createSocket({ type: 'udp4', reuseAddr: true });
await new Promise<void>((resolve, reject) => {
  listener.once('error', reject);
  listener.bind(spec.group.port, spec.group.address, () => resolve());
});
listener.addMembership(spec.group.address, spec.interface);
listener.on('message', (data, rinfo) => {
  const r = verifier.verify(data, rinfo.address);
  if (!r.ok || 'rd' in r.payload || r.payload.want === undefined) return;
  const want = r.payload.want;
  wants.requests++;
  const asked = want.length === 0 ? agents : want.map((k) => byKey.get(k)).filter((a) => a !== undefined);
  for (const a of asked) a.wanted();
  wants.asked += asked.length;
});

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  for (const a of agents) a.vanish();
  for (const s of sockets.values()) s.close();
  listener.close();
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, maxSeconds * 1000).unref();

agents.forEach((a, i) => {
  if (spec.agents[i]!.active) a.start(Math.random() * spec.intervalMs);
});
out({ event: 'ready', at: Date.now(), agents: agents.length, sources: sockets.size });

async function handle(cmd: SimCommand): Promise<Record<string, unknown>> {
  switch (cmd.op) {
    case 'stats':
      return { ...stats, at: Date.now() };
    case 'wants':
      return { ...wants };
    case 'vanish':
      agents[cmd.index]!.vanish();
      return { at: Date.now(), lastSentAt: agents[cmd.index]!.lastSentAt };
    case 'join': {
      const at = Date.now();
      agents[cmd.index]!.start(0);
      return { at };
    }
    case 'change': {
      const at = Date.now();
      await agents[cmd.index]!.restart(cmd.routines);
      return { at };
    }
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line) as SimCommand & { id: number };
  handle(cmd).then(
    (answer) => out({ ...answer, id: cmd.id }),
    (err: Error) => out({ id: cmd.id, error: err.message }),
  );
});
lines.on('close', stop);
