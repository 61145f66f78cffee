/**
 * agent/discovery/transport.ts on loopback in the root namespace. All traffic goes to
 * 127.0.0.1 (IPv4, TTL 1) or to the loopback device (IPv6); random ports keep concurrent
 * suites that use the default group apart, and every assertion matches a per-run token.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { SkeinError } from '../../common/errors/index.ts';
import { createMulticastTransport, type DatagramSource, type MulticastTransport } from '../../agent/discovery/transport.ts';

const GROUP4 = '239.255.77.77';
const GROUP6 = 'ff15::7777';
const TOKEN = `tok-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const randomPort = () => 40_000 + Math.floor(Math.random() * 20_000);

const opened: MulticastTransport[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((t) => t.close()));
});

interface Inbox {
  items: Array<{ data: string; from: DatagramSource }>;
  mine(): string[];
}
function inbox(): Inbox & { onDatagram: (d: Buffer, f: DatagramSource) => void } {
  const items: Inbox['items'] = [];
  return {
    items,
    mine: () => items.map((i) => i.data).filter((d) => d.startsWith(TOKEN)),
    onDatagram: (d, from) => items.push({ data: d.toString(), from }),
  };
}

async function open(opts: Parameters<typeof createMulticastTransport>[0]): Promise<MulticastTransport> {
  const t = await createMulticastTransport(opts);
  opened.push(t);
  return t;
}

/** Polls until `check` holds, at most `ms` (bounded). */
async function waitFor(check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

/** UDP sockets bound to `port` in this namespace (/proc/net/udp{,6}), to prove nothing leaked. */
function udpSocketsOn(port: number): number {
  const suffix = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return ['/proc/net/udp', '/proc/net/udp6'].flatMap((f) => readFileSync(f, 'utf8').split('\n').slice(1)).filter((l) => (l.trim().split(/\s+/)[1] ?? '').endsWith(suffix)).length;
}

describe('multicast transport on loopback (IPv4, 127.0.0.1)', () => {
  it('two transports on one group and port exchange datagrams both ways', async () => {
    const port = randomPort();
    const a = inbox();
    const b = inbox();
    const ta = await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: a.onDatagram });
    const tb = await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: b.onDatagram });

    await ta.send(Buffer.from(`${TOKEN} from-a`));
    await waitFor(() => b.mine().includes(`${TOKEN} from-a`));
    await tb.send(Buffer.from(`${TOKEN} from-b`));
    await waitFor(() => a.mine().includes(`${TOKEN} from-b`));

    const fromA = b.items.find((i) => i.data === `${TOKEN} from-a`)!.from;
    expect(fromA).toEqual({ address: '127.0.0.1', port: ta.addresses()[0]!.send.port, family: 'IPv4', own: false });
    // Loopback on: each also hears itself, marked own (the layer above exempts it from the
    // per-source limits and ignores its own agent id).
    await waitFor(() => a.mine().includes(`${TOKEN} from-a`) && b.mine().includes(`${TOKEN} from-b`));
    expect(a.items.find((i) => i.data === `${TOKEN} from-a`)!.from).toEqual({ address: '127.0.0.1', port: ta.addresses()[0]!.send.port, family: 'IPv4', own: true });
    expect(ta.addresses()[0]).toMatchObject({ group: GROUP4, port, family: 'IPv4', interface: '127.0.0.1', receive: { address: GROUP4, port } });
    expect(ta.stats()).toMatchObject({ sent: 1, dropped: 0 });
  });

  it("skipOwn drops our own datagrams but keeps the other transport's", async () => {
    const port = randomPort();
    const a = inbox();
    const b = inbox();
    const ta = await open({ groups: [{ address: GROUP4, port }], interface: 'lo', skipOwn: true, onDatagram: a.onDatagram });
    const tb = await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: b.onDatagram });
    expect(ta.addresses()[0]!.interface).toBe('127.0.0.1'); // 'lo' mapped to its IPv4 address
    await ta.send(Buffer.from(`${TOKEN} own`));
    await tb.send(Buffer.from(`${TOKEN} other`));
    await waitFor(() => a.mine().includes(`${TOKEN} other`) && b.mine().includes(`${TOKEN} own`));
    await settle();
    expect(a.mine()).toEqual([`${TOKEN} other`]);
    expect(ta.stats().droppedOwn).toBe(1);
  });

  it('loopback: false cannot isolate transports on the loopback device (lo itself delivers back)', async () => {
    // IP_MULTICAST_LOOP only governs the extra copy for local sockets when a datagram leaves by a
    // real interface; a datagram sent on lo is received from lo like any other. The netns suite
    // shows loopback: false working on a veth.
    const port = randomPort();
    const b = inbox();
    const ta = await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', loopback: false, onDatagram: () => {} });
    await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: b.onDatagram });
    await ta.send(Buffer.from(`${TOKEN} via-lo`));
    await waitFor(() => b.mine().includes(`${TOKEN} via-lo`));
  });

  it('refuses to send more than maxDatagram (nothing is sent) and sends exactly maxDatagram', async () => {
    const port = randomPort();
    const b = inbox();
    const ta = await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: () => {} });
    await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: b.onDatagram });
    expect(ta.maxDatagram).toBe(1200);
    const big = Buffer.alloc(1201, 'x');
    big.write(TOKEN);
    await expect(ta.send(big)).rejects.toMatchObject({ code: 'SKEIN_ERR_MULTICAST_SEND', details: { bytes: 1201, maxDatagram: 1200 } });
    await expect(ta.send(big)).rejects.toThrow(/1201 bytes exceeds maxDatagram \(1200\)/);
    const exact = Buffer.alloc(1200, 'y');
    exact.write(TOKEN);
    await ta.send(exact);
    await waitFor(() => b.mine().length === 1);
    await settle();
    expect(b.items.filter((i) => i.data.startsWith(TOKEN)).map((i) => i.data.length)).toEqual([1200]);
    expect(ta.stats()).toMatchObject({ sent: 1, sendErrors: 0 });
  });

  it('drops and counts received datagrams over maxDatagram before the callback', async () => {
    const port = randomPort();
    const small = inbox();
    const big = inbox();
    const sender = await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: () => {} });
    const tSmall = await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', maxDatagram: 100, onDatagram: small.onDatagram });
    await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: big.onDatagram });

    const oversize = Buffer.alloc(500, 'z');
    oversize.write(TOKEN);
    await sender.send(oversize);
    await sender.send(Buffer.from(`${TOKEN} fits`));
    await waitFor(() => big.mine().length === 2 && small.mine().length === 1);
    await settle();
    expect(small.mine()).toEqual([`${TOKEN} fits`]);
    expect(tSmall.dropped()).toBe(1);
    expect(tSmall.stats()).toMatchObject({ dropped: 1, received: 1 });
  });

  it('close is idempotent; send after close is refused; the port is released', async () => {
    const port = randomPort();
    const t = await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: () => {} });
    expect(udpSocketsOn(port)).toBe(1);
    const first = t.close();
    const second = t.close();
    await Promise.all([first, second, t.close()]);
    expect(t.closed).toBe(true);
    await t.close();
    await expect(t.send(Buffer.from('late'))).rejects.toMatchObject({ code: 'SKEIN_ERR_MULTICAST_SEND', message: 'transport is closed' });
    expect(udpSocketsOn(port)).toBe(0);
  });

  it('an exception thrown by onDatagram goes to onError and the transport keeps working', async () => {
    const port = randomPort();
    const errors: Error[] = [];
    const seen: string[] = [];
    const sender = await open({ groups: [{ address: GROUP4, port }], interface: '127.0.0.1', onDatagram: () => {} });
    const t = await open({
      groups: [{ address: GROUP4, port }],
      interface: '127.0.0.1',
      onDatagram: (d) => {
        const s = d.toString();
        if (!s.startsWith(TOKEN)) return;
        seen.push(s);
        if (s.endsWith('boom')) throw new Error('callback failed');
      },
      onError: (err) => errors.push(err),
    });
    await sender.send(Buffer.from(`${TOKEN} boom`));
    await sender.send(Buffer.from(`${TOKEN} after`));
    await waitFor(() => seen.length === 2);
    expect(seen).toEqual([`${TOKEN} boom`, `${TOKEN} after`]);
    expect(errors.map((e) => e.message)).toEqual(['callback failed']);
    expect(t.stats().errors).toBe(1);
  });

  it('rejects groups that are not multicast and bad options before opening anything', async () => {
    const onDatagram = () => {};
    await expect(createMulticastTransport({ groups: [{ address: '127.0.0.1', port: 47777 }], onDatagram })).rejects.toThrow(/not an IPv4 \(224.0.0.0\/4\) or IPv6 \(ff00::\/8\) multicast group/);
    await expect(createMulticastTransport({ groups: [{ address: 'fd00::1', port: 47777 }], onDatagram })).rejects.toMatchObject({ code: 'SKEIN_ERR_CONFIG', details: { option: 'groups' } });
    await expect(createMulticastTransport({ groups: [], onDatagram })).rejects.toThrow(/at least one/);
    await expect(createMulticastTransport({ groups: [{ address: GROUP4, port: 0 }], onDatagram })).rejects.toThrow(/port/);
    await expect(createMulticastTransport({ groups: [{ address: GROUP4, port: 1 }], maxDatagram: 70_000, onDatagram })).rejects.toMatchObject({
      code: 'SKEIN_ERR_CONFIG',
      details: { option: 'maxDatagram' },
    });
    await expect(createMulticastTransport({ groups: [{ address: GROUP4, port: randomPort() }], interface: 'no-such-if0', onDatagram })).rejects.toThrow(/interface "no-such-if0" has no IPv4 address/);
    await expect(createMulticastTransport({ groups: [{ address: GROUP4, port: randomPort() }], interface: 'no-such-if0', onDatagram })).rejects.toMatchObject({
      code: 'SKEIN_ERR_MULTICAST_UNAVAILABLE',
      details: { group: GROUP4, step: 'interface' },
    });
  });
});

