/**
 * Multicast datagram transport for discovery. It only moves bytes: decoding, signature
 * checks, replay windows and rate limiting belong to the layers above.
 *
 * Per group, two node:dgram sockets (the same calls behave alike under Node 20 and Bun):
 *  - a receive socket bound to the group address and port with `reuseAddr` (so several agents
 *    on one host share the port; binding the group address rather than the wildcard keeps
 *    datagrams for other groups on the same port out), joined with `addMembership(group, iface)`;
 *  - a send socket bound to an ephemeral port (on the interface address for IPv4), with
 *    `setMulticastInterface`, `setMulticastTTL` (default 1: never routed off the link) and
 *    `setMulticastLoopback` (default on, so agents on one host see each other), then
 *    `connect()`ed to the group. `connect` performs the route lookup without sending a byte,
 *    so a group the host cannot reach (IPv6 on the loopback device, IPv4 without a route)
 *    fails at creation with SKEIN_ERR_MULTICAST_UNAVAILABLE, never later.
 *
 * `loopback: false` only matters on a real interface: a datagram sent on the loopback device
 * comes back in through it whatever the flag says.
 *
 * Datagrams larger than `maxDatagram` are refused by `send()` and dropped (and counted) on
 * receipt before `onDatagram` runs; `onOversize` hears of each one, so a receiver can count
 * it under its own reasons without reading it. Socket errors and exceptions thrown by
 * `onDatagram` go to `onError`; nothing here can crash the process after creation.
 *
 * Every failure is a SkeinError from the errors table: SKEIN_ERR_CONFIG for options that can
 * never work (not a multicast group, a port or TTL out of range), SKEIN_ERR_MULTICAST_UNAVAILABLE
 * for a group this host cannot join or reach (details: group, port, family, iface, step,
 * reason), SKEIN_ERR_MULTICAST_SEND from `send()`.
 *
 * `interface` names where multicast goes: an IPv4 address (`127.0.0.1`, a veth address), an
 * interface name (`lo`, `eth0`) or an IPv6 scope (`%eth0`, `::%eth0`). It is translated per
 * family: for IPv6 groups an IPv4 address is mapped to the name of the interface holding it,
 * for IPv4 groups a name is mapped to its first IPv4 address. A group may override it. When it
 * is omitted the kernel picks the interface from the routing table (on a multi-homed host pass
 * it explicitly).
 *
 * @example
 *   const t = await createMulticastTransport({
 *     groups: [{ address: '239.255.77.77', port: 47777 }],
 *     interface: '127.0.0.1',
 *     onDatagram: (data, from) => handle(data, from),
 *   });
 *   await t.send(advert);
 *   await t.close();
 */
import dgram from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { SkeinError, toSkeinError } from '../../common/errors/index.ts';

export type MulticastFamily = 'IPv4' | 'IPv6';

export interface MulticastGroup {
  /** IPv4 (224.0.0.0/4, e.g. 239.255.77.77) or IPv6 (ff00::/8, e.g. ff15::7777) group. */
  address: string;
  port: number;
  /** Overrides the transport-wide `interface` for this group. */
  interface?: string;
}

export interface DatagramSource {
  address: string;
  port: number;
  family: MulticastFamily;
  /** Sent from this transport's own send socket (its address and port): our own, looped back. */
  own: boolean;
}

export interface MulticastTransportOptions {
  groups: MulticastGroup[];
  /** IPv4 address, interface name or IPv6 scope (`%name`); see the module comment. */
  interface?: string;
  /** Multicast TTL / hop limit. Default 1: the datagram never leaves the link. */
  ttl?: number;
  /**
   * IP_MULTICAST_LOOP: also deliver what we send to sockets on this host (including ours).
   * Default true. Has no effect on the loopback device, which always delivers back.
   */
  loopback?: boolean;
  /** Largest datagram sent or accepted, in bytes. Default 1200. */
  maxDatagram?: number;
  /** Drop datagrams that came from this transport's own send sockets. Default false. */
  skipOwn?: boolean;
  onDatagram: (data: Buffer, from: DatagramSource) => void;
  /** Told of each received datagram dropped for exceeding `maxDatagram` (not to be decoded). */
  onOversize?: (data: Buffer, from: DatagramSource) => void;
  /** Socket errors after creation and exceptions thrown by `onDatagram`. Default: ignored (counted). */
  onError?: (err: Error) => void;
}

export interface GroupBinding {
  group: string;
  port: number;
  family: MulticastFamily;
  /** What was passed to addMembership / setMulticastInterface (undefined: kernel's choice). */
  interface: string | undefined;
  /** Where the receive socket is bound. */
  receive: { address: string; port: number };
  /** Where the send socket is bound (its source port is what receivers see). */
  send: { address: string; port: number };
}

