/**
 * Several "hosts" on one machine for end-to-end tests: Linux network namespaces joined by veth
 * pairs to a bridge. The bridge lives in its own "switch" namespace, so nothing is created in
 * (or linked to) the root namespace: there is no default route, no NAT and no path off the
 * machine — traffic between the hosts can only ever reach the other test namespaces.
 *
 *   <tag>-sw   bridge br0 (multicast snooping off: it floods multicast like a dumb switch),
 *              ports p0..pN-1, IPv6 off
 *   <tag>-hI   lo up, eth0 (veth peer of pI) with <subnet>.(I+1)/24, an IPv6 link-local
 *              address (DAD off so it is usable at once), route 224.0.0.0/4 dev eth0
 *
 * `<tag>` is `<name>-<pid>-<seq>`, so two runs (or two networks in one run) never collide.
 * `destroy()` stops every process started through `exec`/`run` by PID, then deletes the
 * namespaces (which deletes their veths and the bridge). An `exit` hook does the same for
 * networks a crashed test never destroyed, and `createNetwork` first removes leftovers with
 * the same name whose owning process is gone. Needs root; guard the tests with
 * `requires(netnsNeed())` (test/helpers/requires.ts: skipped outside CI, failed in CI).
 *
 * @example
 *   requires(netnsNeed()).describe('netns', () => {
 *     let net: Network;
 *     beforeAll(async () => { net = await createNetwork({ name: 'skdn', hosts: 3 }); });
 *     afterAll(async () => { await net?.destroy(); });
 *   });
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type { Need } from './requires.ts';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface NetHost {
  index: number;
  ns: string;
  /** Interface inside the namespace that is wired to the bridge. */
  iface: string;
  /** IPv4 address on `iface`. */
  address: string;
  /** IPv6 link-local address on `iface` (without scope), or undefined if IPv6 is off. */
  address6: string | undefined;
  /** Starts `cmd args` inside the namespace (`ip netns exec`). The PID is the command's. */
  exec(cmd: string, args?: string[], opts?: SpawnOptions): ChildProcess;
  /** Runs to completion (killed after `timeoutMs`, default 10 s) and collects its output. */
  run(cmd: string, args?: string[], opts?: { timeoutMs?: number; input?: string }): Promise<RunResult>;
}

export interface Network {
  tag: string;
  switchNs: string;
  bridge: string;
  subnet: string;
  hosts: NetHost[];
  /** Every namespace this network created (switch first). */
  namespaces(): string[];
  destroy(): Promise<void>;
}

export interface CreateNetworkOptions {
  /** Short prefix, letters/digits only, e.g. 'skdn'. */
  name: string;
  hosts: number;
  /**
   * The /24 the hosts live on, e.g. '10.231.7.0/24' (the default 10.231.0.0/24). Nothing links
   * the namespaces to the root namespace, so a publicly routed /24 also exists only inside
   * them: the URL-source tests use one, because routine code may only come from public
   * addresses.
   */
  subnet?: string;
}

const IP_TIMEOUT_MS = 10_000;
let seq = 0;
const live = new Set<{ namespaces: string[]; procs: Set<ChildProcess> }>();
let exitHookInstalled = false;

function ipSync(args: string[]): { ok: boolean; out: string; err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
  return { ok: r.status === 0, out: r.stdout ?? '', err: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

let cached: { ok: boolean; reason: string } | undefined;

/** Whether this process can create network namespaces (root, `ip`, `ip netns add`). Cached. */
export function canCreateNetwork(): { ok: boolean; reason: string } {
  if (cached) return cached;
  if (process.platform !== 'linux') return (cached = { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` });
  if (process.getuid?.() !== 0) return (cached = { ok: false, reason: 'network namespaces need root (CI runs as root)' });
  const v = spawnSync('ip', ['-V'], { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
  if (v.error || v.status !== 0) {
    return (cached = { ok: false, reason: `the "ip" command (iproute2) is not available: ${v.error?.message ?? v.stderr}`.trim() });
  }
  const probe = `skein-probe-${process.pid}`;
  const add = ipSync(['netns', 'add', probe]);
  if (!add.ok) return (cached = { ok: false, reason: `"ip netns add" failed: ${add.err.trim()}` });
  const del = ipSync(['netns', 'delete', probe]);
  if (!del.ok) return (cached = { ok: false, reason: `"ip netns delete" failed: ${del.err.trim()}` });
  return (cached = { ok: true, reason: 'root, iproute2 and ip netns available' });
}

/** canCreateNetwork() as a need of requires(). */
export function netnsNeed(): Need {
  const can = canCreateNetwork();
  return { what: 'network namespaces', ok: can.ok, debian: 'iproute2', ...(can.ok ? {} : { why: can.reason }) };
}

function ip(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), IP_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`ip ${args.join(' ')}: ${e.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`ip ${args.join(' ')} exited ${code}: ${err.trim()}`));
    });
  });
}