describe('multicast transport on loopback (IPv6)', () => {
  it('an IPv6 group on the loopback device either works or rejects with the group and the reason', async () => {
    const port = randomPort();
    const a = inbox();
    const b = inbox();
    let outcome: 'works' | SkeinError;
    try {
      await open({ groups: [{ address: GROUP6, port }], interface: 'lo', onDatagram: a.onDatagram });
      outcome = 'works';
    } catch (err) {
      outcome = err as SkeinError;
    }
    if (outcome === 'works') {
      const tb = await open({ groups: [{ address: GROUP6, port }], interface: 'lo', onDatagram: b.onDatagram });
      await tb.send(Buffer.from(`${TOKEN} v6`));
      await waitFor(() => a.mine().includes(`${TOKEN} v6`));
      console.info('IPv6 multicast on loopback: works');
    } else {
      // On Linux the loopback device has no MULTICAST flag, so there is no ff00::/8 route on it:
      // joining succeeds but the route lookup (connect) fails, before any datagram is sent.
      expect(outcome).toBeInstanceOf(SkeinError);
      expect(outcome.code).toBe('SKEIN_ERR_MULTICAST_UNAVAILABLE');
      expect(outcome.message).toContain(`[${GROUP6}]:${port}`);
      expect(outcome.message).toMatch(/on interface lo \((route|join|bind|socket) failed\): \S+/);
      expect(outcome.details).toMatchObject({ group: GROUP6, port, family: 'IPv6', iface: 'lo' });
      expect(String(outcome.details.reason).length).toBeGreaterThan(5);
      console.info(`IPv6 multicast on loopback: rejected: ${outcome.message}`);
    }
  });

  it('a mixed IPv4 + IPv6 transport fails as a whole when one group is unavailable and leaks no socket; IPv4 alone then works', async () => {
    const port = randomPort();
    const groups = [
      { address: GROUP4, port },
      { address: GROUP6, port },
    ];
    let v6Works = true;
    try {
      await open({ groups, interface: '127.0.0.1', onDatagram: () => {} });
    } catch (err) {
      v6Works = false;
      expect(err).toBeInstanceOf(SkeinError);
      expect((err as SkeinError).code).toBe('SKEIN_ERR_MULTICAST_UNAVAILABLE');
      expect((err as SkeinError).details.group).toBe(GROUP6);
      // '127.0.0.1' was mapped to the interface holding it for the IPv6 group.
      expect((err as SkeinError).details.iface).toBe('lo');
      expect(udpSocketsOn(port)).toBe(0);
    }
    if (!v6Works) {
      // What a caller does: fall back to the IPv4 groups (and warn).
      const b = inbox();
      const t = await open({ groups: [groups[0]!], interface: '127.0.0.1', onDatagram: b.onDatagram });
      await t.send(Buffer.from(`${TOKEN} fallback`));
      await waitFor(() => b.mine().includes(`${TOKEN} fallback`));
    }
  });
});