export interface TransportStats {
  received: number;
  dropped: number;
  droppedOwn: number;
  sent: number;
  sendErrors: number;
  errors: number;
}

export interface MulticastTransport {
  /** Sends `data` to every group. Rejects (sending nothing) when it exceeds `maxDatagram`. */
  send(data: Uint8Array): Promise<void>;
  /** Closes every socket. Safe to call more than once. */
  close(): Promise<void>;
  addresses(): GroupBinding[];
  /** Received datagrams dropped because they exceeded `maxDatagram`. */
  dropped(): number;
  stats(): TransportStats;
  readonly maxDatagram: number;
  readonly closed: boolean;
}

/** The step of opening a group that failed (details.step of SKEIN_ERR_MULTICAST_UNAVAILABLE). */
export type MulticastStep = 'socket' | 'bind' | 'join' | 'interface' | 'route';

/** SKEIN_ERR_MULTICAST_UNAVAILABLE: a group the host cannot join or reach; `createMulticastTransport` rejects with it. */
function unavailable(group: string, port: number, family: MulticastFamily, iface: string | undefined, step: MulticastStep, reason: string, cause?: unknown): SkeinError {
  return new SkeinError(
    'SKEIN_ERR_MULTICAST_UNAVAILABLE',
    `multicast group ${family === 'IPv6' ? `[${group}]` : group}:${port} is unavailable${iface === undefined ? '' : ` on interface ${iface}`} (${step} failed): ${reason}`,
    { group, port, family, iface, step, reason },
    cause === undefined ? undefined : { cause },
  );
}

/** SKEIN_ERR_CONFIG for an option that can never work, naming it. */
const badOption = (option: string, message: string) => new SkeinError('SKEIN_ERR_CONFIG', message, { option });

const DEFAULT_MAX_DATAGRAM = 1200;
/** IPv4 UDP payload limit (65535 − 20 − 8); larger values could never be sent. */
const MAX_UDP_PAYLOAD = 65507;

export function multicastFamily(address: string): MulticastFamily | undefined {
  if (isIPv4(address)) {
    const first = Number(address.split('.')[0]);
    return first >= 224 && first <= 239 ? 'IPv4' : undefined;
  }
  if (isIPv6(address)) return /^ff[0-9a-f]{2}:/i.test(address) ? 'IPv6' : undefined;
  return undefined;
}

/** Interface name holding this address (IPv4 or IPv6 without scope), if any. */
function interfaceNameOf(address: string): string | undefined {
  for (const [name, list] of Object.entries(networkInterfaces())) {
    if (list?.some((a) => a.address === address)) return name;
  }
  return undefined;
}

function firstIPv4Of(name: string): string | undefined {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address;
}

function isLoopbackName(name: string): boolean {
  const list = networkInterfaces()[name];
  return list ? list.some((a) => a.internal) : name === 'lo';
}

/** Translates the user's `interface` into what node:dgram wants for this family. */
function resolveInterface(spec: string | undefined, family: MulticastFamily, group: string, port: number): { dgram: string | undefined; name: string | undefined } {
  if (spec === undefined || spec === '') return { dgram: undefined, name: undefined };
  if (family === 'IPv4') {
    if (isIPv4(spec)) return { dgram: spec, name: interfaceNameOf(spec) };
    const name = spec.replace(/^(::)?%/, '');
    const v4 = firstIPv4Of(name);
    if (!v4) {
      throw unavailable(group, port, family, spec, 'interface', `interface "${name}" has no IPv4 address`);
    }
    return { dgram: v4, name };
  }
  let name: string | undefined;
  if (isIPv4(spec)) {
    name = interfaceNameOf(spec);
    if (!name) {
      throw unavailable(group, port, family, spec, 'interface', `no local interface holds ${spec}`);
    }
  } else if (spec.includes('%')) {
    name = spec.slice(spec.indexOf('%') + 1);
  } else if (isIPv6(spec)) {
    name = interfaceNameOf(spec);
    if (!name) {
      throw unavailable(group, port, family, spec, 'interface', `no local interface holds ${spec}`);
    }
  } else {
    name = spec;
  }
  if (!name) throw unavailable(group, port, family, spec, 'interface', 'empty interface scope');
  return { dgram: `::%${name}`, name };
}

const stripScope = (address: string) => {
  const i = address.indexOf('%');
  return i < 0 ? address : address.slice(0, i);
};

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

function bindSocket(sock: dgram.Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    sock.once('error', onError);
    sock.bind({ address, port }, () => {
      sock.off('error', onError);
      resolve();
    });
  });
}