/** Namespace names currently present. */
export function listNamespaces(): string[] {
  const r = ipSync(['netns', 'list']);
  return r.out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes namespaces named `<name>-<pid>-<n>-…` whose owning process is gone (a run killed
 * with SIGKILL), after killing what that run left running inside them. Best effort.
 */
export function cleanupLeftovers(name: string): string[] {
  return removeOrphanNamespaces(new RegExp(`^${name}-(\\d+)-\\d+-(sw|h\\d+)$`));
}

/** SIGKILL to every process inside namespace `ns`, by PID (`ip netns pids`). */
export function killInsideNamespace(ns: string): void {
  for (const pid of ipSync(['netns', 'pids', ns]).out.split(/\s+/).filter(Boolean).map(Number)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/** Deletes the namespaces `re` matches (its first group: the PID of the run that made them) whose run is gone. */
export function removeOrphanNamespaces(re: RegExp): string[] {
  const removed: string[] = [];
  for (const ns of listNamespaces()) {
    const m = re.exec(ns);
    if (!m || alive(Number(m[1]))) continue;
    // Processes a crashed run left inside its own namespace (they keep it alive otherwise).
    killInsideNamespace(ns);
    if (ipSync(['netns', 'delete', ns]).ok) removed.push(ns);
  }
  return removed;
}

function parseSubnet(subnet: string): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.0\/24$/.exec(subnet);
  const o = m ? m.slice(1, 4).map(Number) : [];
  const [a] = o as [number, number, number];
  // Unicast only: not "this network" (0/8), loopback (127/8), multicast or class E (224+).
  const unicast = a !== 0 && a !== 127 && a < 224;
  if (!m || o.some((x) => x > 255) || !unicast) throw new Error(`subnet must be a unicast x.y.z.0/24 (e.g. 10.231.7.0/24), got "${subnet}"`);
  return o.join('.');
}

/** Stops a process by its PID: `signal`, SIGKILL after `graceMs`, and gives up waiting 2 s later. */
export function stopProcess(child: ChildProcess | undefined, graceMs = 1000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve();
    const pid = child.pid;
    const done = () => {
      clearTimeout(hard);
      clearTimeout(giveUp);
      resolve();
    };
    child.once('exit', done);
    const hard = setTimeout(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, graceMs);
    const giveUp = setTimeout(done, graceMs + 2000);
    try {
      process.kill(pid, signal);
    } catch {
      done();
    }
  });
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const net of live) {
      for (const child of net.procs) {
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(child.pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      }
      for (const ns of [...net.namespaces].reverse()) ipSync(['netns', 'delete', ns]);
    }
    live.clear();
  });
}

