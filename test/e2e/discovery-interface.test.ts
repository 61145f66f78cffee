/**
 * discovery.interface left out on a host whose agent listens on the fleet's segment: the
 * agent would multicast on the loopback interface and no other host would ever hear it. It
 * says so at start, naming the key (one host in a network namespace the test creates).
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { baseConfig, BINARY, EXAMPLES, runCli, stopAll, tempDir } from '../helpers/agent.ts';
import { createNetwork, type NetHost, type Network } from '../helpers/netns.ts';

let net: Network;
let proc: ChildProcess | undefined;
afterAll(async () => {
  proc?.kill('SIGKILL');
  await net?.destroy();
  await stopAll();
});
beforeAll(async () => {
  net = await createNetwork({ name: 'skdi', hosts: 1, subnet: `10.234.${1 + Math.floor(Math.random() * 250)}.0/24` });
}, 60_000);

it('warns at start, naming discovery.interface, and still says its endpoint reaches it', async () => {
  const host = net.hosts[0] as NetHost;
  const dir = tempDir();
  const pki = join(dir, 'pki');
  for (const args of [
    ['pki', 'init', '--dir', pki, '--trust-domain', 'fleet.test'],
    ['pki', 'issue', '--dir', pki, '--name', 'edge', '--kind', 'agent', '--host', host.address],
    ['keygen', '--out', join(dir, 'edge.key')],
  ])
    expect((await runCli(args)).code).toBe(0);
  const pub = readFileSync(join(dir, 'edge.key.pub'), 'utf8').trim();
  const endpoint = `${host.address}:7443`;
  const config = baseConfig({
    agent: { name: 'edge', listen: endpoint, stateDir: 'state' },
    tls: { cert: join(pki, 'agent-edge.crt'), key: join(pki, 'agent-edge.key'), ca: join(pki, 'ca.crt') },
    workers: { poolSize: 1 },
    routines: { echo: { file: EXAMPLES } },
    // No "interface": the default, 127.0.0.1.
    discovery: { enabled: true, fleet: 'f', signingKey: join(dir, 'edge.key'), trustedKeys: [`${pub}@spiffe://fleet.test/agent/edge`], groups: ['239.255.77.79:47946'] },
  });
  writeFileSync(join(dir, 'agent.config.json'), JSON.stringify(config));
  proc = host.exec(BINARY, ['agent', '--config', join(dir, 'agent.config.json')], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d) => (log += d));
  for (const until = Date.now() + 20_000; !/advertised endpoint reaches this agent/.test(log); await new Promise((r) => setTimeout(r, 50))) {
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`the agent did not get that far:\n${log}`);
  }
  const lines = log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines.find((l) => l.msg === 'discovery started')).toMatchObject({ interface: '127.0.0.1', advertise: [endpoint] });
  const warning = lines.find((l) => String(l.msg).startsWith('discovery.interface is the loopback interface'));
  expect(warning).toMatchObject({ level: 'warn', interface: '127.0.0.1', advertise: [endpoint] });
  expect(String(warning!.msg)).toContain("set discovery.interface to this host's address");
}, 60_000);
