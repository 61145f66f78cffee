/**
 * Multicast across three "hosts" (network namespaces on one bridge, see test/helpers/netns.ts).
 * The bridge sits in its own namespace and nothing links to the root namespace, so the traffic
 * here cannot leave the test's namespaces; the root namespace only listens (on loopback and on
 * the wildcard address) to prove nothing arrives there. Every child is stopped by PID and every
 * namespace deleted in afterAll.
 */
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createMulticastTransport, type MulticastTransport } from '../../agent/discovery/transport.ts';
import { createNetwork, listNamespaces, netnsNeed, type NetHost, type Network } from '../helpers/netns.ts';
import { file, requires } from '../helpers/requires.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const MCAST_FIXTURE = join(import.meta.dirname, 'fixtures/mcast.mjs');
const PEER_FIXTURE = join(import.meta.dirname, 'fixtures/transport-peer.ts');
const BUN = join(ROOT, 'node_modules/.bin/bun');
const GROUP4 = '239.255.77.77';
const GROUP6 = 'ff15::7777';
const TOKEN = `nt-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const PORT = 40_000 + Math.floor(Math.random() * 20_000);
const SUBNET = `10.231.${1 + Math.floor(Math.random() * 250)}.0/24`;
const GROUPS = [
  { address: GROUP4, port: PORT },
  { address: GROUP6, port: PORT },
];

interface Lines {
  proc: ChildProcess;
  events: Array<Record<string, unknown>>;
  stderr: string[];
}
function collect(proc: ChildProcess): Lines {
  const l: Lines = { proc, events: [], stderr: [] };
  let buf = '';
  proc.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        l.events.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        l.stderr.push(`stdout: ${line}`);
      }
    }
  });
  proc.stderr?.on('data', (d: Buffer) => l.stderr.push(d.toString()));
  return l;
}
async function waitFor(check: () => boolean, what: string, ms = 4000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const received = (l: Lines, data?: string) => l.events.filter((e) => e.event === 'recv' && typeof e.data === 'string' && e.data.startsWith(data ?? TOKEN));

requires(netnsNeed()).describe('multicast across network namespaces', () => {
  let net: Network;
  let rootBefore: string[];
  const rootHeard: string[] = [];
  const rootSockets: dgram.Socket[] = [];
  let rootTransport: MulticastTransport | undefined;

  beforeAll(async () => {
    rootBefore = listRootLinks();
    net = await createNetwork({ name: 'skdn', hosts: 3, subnet: SUBNET });
    // Root-namespace listeners: the group on loopback (the only interface we may join on here)
    // plus wildcard sockets on the port, which also see any group joined on this host.
    rootTransport = await createMulticastTransport({
      groups: [{ address: GROUP4, port: PORT }],
      interface: '127.0.0.1',
      onDatagram: (d) => rootHeard.push(d.toString()),
    });
    for (const [type, address] of [
      ['udp4', '0.0.0.0'],
      ['udp6', '::'],
    ] as const) {
      const s = dgram.createSocket({ type, reuseAddr: true, ipv6Only: type === 'udp6' });
      s.on('message', (m) => rootHeard.push(m.toString()));
      s.on('error', () => {});
      await new Promise<void>((res) => s.bind({ address, port: PORT }, res));
      rootSockets.push(s);
    }
  });

  afterAll(async () => {
    await rootTransport?.close();
    for (const s of rootSockets) s.close();
    await net?.destroy(); // stops every child by PID, then deletes the namespaces
  });

  function listRootLinks(): string[] {
    return Object.keys(networkInterfaces()).sort();
  }

  it('creates isolated hosts: own subnet, no default route, nothing added to the root namespace', async () => {
    expect(net.hosts.map((h) => h.address)).toEqual([1, 2, 3].map((i) => SUBNET.replace('0/24', String(i))));
    expect(net.hosts.every((h) => h.address6?.startsWith('fe80::'))).toBe(true);
    for (const h of net.hosts) {
      const routes = await h.run('ip', ['route', 'show']);
      expect(routes.stdout).toContain('224.0.0.0/4 dev eth0');
      expect((await h.run('ip', ['route', 'show', 'default'])).stdout.trim()).toBe('');
      expect((await h.run('ip', ['-6', 'route', 'show', 'default'])).stdout.trim()).toBe('');
    }
    expect(listRootLinks()).toEqual(rootBefore);
    expect(listNamespaces()).toEqual(expect.arrayContaining(net.namespaces()));
  });

  it('a datagram sent from host A reaches B and C (IPv4 and IPv6) and never the root namespace', async () => {
    const [a, b, c] = net.hosts as [NetHost, NetHost, NetHost];
    const cfg = (h: NetHost, role: string) => JSON.stringify({ role, groups: GROUPS, iface: { v4: h.address, v6: h.iface }, token: TOKEN, count: 3, intervalMs: 30, lifetimeMs: 6000 });
    const receivers = [b, c].map((h) => collect(h.exec('node', [MCAST_FIXTURE, cfg(h, 'recv')])));
    await waitFor(() => receivers.every((r) => r.events.some((e) => e.event === 'ready')), 'receivers ready').catch((err: Error) => {
      throw new Error(`${err.message}: ${receivers.map((r) => r.stderr.join('')).join(' | ')}`);
    });

    const sent = await a.run('node', [MCAST_FIXTURE, cfg(a, 'send')], { timeoutMs: 5000 });
    expect(sent.stderr).toBe('');
    expect(sent.code).toBe(0);

    for (const r of receivers) {
      await waitFor(() => [GROUP4, GROUP6].every((g) => received(r).some((e) => e.group === g)), 'IPv4 and IPv6 datagrams at B and C');
    }
    await new Promise((r) => setTimeout(r, 200));
    for (const r of receivers) {
      const got = received(r);
      expect(got.filter((e) => e.group === GROUP4).map((e) => e.from)).toEqual([a.address, a.address, a.address]);
      expect(got.filter((e) => e.group === GROUP6).map((e) => e.from)).toEqual(Array(3).fill(`${a.address6}%eth0`));
      r.proc.stdin?.end(); // receivers exit when stdin closes
    }
    await Promise.all(receivers.map((r) => new Promise((res) => (r.proc.exitCode !== null ? res(null) : r.proc.once('exit', res)))));
    expect(rootHeard.filter((d) => d.startsWith(TOKEN))).toEqual([]);
  });

  requires(file(BUN, { why: 'npm install puts it there' })).it('the real transport (run by Bun) in each namespace: A, B and C hear each other, not themselves', async () => {
    const peers = net.hosts.map((h) =>
      collect(
        h.exec(BUN, [PEER_FIXTURE, JSON.stringify({ groups: GROUPS, interface: h.address, lifetimeMs: 8000 })], {
          env: { ...process.env, CBOR_NATIVE_ACCELERATION_DISABLED: 'true' },
        }),
      ),
    );
    await waitFor(() => peers.every((p) => p.events.some((e) => e.event === 'ready' || e.event === 'error')), 'Bun peers ready', 6000).catch((err: Error) => {
      throw new Error(`${err.message}: ${peers.map((p) => p.stderr.join('')).join(' | ')}`);
    });
    expect(peers.flatMap((p) => p.events.filter((e) => e.event === 'error'))).toEqual([]);
    const ready = peers.map((p) => p.events.find((e) => e.event === 'ready') as { addresses: Array<{ family: string; interface: string }> });
    expect(ready[0]!.addresses.map((x) => [x.family, x.interface])).toEqual([
      ['IPv4', net.hosts[0]!.address],
      ['IPv6', '::%eth0'],
    ]);

    for (const [i, sender] of peers.entries()) {
      const msg = `${TOKEN} peer${i}`;
      sender.proc.stdin?.write(`send ${msg}\n`);
      const others = peers.filter((_, j) => j !== i);
      await waitFor(() => others.every((o) => received(o, msg).length === 2), `peer${i}'s datagram at the other two (IPv4 + IPv6)`);
      for (const o of others) {
        const got = received(o, msg).map((e) => e.from as { address: string; family: string });
        expect(got.map((f) => f.family).sort()).toEqual(['IPv4', 'IPv6']);
        expect(got.find((f) => f.family === 'IPv4')!.address).toBe(net.hosts[i]!.address);
        expect(got.find((f) => f.family === 'IPv6')!.address).toBe(`${net.hosts[i]!.address6}%eth0`);
      }
    }
    await new Promise((r) => setTimeout(r, 200));
    peers.forEach((p, i) => {
      // skipOwn: its own two datagrams were dropped, the four from the others delivered.
      expect(received(p, `${TOKEN} peer${i}`)).toEqual([]);
      expect(received(p).length).toBe(4);
    });
    for (const p of peers) p.proc.stdin?.write('close\n');
    await waitFor(() => peers.every((p) => p.events.some((e) => e.event === 'closed')), 'peers closed');
    for (const p of peers) {
      const stats = (p.events.find((e) => e.event === 'closed') as { stats: Record<string, number> }).stats;
      expect(stats).toMatchObject({ sent: 2, received: 4, droppedOwn: 2, dropped: 0, errors: 0 });
    }
    expect(rootHeard.filter((d) => d.startsWith(TOKEN))).toEqual([]);
  });

  it("loopback: false on a real interface keeps a host's own receivers deaf to it", async () => {
    const [a, b] = net.hosts as [NetHost, NetHost];
    const token = `${TOKEN}-noloop`;
    const cfg = (h: NetHost, role: string, extra = {}) => JSON.stringify({ role, groups: [GROUPS[0]], iface: { v4: h.address }, token, count: 2, intervalMs: 30, lifetimeMs: 5000, ...extra });
    const recvA = collect(a.exec('node', [MCAST_FIXTURE, cfg(a, 'recv')]));
    const recvB = collect(b.exec('node', [MCAST_FIXTURE, cfg(b, 'recv')]));
    await waitFor(() => [recvA, recvB].every((r) => r.events.some((e) => e.event === 'ready')), 'receivers ready');
    const sent = await a.run('node', [MCAST_FIXTURE, cfg(a, 'send', { loopback: false })], { timeoutMs: 5000 });
    expect(sent.code).toBe(0);
    await waitFor(() => received(recvB, token).length === 2, 'datagrams at B');
    await new Promise((r) => setTimeout(r, 200));
    expect(received(recvA, token)).toEqual([]);
    recvA.proc.stdin?.end();
    recvB.proc.stdin?.end();
  });

  it('destroy() removes every namespace (and with them the bridge and veths)', async () => {
    const mine = net.namespaces();
    await net.destroy();
    await net.destroy(); // idempotent
    const left = listNamespaces();
    expect(mine.filter((ns) => left.includes(ns))).toEqual([]);
    expect(listRootLinks()).toEqual(rootBefore);
  });
});
