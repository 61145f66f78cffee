/**
 * Discovery across hosts: three skein agents, each in its own network namespace ("host"), plus
 * an attacker namespace, all on one bridge (test/helpers/netns.ts: the bridge sits in its own
 * namespace and nothing links to the root namespace, so every packet here stays inside the
 * namespaces this file creates).
 *
 *   host a  node-a  offers mark, echo        host b  node-b  offers mark, pid
 *   host c  node-c  offers mark, pid         host d  attacker: honeypot server + multicast
 *
 * One fleet PKI (`skein pki`), one advertisement key per agent (`skein keygen`), every agent
 * trusting the others' keys pinned to their SPIFFE IDs — and a fourth trusted key, mallory's,
 * pinned to spiffe://fleet.test/agent/mallory, that the attacker holds (an insider: the fleet
 * CA also issued mallory a certificate, which the honeypot presents).
 *
 * The test process cannot reach the namespaces' addresses (no route), so every `skein peers`
 * and `skein dispatch --discover` runs inside a host namespace against that host's agent.
 *
 * Attacks, each of which must leave the honeypot without a single request and show up in the
 * rejection counters of all three agents:
 *   (a) adverts signed by the attacker's own (untrusted) key                → unknown-key
 *   (b) a real agent's advert captured on the group and re-sent verbatim    → replay
 *       the same with the endpoint bytes rewritten to the attacker's        → bad-signature
 *   (c) mallory's key claiming another agent's SPIFFE ID                    → spiffe-mismatch
 *       mallory's key advertising the least loaded peer, at the honeypot,
 *       with node-a's certificate fingerprint: believed (the key is trusted), but the pool
 *       refuses it at the handshake (SKEIN_ERR_PEER_IDENTITY) and fails over to a real agent
 * Finally one agent is SIGKILLed and a --discover dispatch still lands on a live one.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BINARY, EXAMPLES, FIXTURES, ROOT, baseConfig, runCli, stopAll, tempDir } from '../helpers/agent.ts';
import { REJECT_REASONS } from '../../agent/discovery/reasons.ts';
import { createNetwork, netnsNeed, stopProcess, type NetHost, type Network } from '../helpers/netns.ts';
import { file, requires } from '../helpers/requires.ts';

const BUN = join(ROOT, 'node_modules/.bin/bun');
const ROUTINES_FIX = join(FIXTURES, 'routines.py');
const HONEYPOT = join(import.meta.dirname, 'fixtures-netns/honeypot.mjs');
const ATTACKER = join(import.meta.dirname, 'fixtures-netns/attacker.ts');
const GROUP = { address: '239.255.77.79', port: 40_000 + Math.floor(Math.random() * 20_000) };
const SUBNET = `10.232.${1 + Math.floor(Math.random() * 250)}.0/24`;
const FLEET = 'netns-fleet';
const TD = 'fleet.test';
const AGENT_PORT = 7443;
const NAMES = ['node-a', 'node-b', 'node-c'] as const;
type Name = (typeof NAMES)[number];
// Every reason the verifier can count, as the agent lists them.
const REASONS: readonly string[] = REJECT_REASONS;

type Event = Record<string, unknown>;
interface Lines {
  proc: ChildProcess;
  events: Event[];
  raw: string[];
}
/** Collects JSON lines from `stream` of `proc` (non-JSON lines are kept raw). */
function collect(proc: ChildProcess, stream: 'stdout' | 'stderr'): Lines {
  const l: Lines = { proc, events: [], raw: [] };
  let buf = '';
  proc[stream]?.setEncoding('utf8');
  proc[stream]?.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        l.events.push(JSON.parse(line) as Event);
      } catch {
        l.raw.push(line);
      }
    }
  });
  const other = stream === 'stdout' ? 'stderr' : 'stdout';
  proc[other]?.setEncoding('utf8');
  proc[other]?.on('data', (d: string) => l.raw.push(d));
  return l;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor(check: () => boolean, what: string, ms = 4000, explain: () => string = () => ''): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${explain() ? `: ${explain()}` : ''}`);
    await sleep(20);
  }
}
const exited = (p: ChildProcess) => p.exitCode !== null || p.signalCode !== null;

interface Agent {
  name: Name;
  host: NetHost;
  out: Lines;
  endpoint: string;
}

requires(netnsNeed(), file(BUN, { why: 'npm install puts it there' })).describe('discovery across network namespaces', () => {
  let net: Network;
  let pki: string;
  let keys: string;
  const agents = {} as Record<Name, Agent>;
  let attackerHost: NetHost;
  let honeypot: Lines;
  let attacker: Lines;
  let honeypotFingerprint: string;
  let cmdId = 0;

  const hostOf = (n: Name) => agents[n].host;
  const creds = () => ['--cert', join(pki, 'client-ops.crt'), '--key', join(pki, 'client-ops.key'), '--ca', join(pki, 'ca.crt')];
  const pub = (name: string) => readFileSync(join(keys, `${name}.key.pub`), 'utf8').trim();
  const logs = (n: Name) => agents[n].out.events;
  /** SHA-256 of a certificate from the fleet PKI, as adverts carry it. */
  const fingerprintOf = (name: string) => new X509Certificate(readFileSync(join(pki, `agent-${name}.crt`))).fingerprint256.replaceAll(':', '').toLowerCase();
  const honeypotEvents = (kind?: string) => honeypot.events.filter((e) => e.event !== 'ready' && (kind === undefined || e.event === kind));

  interface PeerView {
    agent: string;
    spiffe: string;
    endpoints: string[];
    routines: string[];
    tlsFingerprint: string;
    source: string;
    load: number;
    capacity: number;
    coolDownMs: number;
  }
  interface PeersAnswer {
    enabled: boolean;
    peers: PeerView[];
    rejected: Record<string, number>;
  }
  /** `skein peers --json`, run inside the agent's own namespace. */
  async function peersOf(n: Name): Promise<PeersAnswer> {
    const r = await hostOf(n).run(BINARY, ['peers', '--peer', agents[n].endpoint, ...creds(), '--json'], { timeoutMs: 8000 });
    if (r.code !== 0) throw new Error(`skein peers on ${n} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as PeersAnswer;
  }
  const allPeers = async () => Object.fromEntries(await Promise.all(NAMES.map(async (n) => [n, await peersOf(n)] as const))) as Record<Name, PeersAnswer>;
  /** Polls every agent's counters until `ok` holds for all (bounded), and returns them. */
  async function countersUntil(ok: (c: Record<string, number>, n: Name) => boolean): Promise<Record<Name, Record<string, number>>> {
    let last: Record<Name, PeersAnswer> | undefined;
    for (let i = 0; i < 20; i++) {
      last = await allPeers();
      if (NAMES.every((n) => ok(last![n].rejected, n))) break;
      await sleep(100);
    }
    return Object.fromEntries(NAMES.map((n) => [n, last![n].rejected])) as Record<Name, Record<string, number>>;
  }
  /** Reject reasons whose counter moved between two snapshots. */
  const moved = (before: Record<string, number>, after: Record<string, number>) =>
    Object.fromEntries([...new Set([...REASONS, ...Object.keys(after)])].filter((r) => r !== 'accepted' && (after[r] ?? 0) !== (before[r] ?? 0)).map((r) => [r, (after[r] ?? 0) - (before[r] ?? 0)]));

  /** `skein dispatch ROUTINE --discover --json` inside host `n`, through its agent. */
  async function dispatchFrom(n: Name, routine: string, args: unknown[]) {
    const r = await hostOf(n).run(BINARY, ['dispatch', routine, '--args', JSON.stringify(args), '--discover', '--json', '--timeout', '5000', '--peer', agents[n].endpoint, ...creds()], {
      timeoutMs: 12_000,
    });
    return { ...r, answer: r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined };
  }

  /** Sends one command to the attacker process and waits for it to finish. */
  async function attack(cmd: Record<string, unknown>): Promise<number> {
    const id = ++cmdId;
    attacker.proc.stdin!.write(JSON.stringify({ ...cmd, id }) + '\n');
    let done: Event | undefined;
    await waitFor(
      () => (done = attacker.events.find((e) => (e.event === 'done' || e.event === 'error') && e.id === id)) !== undefined,
      `attacker command ${String(cmd.op)}`,
      8000,
      () => attacker.raw.join(''),
    );
    if (done!.event === 'error') throw new Error(`attacker: ${String(done!.message)}`);
    return Number(done!.sent);
  }

  /** A payload the attacker signs (seq and iat are filled in by the attacker script). */
  const advert = (over: Record<string, unknown>) => ({
    v: 1,
    fleet: FLEET,
    agent: 'mallory',
    spiffe: `spiffe://${TD}/agent/mallory`,
    endpoints: [`${attackerHost.address}:${AGENT_PORT}`],
    routines: ['mark', 'echo', 'pid', 'steal'],
    load: 0,
    capacity: 100,
    tlsFingerprint: honeypotFingerprint,
    ttl: 10_000,
    ...over,
  });

  beforeAll(async () => {
    net = await createNetwork({ name: 'skdd', hosts: 4, subnet: SUBNET });
    const [a, b, c, d] = net.hosts as [NetHost, NetHost, NetHost, NetHost];
    attackerHost = d;
    pki = tempDir();
    keys = tempDir();
    const ok = async (args: string[]) => {
      const r = await runCli(args);
      if (r.code !== 0) throw new Error(`skein ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    };
    await ok(['pki', 'init', '--dir', pki, '--trust-domain', TD]);
    await ok(['pki', 'issue', '--dir', pki, '--name', 'ops', '--kind', 'client']);
    for (const [name, host] of [
      ['node-a', a],
      ['node-b', b],
      ['node-c', c],
      ['mallory', d],
    ] as const) {
      await ok(['pki', 'issue', '--dir', pki, '--name', name, '--kind', 'agent', '--host', host.address]);
    }
    await Promise.all([...NAMES, 'mallory'].map((n) => ok(['keygen', '--out', join(keys, `${n}.key`)])));
    honeypotFingerprint = fingerprintOf('mallory');

    // Every agent trusts all four keys, each pinned to the SPIFFE ID it may claim.
    const trusted = [...NAMES, 'mallory'].map((n) => `${pub(n)}@spiffe://${TD}/agent/${n}`);
    const routines: Record<Name, Record<string, unknown>> = {
      'node-a': { mark: { file: ROUTINES_FIX }, echo: { file: EXAMPLES } },
      'node-b': { mark: { file: ROUTINES_FIX }, pid: { file: ROUTINES_FIX } },
      'node-c': { mark: { file: ROUTINES_FIX }, pid: { file: ROUTINES_FIX } },
    };
    const start = async (name: Name, host: NetHost): Promise<Agent> => {
      const dir = tempDir();
      const configPath = join(dir, 'agent.config.json');
      const endpoint = `${host.address}:${AGENT_PORT}`;
      const config = {
        ...baseConfig({
          agent: { name, listen: endpoint, stateDir: 'state' },
          tls: { cert: join(pki, `agent-${name}.crt`), key: join(pki, `agent-${name}.key`), ca: join(pki, 'ca.crt'), trustDomain: TD },
          workers: { poolSize: 1 },
          authorization: { allow: [{ identities: [`spiffe://${TD}/client/ops`], routines: ['*'] }] },
          discovery: {
            enabled: true,
            fleet: FLEET,
            signingKey: join(keys, `${name}.key`),
            trustedKeys: trusted,
            groups: [`${GROUP.address}:${GROUP.port}`],
            interface: host.address,
            intervalMs: 300,
            ttlMs: 1500,
          },
        }),
        routines: routines[name],
      };
      writeFileSync(configPath, JSON.stringify(config, null, 2));
      const proc = host.exec(BINARY, ['agent', '--config', configPath], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const out = collect(proc, 'stderr');
      const agent = { name, host, out, endpoint };
      await waitFor(
        () => out.events.some((e) => e.msg === 'discovery started') || exited(proc),
        `${name} to start`,
        15_000,
        () => out.events.map((e) => JSON.stringify(e)).join('\n') + out.raw.join(''),
      );
      if (exited(proc)) throw new Error(`${name} exited at start-up: ${out.events.map((e) => JSON.stringify(e)).join('\n')}${out.raw.join('')}`);
      return agent;
    };
    const started = await Promise.all([start('node-a', a), start('node-b', b), start('node-c', c)]);
    for (const s of started) agents[s.name] = s;

    // The attacker: an HTTP/2 + TLS server (mallory's certificate) on the endpoint every attack
    // advertises, and a multicast listener/sender (the repo's own transport and encoder).
    honeypot = collect(d.exec('node', [HONEYPOT, JSON.stringify({ host: d.address, port: AGENT_PORT, cert: join(pki, 'agent-mallory.crt'), key: join(pki, 'agent-mallory.key') })]), 'stdout');
    attacker = collect(
      d.exec(BUN, [ATTACKER, JSON.stringify({ group: GROUP, interface: d.address, lifetimeMs: 60_000 })], { env: { ...process.env, CBOR_NATIVE_ACCELERATION_DISABLED: 'true' } }),
      'stdout',
    );
    await waitFor(() => [honeypot, attacker].every((p) => p.events.some((e) => e.event === 'ready') || exited(p.proc)), 'attacker processes ready', 8000);
    for (const [what, p] of [
      ['honeypot', honeypot],
      ['attacker', attacker],
    ] as const) {
      if (!p.events.some((e) => e.event === 'ready')) throw new Error(`${what} did not start: ${JSON.stringify(p.events)} ${p.raw.join('')}`);
    }
  });

  afterAll(async () => {
    attacker?.proc.stdin?.end();
    honeypot?.proc.stdin?.end();
    // Agents first (SIGTERM: goodbye, drain), then the attacker's processes; all by PID.
    await Promise.all(NAMES.map((n) => stopProcess(agents[n]?.out.proc, 3000)));
    await Promise.all([stopProcess(attacker?.proc, 1000), stopProcess(honeypot?.proc, 1000)]);
    if (net) {
      // Anything still running inside our namespaces (e.g. a worker of the SIGKILLed agent)
      // was started by this test: kill it by PID before the namespaces go.
      for (const ns of net.namespaces()) {
        const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 }).stdout ?? '';
        for (const pid of pids.split(/\s+/).filter(Boolean).map(Number)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
      await net.destroy();
    }
    await stopAll();
  });

  it('agents on three hosts discover each other across the bridge', async () => {
    for (const n of NAMES) {
      for (const other of NAMES.filter((o) => o !== n)) {
        await waitFor(() => logs(n).some((l) => l.msg === 'peer discovered' && l.peer === other), `${n} to discover ${other}`, 4000);
      }
    }
    const views = await allPeers();
    for (const n of NAMES) {
      const view = views[n];
      expect(view.enabled).toBe(true);
      expect(view.peers.map((p) => p.agent)).toEqual(NAMES.filter((o) => o !== n));
      for (const p of view.peers) {
        const host = hostOf(p.agent as Name);
        // Heard from the other namespace's address, over the bridge.
        expect(p).toMatchObject({ spiffe: `spiffe://${TD}/agent/${p.agent}`, endpoints: [`${host.address}:${AGENT_PORT}`], source: 'multicast', from: host.address });
        expect(p.tlsFingerprint).toBe(fingerprintOf(p.agent));
      }
      // Nothing but real adverts so far.
      expect(moved({}, view.rejected)).toEqual({});
      expect(view.rejected.accepted).toBeGreaterThan(0);
    }
  });

  it('(a) adverts signed by an untrusted key are counted as unknown-key and never draw a dispatch', async () => {
    // The attacker makes its own key, inside its namespace, with the product's keygen.
    const gen = await attackerHost.run(BINARY, ['keygen', '--out', join(keys, 'attacker.key')]);
    expect(gen.code).toBe(0);
    const before = await countersUntil(() => true);
    // The most attractive peer there could be (first by name, idle, huge capacity), pointing at
    // the honeypot with the honeypot's real identity: believed, it would get the call.
    const sent = await attack({ op: 'forge', key: join(keys, 'attacker.key'), payload: advert({ agent: 'aaa-intruder' }), count: 3, gapMs: 30 });
    expect(sent).toBe(3);
    const after = await countersUntil((c, n) => c['unknown-key'] === before[n]['unknown-key']! + 3);
    for (const n of NAMES) expect({ agent: n, moved: moved(before[n], after[n]) }).toEqual({ agent: n, moved: { 'unknown-key': 3 } });

    const views = await allPeers();
    for (const n of NAMES) expect(views[n].peers.map((p) => p.agent)).toEqual(NAMES.filter((o) => o !== n));
    const r = await dispatchFrom('node-c', 'mark', ['after-a']);
    expect(r.code).toBe(0);
    expect(r.answer).toEqual({ result: 'after-a', peer: 'node-a' });
    await waitFor(() => logs('node-a').some((l) => l.line === 'MARK:after-a'), 'MARK:after-a on node-a');
    expect(honeypotEvents()).toEqual([]);
  });

  it("(b) a replayed advert counts as replay, one rewritten to the attacker's endpoint as bad-signature", async () => {
    const a = hostOf('node-a');
    const realEp = Buffer.from(`${a.address}:${AGENT_PORT}`);
    const heard = () => attacker.events.filter((e) => e.event === 'recv' && e.from === a.address).map((e) => Buffer.from(String(e.b64), 'base64'));
    // node-a's full records (wire version 2: the ones that carry its endpoint; heartbeats in
    // between carry a digest of it). Two heard on the group, then a newer advert: every agent
    // has seen that by now (they are on the same bridge), so the two are stale sequence numbers.
    const fromA = () => heard().filter((dg) => dg.includes(realEp));
    await waitFor(() => fromA().length >= 2, "two of node-a's records captured by the attacker", 12_000);
    const seen = heard().length;
    await waitFor(() => heard().length > seen, 'a newer advert of node-a', 3000);
    const [older, old] = fromA().slice(-2) as [Buffer, Buffer];
    const before = await countersUntil(() => true);

    expect(await attack({ op: 'send', b64: [older.toString('base64'), old.toString('base64')], gapMs: 30 })).toBe(2);
    const replayed = await countersUntil((c, n) => c.replay === before[n].replay! + 2);

    // Same bytes with node-a's endpoint replaced by the attacker's (same length, so the CBOR
    // stays well-formed): only the signature can tell.
    const fakeEp = Buffer.from(`${attackerHost.address}:${AGENT_PORT}`);
    expect(fakeEp.length).toBe(realEp.length);
    const tampered = [older, old].map((dg) => {
      const at = dg.indexOf(realEp);
      expect(at).toBeGreaterThan(0);
      expect(dg.indexOf(realEp, at + 1)).toBe(-1);
      const copy = Buffer.from(dg);
      fakeEp.copy(copy, at);
      return copy;
    });
    expect(await attack({ op: 'send', b64: tampered.map((t) => t.toString('base64')), gapMs: 30 })).toBe(2);
    const after = await countersUntil((c, n) => c['bad-signature'] === before[n]['bad-signature']! + 2);
    for (const n of NAMES) {
      expect({ agent: n, moved: moved(before[n], replayed[n]) }).toEqual({ agent: n, moved: { replay: 2 } });
      expect({ agent: n, moved: moved(replayed[n], after[n]) }).toEqual({ agent: n, moved: { 'bad-signature': 2 } });
    }

    // node-a is still reached at its own address; echo (offered by node-a only) runs there.
    const views = await allPeers();
    for (const n of ['node-b', 'node-c'] as const) {
      expect(views[n].peers.find((p) => p.agent === 'node-a')).toMatchObject({ endpoints: [`${a.address}:${AGENT_PORT}`], source: 'multicast', from: a.address });
    }
    const r = await dispatchFrom('node-b', 'echo', ['after-b']);
    expect(r.code).toBe(0);
    expect(r.answer).toEqual({ result: 'after-b', peer: 'node-a' });
    expect(honeypotEvents()).toEqual([]);
  });

  it('(c) a trusted key pointing at a server with another certificate: refused on connect, failover, no request', async () => {
    const before = await countersUntil(() => true);
    const fpA = fingerprintOf('node-a');

    // Mallory's trusted key cannot claim another agent's SPIFFE ID: dropped on receipt.
    expect(await attack({ op: 'forge', key: join(keys, 'mallory.key'), payload: advert({ spiffe: `spiffe://${TD}/agent/node-b`, tlsFingerprint: fpA }), count: 2, gapMs: 30 })).toBe(2);
    const mismatched = await countersUntil((c, n) => c['spiffe-mismatch'] === before[n]['spiffe-mismatch']! + 2);
    for (const n of NAMES) expect({ agent: n, moved: moved(before[n], mismatched[n]) }).toEqual({ agent: n, moved: { 'spiffe-mismatch': 2 } });

    // A valid-looking advert: its own SPIFFE ID, but node-a's certificate fingerprint, the
    // honeypot's endpoint, and the lowest load ratio of all (and first by name among equals),
    // so every pool tries it first. The agents believe it: the key is trusted.
    expect(await attack({ op: 'forge', key: join(keys, 'mallory.key'), payload: advert({ tlsFingerprint: fpA }), count: 2, gapMs: 30 })).toBe(2);
    for (const n of NAMES) await waitFor(() => logs(n).some((l) => l.msg === 'peer discovered' && l.peer === 'mallory'), `${n} to list mallory`, 3000);
    const views = await allPeers();
    for (const n of NAMES) {
      expect(views[n].peers.map((p) => p.agent)).toEqual(['mallory', ...NAMES.filter((o) => o !== n)]);
      expect(views[n].peers[0]).toMatchObject({ endpoints: [`${attackerHost.address}:${AGENT_PORT}`], tlsFingerprint: fpA, load: 0, capacity: 100 });
    }

    // Every agent checks a new peer's identity with one handshake to its endpoint: the honeypot
    // presents mallory's certificate, not the advertised one, so each agent marks mallory
    // untrusted for a while (coolDownMs) and counts an identity mismatch. No request is sent.
    for (const n of NAMES) await waitFor(() => logs(n).some((l) => l.msg === 'peer failed its identity check; untrusted for a while' && l.peer === 'mallory'), `${n} to distrust mallory`, 5000);
    const checked = await allPeers();
    for (const n of NAMES) expect(checked[n].peers.find((p) => p.agent === 'mallory')?.coolDownMs).toBeGreaterThan(0);
    // (The checker hangs up as soon as it has seen the certificate, so the honeypot may log a
    // handshake error rather than a completed one; either way one connection per agent.)
    expect(honeypotEvents('tcp').length).toBeGreaterThanOrEqual(NAMES.length);
    expect(honeypotEvents('stream')).toEqual([]);

    // So the pool skips mallory outright and runs the call on node-b.
    const r = await dispatchFrom('node-a', 'mark', ['after-c']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.answer).toEqual({ result: 'after-c', peer: 'node-b' });
    await waitFor(() => logs('node-b').some((l) => l.line === 'MARK:after-c'), 'MARK:after-c on node-b');
    expect(honeypotEvents('stream')).toEqual([]);

    // A routine only the impostor offers: no trusted peer offers it.
    const only = await dispatchFrom('node-a', 'steal', ['x']);
    expect(only.code).not.toBe(0);
    expect(only.answer).toMatchObject({ code: 'SKEIN_ERR_NO_PEERS' });
    expect(honeypotEvents('stream')).toEqual([]);
    await waitFor(() => honeypotEvents('tcp-closed').length === honeypotEvents('tcp').length, 'the identity checks to close', 3000);

    // Without the pin (same CA, same routine) the same honeypot would have been called: the
    // refusal above is the fingerprint check, not a TLS failure.
    const direct = await hostOf('node-a').run(BINARY, ['dispatch', 'mark', '--args', '["direct"]', '--json', '--peer', `${attackerHost.address}:${AGENT_PORT}`, ...creds()]);
    // (Its 500 is not a skein answer: SKEIN_ERR_BAD_RESPONSE — an answer, not a TLS failure.)
    expect(direct.stderr).toContain('SKEIN_ERR_BAD_RESPONSE');
    await waitFor(() => honeypotEvents('stream').length === 1, 'the unpinned call at the honeypot', 3000);
    await waitFor(() => honeypotEvents('tcp-closed').length === honeypotEvents('tcp').length, 'the control connection to close', 3000);
    honeypot.events.splice(0, honeypot.events.length); // the control call is not an attack

    // Mallory's adverts were believed (signed by a trusted key); only its endpoint failed the
    // identity check. Its signed goodbye removes it.
    const after = await countersUntil(() => true);
    for (const n of NAMES) expect(moved(mismatched[n], after[n])).toEqual({ 'identity-mismatch': 1 });
    expect(await attack({ op: 'forge', key: join(keys, 'mallory.key'), payload: advert({ tlsFingerprint: fpA, goodbye: true }), count: 1 })).toBe(1);
    for (const n of NAMES) await waitFor(() => logs(n).some((l) => l.msg === 'peer said goodbye' && l.peer === 'mallory'), `${n} to drop mallory`, 3000);
  });

  it('dispatch fails over when an agent is SIGKILLed', async () => {
    const b = agents['node-b'];
    // Kill node-b right after one of its adverts: the others keep it for its TTL (1.5 s).
    const heard = attacker.events.filter((e) => e.event === 'recv' && e.from === b.host.address).length;
    await waitFor(() => attacker.events.filter((e) => e.event === 'recv' && e.from === b.host.address).length > heard, 'a fresh advert of node-b', 2000);
    b.out.proc.kill('SIGKILL');
    // pid is offered by node-b and node-c; node-b sorts first, so the pool tries it first.
    const r = await dispatchFrom('node-a', 'pid', []);
    expect(r.code).toBe(0);
    expect(r.answer).toMatchObject({ peer: 'node-c' });
    expect(typeof r.answer!.result).toBe('number');
    // node-b was still in node-a's table when the call was placed (it is still there now, and a
    // dead agent cannot come back): the pool failed over, it did not merely not see node-b.
    const view = await peersOf('node-a');
    expect(view.peers.map((p) => p.agent)).toContain('node-b');
    await waitFor(() => exited(b.out.proc), 'node-b to exit', 2000);
    expect(honeypotEvents()).toEqual([]);
  });
});
