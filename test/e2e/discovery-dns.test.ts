/**
 * Peers from DNS (discovery.dns) against a real DNS server: Debian's dnsmasq, serving SRV,
 * A and AAAA records in a network namespace this file creates, with real `dist/skein`
 * agents in others (test/helpers/netns.ts: nothing here reaches outside the namespaces).
 *
 *   h0  dnsmasq at 53/udp: SRV _skein._tcp.fleet.test → node-b, node-c, imp-ca, mallory
 *       (their A records in an addn-hosts file, re-read on SIGHUP)
 *   h1  node-a   follows the SRV record (resolver h0), allows spiffe://fleet.test/agent/node-*
 *   h2  node-b   offers mark, pid — its certificate names node-b.fleet.test, not its address
 *   h3  node-c   offers mark, echo
 *   h4  imp-ca   an agent whose certificate is from another CA (same trust domain name)
 *       mallory  an agent with a fleet-CA certificate whose SPIFFE ID the rules do not allow
 *
 * The records change while the agents run: a target gains its address (appears), loses it
 * (disappears), the SRV set is replaced; the impostors are refused by their certificates and
 * never listed; with dnsmasq stopped node-a keeps its peers for keepStaleMs, says so, then
 * drops them, and takes them back when dnsmasq answers again.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BINARY, EXAMPLES, FIXTURES, baseConfig, runCli, stopAll, tempDir } from '../helpers/agent.ts';
import { createNetwork, netnsNeed, type Network } from '../helpers/netns.ts';
import { nsProcess, startNsAgent, type NsProcess } from '../helpers/ns-agent.ts';
import { requires, tool } from '../helpers/requires.ts';
import type { PeerFields } from '../../agent/discovery/advert.ts';

const SUBNET = `10.233.${1 + Math.floor(Math.random() * 250)}.0/24`;
const TD = 'fleet.test';
const SRV = '_skein._tcp.fleet.test';
const PORT = 7443;
const ROUTINES_FIX = join(FIXTURES, 'routines.py');
const KEEP_STALE_MS = 6000;

type Peer = PeerFields & { source: string; from?: string };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

requires(netnsNeed(), tool('dnsmasq', 'dnsmasq-base')).describe('DNS discovery against dnsmasq', () => {
  let net: Network;
  let pki: string;
  let dnsDir: string;
  let dns: NsProcess | undefined;
  let a: NsProcess;
  const agents: NsProcess[] = [];
  /** Every agent name any peers snapshot of node-a listed, over the whole file. */
  const everListed = new Set<string>();
  const host = (i: number) => net.hosts[i]!;
  const creds = () => ['--cert', join(pki, 'client-ops.crt'), '--key', join(pki, 'client-ops.key'), '--ca', join(pki, 'ca.crt')];

  /** The zone: SRV records (in dnsmasq's config, read at start) and addresses (addn-hosts, re-read on SIGHUP). */
  const writeSrv = (targets: Array<[string, number]>) =>
    writeFileSync(
      join(dnsDir, 'dnsmasq.conf'),
      [
        // Authoritative for fleet.test: a name it does not hold is NXDOMAIN, not REFUSED.
        'local=/fleet.test/',
        ...targets.map(([t, port]) => `srv-host=${SRV},${t}.fleet.test,${port},0,10`),
      ].join('\n') + '\n',
    );
  const ALL_SRV: Array<[string, number]> = [
    ['node-b', PORT],
    ['node-c', PORT],
    ['imp-ca', PORT],
    ['mallory', PORT + 1],
  ];
  const writeHosts = (entries: Record<string, number>) =>
    writeFileSync(
      join(dnsDir, 'hosts'),
      // node-c has an AAAA record throughout: node-a dials every address a target has (this one leads nowhere).
      Object.entries(entries)
        .map(([name, i]) => `${host(i).address} ${name}.fleet.test\n`)
        .join('') + 'fd00:233::3 node-c.fleet.test\n',
    );
  async function startDns(): Promise<void> {
    const hosts = join(dnsDir, 'hosts');
    dns = nsProcess(host(0), 'dnsmasq', [
      '--keep-in-foreground',
      '--no-resolv',
      '--no-hosts',
      '--log-facility=-',
      '--user=root',
      `--conf-file=${join(dnsDir, 'dnsmasq.conf')}`,
      `--addn-hosts=${hosts}`,
      `--listen-address=${host(0).address}`,
      '--bind-interfaces',
      '--port=53',
      '--local-ttl=0',
    ]);
    const end = Date.now() + 5000;
    while (!dns.raw.join('\n').includes(`read ${hosts}`)) {
      if (Date.now() > end || dns.proc.exitCode !== null) throw new Error(`dnsmasq did not start: ${dns.raw.join('\n')}`);
      await sleep(50);
    }
  }
  /** dnsmasq re-reads its addn-hosts file; waits for it to say so. */
  async function sighup(): Promise<void> {
    const count = () => dns!.raw.join('\n').split(`read ${join(dnsDir, 'hosts')}`).length;
    const before = count();
    process.kill(dns!.proc.pid!, 'SIGHUP');
    const end = Date.now() + 5000;
    while (count() === before && Date.now() < end) await sleep(50);
  }
  async function restartDns(): Promise<void> {
    await dns!.stop();
    await startDns();
  }
  /** A log line of node-a written after line `from` (an index into a.lines). */
  const logAfter = (from: number, match: (l: Record<string, unknown>) => boolean, ms: number) => a.waitForLog((l) => a.lines.indexOf(l) >= from && match(l), ms);

  async function peersOfA(): Promise<{ peers: Peer[] }> {
    const r = await host(1).run(BINARY, ['peers', '--peer', `${host(1).address}:${PORT}`, ...creds(), '--json'], { timeoutMs: 8000 });
    if (r.code !== 0) throw new Error(`skein peers exited ${r.code}: ${r.stderr}`);
    const answer = JSON.parse(r.stdout) as { peers: Peer[] };
    for (const p of answer.peers) everListed.add(p.agent);
    return answer;
  }
  /** Polls node-a's peers until `ok` holds (bounded), returning the last answer. */
  async function peersUntil(ok: (dnsPeers: Peer[]) => boolean, what: string, ms = 10_000): Promise<Peer[]> {
    const end = Date.now() + ms;
    let last: Peer[] = [];
    while (Date.now() < end) {
      last = (await peersOfA()).peers.filter((p) => p.source === 'dns');
      if (ok(last)) return last;
      await sleep(200);
    }
    const log = a.lines.filter((l) => l.schema === undefined && /DNS|peer/.test(String(l.msg)));
    throw new Error(`timed out waiting for ${what}; node-a lists ${JSON.stringify(last)}\nnode-a:\n${log.map((l) => JSON.stringify(l)).join('\n')}\ndnsmasq:\n${dns?.raw.join('\n')}`);
  }
  const names = (ps: Peer[]) => ps.map((p) => p.agent).sort();

  beforeAll(async () => {
    net = await createNetwork({ name: 'skdns', hosts: 5, subnet: SUBNET });
    pki = tempDir();
    const otherPki = tempDir();
    dnsDir = tempDir();
    const ok = async (args: string[]) => {
      const r = await runCli(args);
      if (r.code !== 0) throw new Error(`skein ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    };
    await ok(['pki', 'init', '--dir', pki, '--trust-domain', TD]);
    await ok(['pki', 'issue', '--dir', pki, '--name', 'ops', '--kind', 'client']);
    await ok(['pki', 'issue', '--dir', pki, '--name', 'node-a', '--kind', 'agent', '--host', host(1).address]);
    // node-b's certificate names its DNS name only: dialled at its address, only the pin holds.
    await ok(['pki', 'issue', '--dir', pki, '--name', 'node-b', '--kind', 'agent', '--host', 'node-b.fleet.test']);
    await ok(['pki', 'issue', '--dir', pki, '--name', 'node-c', '--kind', 'agent', '--host', host(3).address]);
    await ok(['pki', 'issue', '--dir', pki, '--name', 'mallory', '--kind', 'agent', '--host', host(4).address]);
    // Another CA of the same trust domain name: only the chain tells it apart.
    await ok(['pki', 'init', '--dir', otherPki, '--trust-domain', TD]);
    await ok(['pki', 'issue', '--dir', otherPki, '--name', 'node-x', '--kind', 'agent', '--host', host(4).address]);

    writeSrv(ALL_SRV);
    // node-c has no address yet: its SRV record leads nowhere until it gets one.
    writeHosts({ 'node-b': 2, 'imp-ca': 4, mallory: 4 });
    await startDns();

    const agent = (name: string, i: number, routines: Record<string, unknown>, over: Record<string, unknown> = {}, ca = pki, port = PORT) =>
      startNsAgent(host(i), {
        ...baseConfig({
          agent: { name, listen: `${host(i).address}:${port}`, stateDir: 'state' },
          tls: { cert: join(ca, `agent-${name}.crt`), key: join(ca, `agent-${name}.key`), ca: join(ca, 'ca.crt'), trustDomain: TD },
          workers: { poolSize: 1 },
          authorization: { allow: [{ identities: [`spiffe://${TD}/client/ops`], routines: ['*'] }] },
          ...over,
        }),
        // Its own routines, not merged with baseConfig's.
        routines,
      });
    const only = (r: Record<string, unknown>) => r;
    const started = await Promise.all([
      agent('node-b', 2, only({ mark: { file: ROUTINES_FIX }, pid: { file: ROUTINES_FIX } })),
      agent('node-c', 3, only({ mark: { file: ROUTINES_FIX }, echo: { file: EXAMPLES } })),
      agent('node-x', 4, only({ echo: { file: EXAMPLES } }), {}, otherPki, PORT),
    ]);
    agents.push(...started);
    // mallory listens on imp-ca's address too, on the SRV port + 1: a second SRV target below.
    agents.push(await agent('mallory', 4, only({ echo: { file: EXAMPLES } }), {}, pki, PORT + 1));
    a = await startNsAgent(host(1), {
      ...baseConfig({
        agent: { name: 'node-a', listen: `${host(1).address}:${PORT}`, stateDir: 'state' },
        tls: { cert: join(pki, 'agent-node-a.crt'), key: join(pki, 'agent-node-a.key'), ca: join(pki, 'ca.crt'), trustDomain: TD },
        workers: { poolSize: 1 },
        authorization: { allow: [{ identities: [`spiffe://${TD}/client/ops`], routines: ['*'] }] },
        admin: { listen: '127.0.0.1:9464' },
        discovery: {
          enabled: true,
          groups: [],
          static: [{ agent: 'static-1', endpoint: '10.233.0.99:7443', spiffe: `spiffe://${TD}/agent/static-1`, sha256: 'ab'.repeat(32), routines: ['mark'] }],
          dns: { names: [SRV], resolver: host(0).address, intervalMs: 500, keepStaleMs: KEEP_STALE_MS, identities: [`spiffe://${TD}/agent/node-*`] },
        },
      }),
      routines: { mark: { file: ROUTINES_FIX } },
    });
    agents.push(a);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(agents.map((p) => p.stop()));
    await dns?.stop();
    await net?.destroy();
    await stopAll();
  }, 30_000);

  it('a peer named by an SRV record is listed with source "dns", its routines and load read from it, next to a static peer', async () => {
    const [b] = await peersUntil((ps) => names(ps).join() === 'node-b', 'node-b from DNS');
    expect(b).toMatchObject({
      agent: 'node-b',
      spiffe: `spiffe://${TD}/agent/node-b`,
      endpoints: [`${host(2).address}:${PORT}`],
      routines: ['mark', 'pid'],
      load: 0,
      capacity: 1,
      source: 'dns',
      from: SRV,
    });
    expect(b!.tlsFingerprint).toMatch(/^[0-9a-f]{64}$/);
    const all = (await peersOfA()).peers;
    expect(all.find((p) => p.agent === 'static-1')).toMatchObject({ source: 'static' });
    const table = await host(1).run(BINARY, ['peers', '--peer', `${host(1).address}:${PORT}`, ...creds()]);
    expect(table.stdout).toMatch(/^AGENT +SPIFFE ID +ENDPOINTS +ROUTINES +LOAD +SOURCE +AGE +STATUS$/m);
    expect(table.stdout).toMatch(/^node-b .* mark,pid +0\/1 +dns +[\d.]+s +ok$/m);
    expect(table.stdout).toMatch(/^static-1 .* static +- +ok$/m);
    // Work reaches it: `skein dispatch --discover` through node-a pins the certificate the handshake proved.
    const r = await host(1).run(BINARY, ['dispatch', 'pid', '--discover', '--json', '--timeout', '5000', '--peer', `${host(1).address}:${PORT}`, ...creds()], { timeoutMs: 12_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(a.lines.some((l) => l.msg === 'peer discovered' && l.peer === 'node-b' && l.source === 'dns' && l.record === SRV)).toBe(true);
  }, 30_000);

  it('records that change while the agents run: peers appear and disappear with their SRV and A records', async () => {
    // An address record appears (addn-hosts, SIGHUP): node-c's SRV target now leads somewhere.
    writeHosts({ 'node-b': 2, 'node-c': 3, 'imp-ca': 4, mallory: 4 });
    await sighup();
    const both = await peersUntil((ps) => names(ps).join() === 'node-b,node-c', 'node-c to appear');
    // node-c's AAAA address (unreachable from node-a: not listed) does not hide its IPv4 one.
    expect(both.find((p) => p.agent === 'node-c')).toMatchObject({ endpoints: [`${host(3).address}:${PORT}`], routines: ['mark', 'echo'], source: 'dns' });
    // An SRV record disappears (dnsmasq restarted with another config): its peer goes.
    let from = a.lines.length;
    writeSrv(ALL_SRV.filter(([t]) => t !== 'node-b'));
    await restartDns();
    await peersUntil((ps) => names(ps).join() === 'node-c', 'node-b to disappear with its SRV record');
    await logAfter(from, (l) => l.msg === 'DNS peer dropped' && l.peer === 'node-b' && l.reason === 'dns-removed', 5000);
    writeSrv(ALL_SRV);
    await restartDns();
    await peersUntil((ps) => names(ps).join() === 'node-b,node-c', 'node-b to return with its SRV record');
    // An address record disappears: node-c goes; back with it.
    from = a.lines.length;
    writeHosts({ 'node-b': 2, 'imp-ca': 4, mallory: 4 });
    await sighup();
    await peersUntil((ps) => names(ps).join() === 'node-b', 'node-c to disappear with its A record');
    await logAfter(from, (l) => l.msg === 'DNS peer dropped' && l.peer === 'node-c' && l.reason === 'dns-removed', 5000);
    writeHosts({ 'node-b': 2, 'node-c': 3, 'imp-ca': 4, mallory: 4 });
    await sighup();
    await peersUntil((ps) => names(ps).join() === 'node-b,node-c', 'node-c to return');
  }, 60_000);

  it('records that lead to impostors are refused by their certificates and never listed', async () => {
    // imp-ca: the same trust domain name from another CA — the handshake fails on the chain.
    const foreign = await a.waitForLog((l) => l.msg === 'DNS record leads to an endpoint refused by its certificate; not used' && l.endpoint === `${host(4).address}:${PORT}`, 10_000);
    expect(String(foreign.reason)).toMatch(new RegExp(`^${host(4).address.replaceAll('.', '\\.')}:${PORT}: `));
    // mallory: a fleet certificate, but spiffe://fleet.test/agent/mallory is not allowed.
    const denied = await a.waitForLog((l) => l.msg === 'DNS record leads to an endpoint refused by its certificate; not used' && l.endpoint === `${host(4).address}:${PORT + 1}`, 10_000);
    expect(denied.reason).toBe(`${host(4).address}:${PORT + 1} presented spiffe://${TD}/agent/mallory, which discovery.dns.identities does not allow (spiffe://${TD}/agent/node-*)`);
    await sleep(1500);
    expect(names((await peersOfA()).peers.filter((p) => p.source === 'dns'))).toEqual(['node-b', 'node-c']);
    const metrics = await host(1).run('curl', ['-s', 'http://127.0.0.1:9464/metrics']);
    expect(metrics.stdout).toMatch(/^skein_dns_refused_total [1-9]\d*$/m);
    expect(metrics.stdout).toMatch(/^skein_dns_resolutions_total\{result="ok"\} [1-9]\d*$/m);
    expect([...everListed].filter((n) => n === 'node-x' || n === 'mallory')).toEqual([]);
  }, 40_000);

  it('the resolver failing: peers are kept for keepStaleMs and the log says so, then dropped; they return when it answers', async () => {
    await peersUntil((ps) => names(ps).join() === 'node-b,node-c', 'both peers before the outage');
    const stoppedAt = Date.now();
    const from = a.lines.length;
    await dns!.stop();
    const warned = await logAfter(from, (l) => l.msg === 'DNS resolution failed; keeping the last good answer', 5000);
    expect(warned).toMatchObject({ keepStaleMs: KEEP_STALE_MS, peers: ['node-b', 'node-c'] });
    // Still listed while the answer is younger than keepStaleMs.
    expect(names((await peersOfA()).peers.filter((p) => p.source === 'dns'))).toEqual(['node-b', 'node-c']);
    const stale = await host(1).run('curl', ['-s', 'http://127.0.0.1:9464/metrics']);
    expect(stale.stdout).toMatch(/^skein_dns_stale 1$/m);
    await peersUntil((ps) => ps.length === 0, 'the stale answer to be dropped', KEEP_STALE_MS + 8000);
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(KEEP_STALE_MS - 1000);
    await logAfter(from, (l) => l.msg === 'DNS resolution has failed for longer than discovery.dns.keepStaleMs: dropping the peers of its last answer', 1000);
    await startDns();
    await peersUntil((ps) => names(ps).join() === 'node-b,node-c', 'the peers to return');
    await logAfter(from, (l) => l.msg === 'DNS resolution answers again', 1000);
  }, 40_000);
});
