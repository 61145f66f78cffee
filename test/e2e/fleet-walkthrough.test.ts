/**
 * docs/fleet.md, run as written: three hosts in network namespaces, the admin steps in a
 * folder of their own, the page's fleet and host files (addresses, paths and the multicast
 * group changed to the test's), `skein validate --strict` on each host, the agents started in
 * strict mode, then `skein peers` and `skein dispatch --discover` as the operator. Only what
 * a test must change is changed: the subnet, the /etc, /var/lib and /var/log folders (one set
 * per host, under a temp folder) and the group's port; everything else is the page's text.
 */
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BINARY, EXAMPLES, ROOT, stopAll, tempDir } from '../helpers/agent.ts';
import { createNetwork, type NetHost, type Network } from '../helpers/netns.ts';

const run = promisify(execFile);
const DOC = readFileSync(join(ROOT, 'docs/fleet.md'), 'utf8');
const OCTET = 1 + Math.floor(Math.random() * 250);
const SUBNET = `10.233.${OCTET}.0/24`;
const PORT = 40_000 + Math.floor(Math.random() * 20_000);
const NAMES = ['edge-1', 'edge-2', 'edge-3'] as const;

/** The fenced block whose first line is `marker` (a `# …` or `// …` comment), from the page. */
function block(marker: string): string {
  for (const m of DOC.matchAll(/```(?:sh|jsonc)\n([\s\S]*?)```/g)) if (m[1]!.startsWith(marker)) return m[1]!;
  throw new Error(`docs/fleet.md has no block starting with ${JSON.stringify(marker)}`);
}

let net: Network;
let admin: string;
let bin: string;
const procs: ChildProcess[] = [];
const logs: Record<string, string> = {};
/**
 * The page's documentation addresses and paths → this test's. With a host index `i`, the
 * page's edge-1 examples (its host file, its install lines) become host i's.
 */
const hostIp = (i: number) => net.hosts[i]!.address;
const folders = (i: number) => {
  const base = join(admin, 'hosts', NAMES[i]!);
  return { etc: join(base, 'etc/skein'), lib: join(base, 'var/lib/skein'), log: join(base, 'var/log/skein') };
};
function localize(text: string, i?: number): string {
  let out = text.replace(/10\.40\.0\.1(\d)/g, (_m, d: string) => hostIp(Number(d) - 1)).replace('239.255.77.77:7946', `239.255.77.78:${PORT}`);
  if (i !== undefined) {
    const f = folders(i);
    out = out.replaceAll(hostIp(0), hostIp(i)).replaceAll('/etc/skein', f.etc).replaceAll('/var/lib/skein', f.lib).replaceAll('/var/log/skein', f.log).replaceAll('edge-1', NAMES[i]!);
  }
  return out;
}
const env = () => ({ PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: admin });

beforeAll(async () => {
  net = await createNetwork({ name: 'skfw', hosts: 3, subnet: SUBNET });
  admin = tempDir('skein-fleet-');
  bin = join(admin, 'bin');
  mkdirSync(bin);
  symlinkSync(BINARY, join(bin, 'skein'));
}, 60_000);

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await net?.destroy();
  await stopAll();
});