export async function createNetwork(opts: CreateNetworkOptions): Promise<Network> {
  if (!/^[a-z][a-z0-9]{0,11}$/.test(opts.name)) throw new Error(`name must be 1-12 lowercase letters/digits starting with a letter, got "${opts.name}"`);
  if (!Number.isInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > 200) throw new Error(`hosts must be 1..200, got ${opts.hosts}`);
  const subnet = opts.subnet ?? '10.231.0.0/24';
  const base = parseSubnet(subnet);
  const can = canCreateNetwork();
  if (!can.ok) throw new Error(`cannot create network namespaces: ${can.reason}`);
  cleanupLeftovers(opts.name);

  const tag = `${opts.name}-${process.pid}-${seq++}`;
  const switchNs = `${tag}-sw`;
  const bridge = 'br0';
  const state = { namespaces: [] as string[], procs: new Set<ChildProcess>() };
  live.add(state);
  installExitHook();

  let destroying: Promise<void> | undefined;
  const destroy = (): Promise<void> => {
    destroying ??= (async () => {
      await Promise.all([...state.procs].map((c) => stopProcess(c)));
      state.procs.clear();
      const problems: string[] = [];
      for (const ns of [...state.namespaces].reverse()) {
        try {
          await ip(['netns', 'delete', ns]);
        } catch (err) {
          if (listNamespaces().includes(ns)) problems.push((err as Error).message);
        }
      }
      live.delete(state);
      if (problems.length) throw new Error(`netns cleanup incomplete: ${problems.join('; ')}`);
    })();
    return destroying;
  };

  const addNs = async (ns: string) => {
    await ip(['netns', 'add', ns]);
    state.namespaces.push(ns);
  };
  const sysctl = (ns: string, settings: Record<string, string>) =>
    ip([
      'netns',
      'exec',
      ns,
      'sh',
      '-c',
      Object.entries(settings)
        .map(([k, v]) => `echo ${v} > /proc/sys/${k.replaceAll('.', '/')}`)
        .join(' && '),
    ]);

  const makeHost = (index: number, ns: string, address: string, address6: string | undefined): NetHost => {
    const exec = (cmd: string, args: string[] = [], spawnOpts: SpawnOptions = {}): ChildProcess => {
      if (destroying) throw new Error(`network ${tag} is destroyed`);
      const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...spawnOpts });
      // Writing to a child that already exited fails with EPIPE: its exit says how it went.
      child.stdin?.on('error', () => {});
      state.procs.add(child);
      child.once('exit', () => state.procs.delete(child));
      child.once('error', () => state.procs.delete(child));
      return child;
    };
    const run = (cmd: string, args: string[] = [], runOpts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> =>
      new Promise((resolve, reject) => {
        const child = exec(cmd, args);
        let stdout = '';
        let stderr = '';
        child.stdout?.on('data', (d: Buffer) => (stdout += d));
        child.stderr?.on('data', (d: Buffer) => (stderr += d));
        const timer = setTimeout(() => void stopProcess(child, 200), runOpts.timeoutMs ?? 10_000);
        child.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        child.on('close', (code, signal) => {
          clearTimeout(timer);
          resolve({ code, signal, stdout, stderr });
        });
        child.stdin?.end(runOpts.input ?? '');
      });
    return { index, ns, iface: 'eth0', address, address6, exec, run };
  };

  try {
    await addNs(switchNs);
    await sysctl(switchNs, { 'net.ipv6.conf.all.disable_ipv6': '1', 'net.ipv6.conf.default.disable_ipv6': '1' }).catch(() => undefined);
    await ip(['-n', switchNs, 'link', 'add', bridge, 'type', 'bridge', 'mcast_snooping', '0']);
    await ip(['-n', switchNs, 'link', 'set', bridge, 'up']);

    const pending: Array<{ index: number; ns: string; address: string }> = [];
    for (let i = 0; i < opts.hosts; i++) {
      const ns = `${tag}-h${i}`;
      const address = `${base}.${i + 1}`;
      const port = `p${i}`;
      await addNs(ns);
      // DAD off before eth0 exists, so its link-local address is usable immediately.
      await sysctl(ns, { 'net.ipv6.conf.all.accept_dad': '0', 'net.ipv6.conf.default.accept_dad': '0' }).catch(() => undefined);
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      await ip(['-n', switchNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await ip(['-n', switchNs, 'link', 'set', port, 'master', bridge]);
      await ip(['-n', switchNs, 'link', 'set', port, 'up']);
      await ip(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      await ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
      // Lets IPv4 multicast work without an explicit interface; there is no default route.
      await ip(['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
      pending.push({ index: i, ns, address });
    }

    const hosts: NetHost[] = [];
    for (const p of pending) {
      let address6: string | undefined;
      for (let attempt = 0; attempt < 50 && address6 === undefined; attempt++) {
        const out = await ip(['-n', p.ns, '-j', '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'link']).catch(() => '[]');
        const info = (JSON.parse(out || '[]') as Array<{ addr_info?: Array<{ local?: string; tentative?: boolean }> }>).flatMap((x) => x.addr_info ?? []).find((a) => a.local && !a.tentative);
        address6 = info?.local;
        if (address6 === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      hosts.push(makeHost(p.index, p.ns, p.address, address6));
    }

    return {
      tag,
      switchNs,
      bridge,
      subnet,
      hosts,
      namespaces: () => [...state.namespaces],
      destroy,
    };
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }
}