function connectSocket(sock: dgram.Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    sock.once('error', onError);
    try {
      sock.connect(port, address, (err?: Error) => {
        sock.off('error', onError);
        if (err) reject(err);
        else resolve();
      });
    } catch (err) {
      sock.off('error', onError);
      reject(err);
    }
  });
}

function closeSocket(sock: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      sock.close(() => resolve());
    } catch {
      resolve(); // already closed or never bound
    }
  });
}

interface OpenGroup {
  binding: GroupBinding;
  recv: dgram.Socket;
  send: dgram.Socket;
  /** Source addresses our own datagrams for this group carry (for skipOwn). */
  ownSources: Set<string>;
}

export async function createMulticastTransport(opts: MulticastTransportOptions): Promise<MulticastTransport> {
  const maxDatagram = opts.maxDatagram ?? DEFAULT_MAX_DATAGRAM;
  const ttl = opts.ttl ?? 1;
  const loopback = opts.loopback ?? true;
  if (!Number.isInteger(maxDatagram) || maxDatagram < 1 || maxDatagram > MAX_UDP_PAYLOAD) {
    throw badOption('maxDatagram', `maxDatagram must be an integer in 1..${MAX_UDP_PAYLOAD}, got ${maxDatagram}`);
  }
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 255) throw badOption('ttl', `ttl must be an integer in 0..255, got ${ttl}`);
  if (!Array.isArray(opts.groups) || opts.groups.length === 0) throw badOption('groups', 'groups must name at least one multicast group');
  if (typeof opts.onDatagram !== 'function') throw badOption('onDatagram', 'onDatagram must be a function');

  const stats: TransportStats = { received: 0, dropped: 0, droppedOwn: 0, sent: 0, sendErrors: 0, errors: 0 };
  const reportError = (err: unknown) => {
    stats.errors++;
    if (!opts.onError) return;
    try {
      opts.onError(err instanceof Error ? err : toSkeinError(err));
    } catch {
      // An onError that throws must not take the socket (or the process) down with it.
    }
  };
  const open: OpenGroup[] = [];
  let closed = false;

  const openGroup = async (g: MulticastGroup): Promise<void> => {
    const family = multicastFamily(g.address);
    if (!family) throw badOption('groups', `"${g.address}" is not an IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) multicast group`);
    if (!Number.isInteger(g.port) || g.port < 1 || g.port > 65535) {
      throw badOption('groups', `group ${g.address}: port must be an integer in 1..65535, got ${g.port}`);
    }
    const spec = g.interface ?? opts.interface;
    const iface = resolveInterface(spec, family, g.address, g.port);
    const type = family === 'IPv4' ? 'udp4' : 'udp6';
    const fail = (step: MulticastStep, err: unknown, hint = '') => unavailable(g.address, g.port, family, iface.name ?? spec, step, describe(err) + hint, err);

    let recv: dgram.Socket;
    let send: dgram.Socket;
    try {
      recv = dgram.createSocket({ type, reuseAddr: true });
    } catch (err) {
      throw fail('socket', err);
    }
    try {
      // No reuseAddr here: with it Linux may hand two senders the same ephemeral port.
      send = dgram.createSocket({ type });
    } catch (err) {
      await closeSocket(recv);
      throw fail('socket', err);
    }
    const entry: OpenGroup = {
      binding: {
        group: g.address,
        port: g.port,
        family,
        interface: iface.dgram,
        receive: { address: '', port: 0 },
        send: { address: '', port: 0 },
      },
      recv,
      send,
      ownSources: new Set(),
    };
    open.push(entry); // registered first so a failure below still closes both sockets
    // A listener from the start: an 'error' event without one would crash the process. While
    // the group is being opened, the step that failed rejects instead.
    let opened = false;
    const onSocketError = (err: Error) => {
      if (opened) reportError(err);
    };
    recv.on('error', onSocketError);
    send.on('error', onSocketError);

    // Bind to the group address (filters other groups on the port); the wildcard is the fallback
    // for stacks that refuse it.
    try {
      await bindSocket(recv, g.address, g.port);
    } catch (first) {
      try {
        await closeSocket(recv);
        recv = dgram.createSocket({ type, reuseAddr: true });
        recv.on('error', onSocketError);
        entry.recv = recv;
        await bindSocket(recv, family === 'IPv4' ? '0.0.0.0' : '::', g.port);
      } catch (err) {
        throw fail('bind', err, ` (binding the group address first failed too: ${describe(first)})`);
      }
    }
    try {
      recv.addMembership(g.address, iface.dgram);
    } catch (err) {
      throw fail('join', err);
    }

    try {
      await bindSocket(send, family === 'IPv4' ? (iface.dgram ?? '0.0.0.0') : '::', 0);
      if (iface.dgram !== undefined) send.setMulticastInterface(iface.dgram);
      send.setMulticastTTL(ttl);
      send.setMulticastLoopback(loopback);
    } catch (err) {
      throw fail('interface', err);
    }
    try {
      await connectSocket(send, g.address, g.port);
    } catch (err) {
      const hint =
        family === 'IPv6' && iface.name !== undefined && isLoopbackName(iface.name)
          ? ` (no IPv6 multicast route via ${iface.name}: the loopback device has no MULTICAST flag, so ff00::/8 is not routed on it; use IPv4 on loopback or a real interface)`
          : iface.dgram === undefined
            ? ' (no route to the group: pass an interface, or add a multicast route such as 224.0.0.0/4 for IPv4)'
            : ' (no multicast route to the group via this interface)';
      throw fail('route', err, hint);
    }

    const r = recv.address();
    const s = send.address();
    entry.binding.receive = { address: r.address, port: r.port };
    entry.binding.send = { address: s.address, port: s.port };
    // After connect() the kernel has picked the source address; before, bound to the wildcard,
    // any address of the interface may be used. Keys carry no IPv6 %scope (rinfo does).
    const sources =
      s.address !== '0.0.0.0' && s.address !== '::'
        ? [s.address]
        : (iface.name ? (networkInterfaces()[iface.name] ?? []) : Object.values(networkInterfaces()).flat()).filter((a) => a !== undefined && a.family === family).map((a) => a!.address);
    for (const a of sources) entry.ownSources.add(`${stripScope(a)}|${s.port}`);

    const own = entry.ownSources;
    recv.on('message', (msg, rinfo) => {
      if (closed) return;
      const isOwn = own.has(`${stripScope(rinfo.address)}|${rinfo.port}`);
      if (msg.length > maxDatagram) {
        stats.dropped++;
        try {
          opts.onOversize?.(msg, { address: rinfo.address, port: rinfo.port, family, own: isOwn });
        } catch (err) {
          reportError(err);
        }
        return;
      }
      if (opts.skipOwn && isOwn) {
        stats.droppedOwn++;
        return;
      }
      stats.received++;
      try {
        opts.onDatagram(msg, { address: rinfo.address, port: rinfo.port, family, own: isOwn });
      } catch (err) {
        reportError(err);
      }
    });
    opened = true;
  };

  try {
    for (const g of opts.groups) await openGroup(g);
  } catch (err) {
    closed = true;
    await Promise.all(open.flatMap((e) => [closeSocket(e.recv), closeSocket(e.send)]));
    throw err;
  }

  let closing: Promise<void> | undefined;
  const sendTo = (e: OpenGroup, data: Uint8Array) =>
    new Promise<void>((resolve, reject) => {
      try {
        e.send.send(data, (err) => (err ? reject(err) : resolve()));
      } catch (err) {
        reject(err);
      }
    });

  return {
    maxDatagram,
    get closed() {
      return closed;
    },
    async send(data: Uint8Array): Promise<void> {
      if (closed) throw new SkeinError('SKEIN_ERR_MULTICAST_SEND', 'transport is closed');
      if (!(data instanceof Uint8Array)) throw new SkeinError('SKEIN_ERR_MULTICAST_SEND', 'send() takes a Uint8Array or Buffer');
      if (data.byteLength > maxDatagram) {
        throw new SkeinError('SKEIN_ERR_MULTICAST_SEND', `datagram of ${data.byteLength} bytes exceeds maxDatagram (${maxDatagram}); nothing was sent`, { bytes: data.byteLength, maxDatagram });
      }
      const results = await Promise.allSettled(open.map((e) => sendTo(e, data)));
      const failures: string[] = [];
      results.forEach((res, i) => {
        const b = open[i]!.binding;
        if (res.status === 'fulfilled') stats.sent++;
        else {
          stats.sendErrors++;
          failures.push(`${b.family === 'IPv6' ? `[${b.group}]` : b.group}:${b.port}: ${describe(res.reason)}`);
        }
      });
      if (failures.length) throw new SkeinError('SKEIN_ERR_MULTICAST_SEND', `send failed for ${failures.length} of ${open.length} group(s): ${failures.join('; ')}`, { failures });
    },
    close(): Promise<void> {
      if (!closing) {
        closed = true;
        closing = Promise.all(open.flatMap((e) => [closeSocket(e.recv), closeSocket(e.send)])).then(() => undefined);
      }
      return closing;
    },
    addresses: () => open.map((e) => ({ ...e.binding, receive: { ...e.binding.receive }, send: { ...e.binding.send } })),
    dropped: () => stats.dropped,
    stats: () => ({ ...stats }),
  };
}