describe('docs/fleet.md: a strict fleet from the page alone', () => {
  it('1. the admin steps make the CA, certificates, keys and endorsements', async () => {
    const r = await run('bash', ['-euo', 'pipefail', '-c', localize(block('# admin:'))], { cwd: admin, env: env() });
    expect(r.stdout).toMatch(/^ed25519:[A-Za-z0-9_-]{43}$/m);
    for (const n of NAMES) for (const f of [`ca/agent-${n}.crt`, `${n}-adverts.key`, `${n}.endorsement`]) expect(readFileSync(join(admin, f)).length).toBeGreaterThan(0);
  });

  it("2–4. each host installs the page's files, passes validate --strict and starts in strict mode", async () => {
    const rootKey = readFileSync(join(admin, 'fleet-root.key.pub'), 'utf8').trim();
    mkdirSync(join(admin, 'routines'));
    copyFileSync(EXAMPLES, join(admin, 'routines/examples.py'));
    const install = block('# on each host');
    const [setup, start] = [install.slice(0, install.lastIndexOf('skein agent')), install.slice(install.lastIndexOf('skein agent'))];
    expect(start.trim()).toBe('skein agent --config /etc/skein/host.json');
    for (let i = 0; i < NAMES.length; i++) {
      // The page's files, as the admin would write them for this host.
      writeFileSync(join(admin, 'fleet.json'), localize(block('// fleet.json'), i).replace('ed25519:<contents of fleet-root.key.pub>', rootKey));
      writeFileSync(join(admin, 'host.json'), localize(block('// host.json for edge-1'), i));
      const r = await run('bash', ['-euo', 'pipefail', '-c', localize(setup, i)], { cwd: admin, env: env() }).catch((e) => e);
      expect(r.code ?? 0, `${NAMES[i]}: ${r.stderr}`).toBe(0);
    }
    await Promise.all(
      NAMES.map(async (name, i) => {
        const host = net.hosts[i] as NetHost;
        const [cmd, ...args] = localize(start.trim(), i).split(' ');
        const proc = host.exec(cmd === 'skein' ? BINARY : cmd!, args, { env: env(), stdio: ['ignore', 'ignore', 'pipe'] });
        procs.push(proc);
        logs[name] = '';
        proc.stderr!.on('data', (d) => (logs[name] += d));
        for (const until = Date.now() + 20_000; !/"discovery started"/.test(logs[name]!); await new Promise((r) => setTimeout(r, 50))) {
          if (proc.exitCode !== null || Date.now() > until) throw new Error(`${name} did not start:\n${logs[name]}`);
        }
      }),
    );
    // Strict mode is on, with nothing to complain about; each host's advertised endpoint leads back to it.
    for (const n of NAMES) expect(logs[n]).not.toMatch(/INSECURE POSTURE|"level":"error"|"level":"warn"/);
    for (const n of NAMES) {
      for (const until = Date.now() + 5000; !/advertised endpoint reaches this agent/.test(logs[n]!) && Date.now() < until;) await new Promise((r) => setTimeout(r, 50));
      expect(logs[n]).toMatch(/"msg":"advertised endpoint reaches this agent"/);
    }
  }, 90_000);

  it('5. the operator sees the peers and runs a call with --discover, as the page shows', async () => {
    const lines = block('# from the admin machine')
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('#'));
    const exports = localize(lines[0]!);
    const [peersLine, dispatchLine] = [localize(lines[1]!), localize(lines[2]!)];
    const operator = net.hosts[0] as NetHost; // the operator's machine sits on the segment
    const sh = (line: string) => operator.run('bash', ['-c', `cd ${admin} && export PATH=${bin}:$PATH && ${exports} && ${line}`], { timeoutMs: 15_000 });
    let peers = '';
    for (const until = Date.now() + 15_000; Date.now() < until; await new Promise((r) => setTimeout(r, 250))) {
      peers = (await sh(peersLine)).stdout;
      if (NAMES.slice(1).every((n) => peers.includes(n))) break;
    }
    expect(peers, `skein peers printed:\n${peers}\nedge-1's log:\n${logs['edge-1']}`).toMatch(/^edge-2 +spiffe:\/\/fleet\.example\/agent\/edge-2 /m);
    expect(peers).toMatch(/^edge-3 +spiffe:\/\/fleet\.example\/agent\/edge-3 /m);
    const [command, promised] = dispatchLine.split(/\s+# → /) as [string, string];
    const r = await sh(command);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(promised);
    expect(r.stderr).toMatch(/\(ran on peer edge-[23]\)/);
  }, 60_000);
});
