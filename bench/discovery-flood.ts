/**
 * Dispatch latency while the agent is flooded with forged advertisements (part of `npm run
 * bench`): an agent with discovery on loopback multicast serves sequential `echo` calls,
 * first quietly, then while this process sends 5,000 forged adverts/s to its group (valid
 * framing and fleet, a trusted key id, a broken signature: the most expensive kind to
 * reject). Target: p99 within 2× of unflooded. Rounds alternate quiet/flooded; medians.
 * Traffic stays on 127.0.0.1; the flood is bounded by the measurement and stops with it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SkeinClient } from '../agent/client/index.ts';
import { encodeAdvert } from '../agent/discovery/advert.ts';
import { formatPublicKey, generateKeyPair, writeKeyPair } from '../signing/index.ts';

const ROOT = resolve(import.meta.dir, '..');
const ROUNDS = Number(process.env.SKEIN_BENCH_ROUNDS ?? 5);
const CALLS = Number(process.env.SKEIN_BENCH_SEQ ?? 2000);
const RATE = 5000;
const PORT = 40000 + Math.floor(Math.random() * 19000);
const dir = mkdtempSync(join(tmpdir(), 'skein-bench-flood-'));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const agentKey = writeKeyPair(join(dir, 'agent.key'));
const forgerKey = generateKeyPair();
writeFileSync(
  join(dir, 'agent.config.json'),
  JSON.stringify({
    agent: { name: 'flooded', listen: '127.0.0.1:0', stateDir: 'state' },
    log: { level: 'info', format: 'json' },
    authorization: { allow: [{ identities: ['spiffe://skein.local/client/dev-client'], routines: ['echo'] }] },
    routines: { echo: { file: join(ROOT, 'routines/examples.py') } },
    discovery: { enabled: true, fleet: 'bench', signingKey: join(dir, 'agent.key'), trustedKeys: [formatPublicKey(agentKey.publicKey)], groups: [`239.255.77.77:${PORT}`] },
  }),
);
const log = join(dir, 'agent.log');
const fd = openSync(log, 'w');
const agent = spawn(join(ROOT, 'dist/skein'), ['agent', '--config', join(dir, 'agent.config.json')], { cwd: dir, stdio: ['ignore', 'ignore', fd] });
closeSync(fd);
children.push(agent);
let port = 0;
for (let i = 0; i < 200 && !port; i++) {
  await new Promise((r) => setTimeout(r, 50));
  port = Number(readFileSync(log, 'utf8').match(/"msg":"listening","address":"[^"]*:(\d+)"/)?.[1] ?? 0);
}
if (!port) throw new Error(`agent did not start:\n${readFileSync(log, 'utf8')}`);
const pki = join(dir, 'state/pki');
const client = new SkeinClient({
  peer: `127.0.0.1:${port}`,
  cert: readFileSync(join(pki, 'client-dev-client.crt')),
  key: readFileSync(join(pki, 'client-dev-client.key')),
  ca: readFileSync(join(pki, 'ca.crt')),
});

// Forgeries: signed by another key but claiming the agent's own (trusted) key id, so every
// one reaches the signature check unless the per-source rate limit drops it first.
const forged: Buffer[] = [];
for (let i = 0; i < 2000; i++) {
  const bytes = Buffer.from(
    encodeAdvert(
      {
        v: 1,
        fleet: 'bench',
        agent: `forger${i}`,
        spiffe: 'spiffe://skein.local/agent/forger',
        endpoints: ['127.0.0.1:1'],
        routines: ['echo'],
        load: 0,
        capacity: 1,
        tlsFingerprint: '0'.repeat(64),
        seq: Date.now() + i,
        iat: Date.now(),
        ttl: 6000,
      },
      forgerKey,
    ),
  );
  // Same-length key ids: swapping the text keeps the framing canonical, breaks the signature.
  const at = bytes.indexOf(forgerKey.keyId);
  bytes.write(agentKey.keyId, at, 'latin1');
  forged.push(bytes);
}
const sender = createSocket({ type: 'udp4' });
await new Promise<void>((r) => sender.bind(0, '127.0.0.1', () => r()));
sender.setMulticastInterface('127.0.0.1');
sender.setMulticastLoopback(true);
let flooding = false;
let sent = 0;
let floodStart = 0;
/** Keeps the total sent at RATE × elapsed time (timers are coarse) while `flooding`. */
function flood(): void {
  if (!flooding) return;
  const due = Math.floor(((performance.now() - floodStart) / 1000) * RATE);
  while (sent < due) sender.send(forged[sent++ % forged.length]!, PORT, '239.255.77.77');
  setTimeout(flood, 2);
}

async function p99(): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    await client.dispatch('echo', { args: [i] });
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(CALLS / 2)]!, p99: times[Math.floor(CALLS * 0.99)]! };
}

for (let i = 0; i < 300; i++) await client.dispatch('echo', { args: [i] });
const quiet: number[] = [];
const loud: number[] = [];
const quiet50: number[] = [];
const loud50: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const q = await p99();
  quiet.push(q.p99);
  quiet50.push(q.p50);
  flooding = true;
  const started = performance.now();
  sent = 0;
  floodStart = performance.now();
  flood();
  const l = await p99();
  flooding = false;
  loud.push(l.p99);
  loud50.push(l.p50);
  process.stderr.write(`  round ${r + 1}/${ROUNDS}: quiet p99 ${q.p99.toFixed(3)} ms, flooded p99 ${l.p99.toFixed(3)} ms at ${Math.round(sent / ((performance.now() - started) / 1000))} adverts/s\n`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const counts = (await client.peers()).rejected ?? {};
console.log(`\ndiscovery flood: ${ROUNDS} rounds of ${CALLS} sequential echo calls, quiet vs ${RATE} forged adverts/s; medians\n`);
console.log('| measure | quiet | flooded | ratio |');
console.log('|---|---|---|---|');
console.log(`| p50 (ms) | ${median(quiet50).toFixed(3)} | ${median(loud50).toFixed(3)} | ${(median(loud50) / median(quiet50)).toFixed(2)}× |`);
console.log(`| p99 (ms) | ${median(quiet).toFixed(3)} | ${median(loud).toFixed(3)} | ${(median(loud) / median(quiet)).toFixed(2)}× |`);
console.log(
  `\nrejected by the agent: ${Object.entries(counts)
    .filter(([k, v]) => k !== 'accepted' && v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}`,
);
console.log(`target: flooded p99 within 2× of quiet → ${median(loud) <= 2 * median(quiet) ? 'met' : 'NOT met'}`);
await client.close();
sender.close();
agent.kill('SIGTERM');
process.exit(0);
