/**
 * The fleet bench's network: one segment (a bridge in its own "switch" namespace), a sender
 * namespace holding every simulated agent's address, and one namespace per real agent. Nothing
 * links to the root namespace, so no packet leaves the namespaces made here.
 *
 *   <tag>-sw    bridge br0 (multicast snooping off: floods multicast like a dumb switch)
 *   <tag>-sim   eth0 10.B.0.1/24 on the segment, plus every simulated agent's address as a /32
 *               on eth0 (10.B.32.1 …, up to 8,190 of them), route 224.0.0.0/4 dev eth0
 *   <tag>-<x>   one per real agent: eth0 10.B.0.(10+i)/24, route 224.0.0.0/4 dev eth0, and
 *               10.B.32.0/19 via 10.B.0.1 (the sender namespace)
 *
 * The simulated agents are one hop away, not on-link: a real agent's identity checks of
 * thousands of new peers would otherwise fill the ARP table, and on this kernel that table's
 * limit (net.ipv4.neigh.default.gc_thresh3, 1,024) counts the entries of every namespace, so a
 * 5,000-peer run would break the other namespaces on a shared machine. Each simulated agent
 * still sends from its own address (per-source limits see distinct sources); how many
 * handshakes a real agent makes at once is counted at the simulated endpoints instead.
 *
 * `tag` is `fl<pid>`: leftovers of a run that died (its PID gone) are deleted before a new one.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { killInsideNamespace, removeOrphanNamespaces } from '../../test/helpers/netns.ts';

export interface FleetNet {
  tag: string;
  /** "10.B": the first two octets of every address here. */
  prefix: string;
  simNs: string;
  /** Address of the sender namespace on the segment (the simulated agents' gateway). */
  simGateway: string;
  /** Simulated agent i's source address (0-based). */
  simAddress(i: number): string;
  hosts: Map<string, { ns: string; address: string }>;
  /** Starts `cmd` in namespace `ns`; the PID is the command's (`ip netns exec` execs it). */
  exec(ns: string, cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** rx packets and bytes of eth0 in `ns` (link-layer bytes, as the interface counts them). */
  rxCounters(ns: string): { packets: number; bytes: number };
  /**
   * The namespace's UDP counters (/proc/net/snmp, which is per namespace): datagrams delivered
   * to a socket, and those dropped because a socket's receive buffer was full (the agent fell
   * behind) or for other errors.
   */
  udpCounters(ns: string): { delivered: number; receiveBufferDrops: number; errors: number };
  destroy(): void;
}

export const MAX_SIM_ADDRESSES = 8190;
const IP_TIMEOUT_MS = 60_000;

function ip(args: string[], input?: string): string {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: IP_TIMEOUT_MS, input });
  if (r.status !== 0) throw new Error(`ip ${args.slice(0, 6).join(' ')}: ${(r.stderr || String(r.error)).trim()}`);
  return r.stdout;
}

/** Deletes the namespaces of earlier runs whose process is gone, after killing what they left inside. */
export function cleanupLeftovers(): string[] {
  return removeOrphanNamespaces(/^fl(\d+)-[a-z0-9]+$/);
}

/** Whether this process may make namespaces (root and iproute2). */
export function netnsProblem(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const v = spawnSync('ip', ['-V'], { timeout: IP_TIMEOUT_MS });
  if (v.status !== 0) return 'the "ip" command (iproute2) is missing: apt-get install iproute2';
  return undefined;
}

/**
 * Builds the segment with `simAddresses` simulated sources and one namespace per name in
 * `hosts`. Throws (having removed what it made) when a step fails.
 */
export function createFleetNet(hosts: string[], simAddresses: number): FleetNet {
  if (simAddresses < 1 || simAddresses > MAX_SIM_ADDRESSES) throw new Error(`simulated addresses must be 1..${MAX_SIM_ADDRESSES}, got ${simAddresses}`);
  cleanupLeftovers();
  const tag = `fl${process.pid}`;
  // A second octet of 240–249, picked per run: other benches and tests use 10.231/10.232.
  const prefix = `10.${240 + (process.pid % 10)}`;
  const made: string[] = [];
  const procs = new Set<ChildProcess>();
  const simNs = `${tag}-sim`;
  const simGateway = `${prefix}.0.1`;
  const simAddress = (i: number) => `${prefix}.${32 + Math.floor((i + 1) / 256)}.${(i + 1) % 256}`;
  const hostMap = new Map<string, { ns: string; address: string }>();

  const destroy = () => {
    for (const p of procs) {
      if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    procs.clear();
    for (const ns of made.reverse()) {
      killInsideNamespace(ns);
      spawnSync('ip', ['netns', 'delete', ns], { timeout: IP_TIMEOUT_MS });
    }
    made.length = 0;
  };

  const addHost = (ns: string, address: string, port: string) => {
    ip(['netns', 'add', ns]);
    made.push(ns);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    ip(['-n', `${tag}-sw`, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    ip(['-n', `${tag}-sw`, 'link', 'set', port, 'master', 'br0']);
    ip(['-n', `${tag}-sw`, 'link', 'set', port, 'up']);
    ip(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    ip(['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
  };

  try {
    ip(['netns', 'add', `${tag}-sw`]);
    made.push(`${tag}-sw`);
    ip(['-n', `${tag}-sw`, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    ip(['-n', `${tag}-sw`, 'link', 'set', 'br0', 'up']);
    addHost(simNs, simGateway, 'psim');
    // Thousands of addresses in one `ip -batch` (one process, not one per address).
    const batch = Array.from({ length: simAddresses }, (_, i) => `addr add ${simAddress(i)}/32 dev eth0`).join('\n');
    ip(['-n', simNs, '-batch', '-'], `${batch}\n`);
    hosts.forEach((name, i) => {
      const ns = `${tag}-${name}`;
      const address = `${prefix}.0.${10 + i}`;
      addHost(ns, address, `p${name}`);
      ip(['-n', ns, 'route', 'add', `${prefix}.32.0/19`, 'via', simGateway, 'dev', 'eth0']);
      hostMap.set(name, { ns, address });
    });
  } catch (err) {
    destroy();
    throw err;
  }

  return {
    tag,
    prefix,
    simNs,
    simGateway,
    simAddress,
    hosts: hostMap,
    exec(ns, cmd, args, opts = {}) {
      const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], opts);
      procs.add(child);
      child.once('exit', () => procs.delete(child));
      return child;
    },
    rxCounters(ns) {
      const info = JSON.parse(ip(['-n', ns, '-s', '-j', 'link', 'show', 'eth0'])) as Array<{ stats64?: { rx?: { bytes: number; packets: number } } }>;
      const rx = info[0]?.stats64?.rx;
      if (!rx) throw new Error(`no counters for eth0 in ${ns}`);
      return { packets: rx.packets, bytes: rx.bytes };
    },
    udpCounters(ns) {
      const r = spawnSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp'], { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
      const [names, values] = (r.stdout ?? '').split('\n').filter((l) => l.startsWith('Udp:'));
      if (!names || !values) throw new Error(`no UDP counters in ${ns}: ${r.stderr}`);
      const row = Object.fromEntries(names.split(/\s+/).map((k, i) => [k, Number(values.split(/\s+/)[i])]));
      return { delivered: row.InDatagrams ?? NaN, receiveBufferDrops: row.RcvbufErrors ?? NaN, errors: row.InErrors ?? NaN };
    },
    destroy,
  };
}
