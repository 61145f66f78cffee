/**
 * Routine code from an https URL, through the binary: a good pin loads and runs; a wrong
 * pin, a host off the allow-list, a private address, a redirect off the allow-list and an
 * oversize body each stop start-up (exit 2) with their own code.
 *
 * Routine code may only come from public addresses, and the agent has no switch to lift
 * that. So the code host and the agent run in a network namespace this file creates (test/
 * helpers/netns.ts: linked to nothing outside), where the host's address is a publicly
 * routed one that exists only there. Everything runs inside it: the test process cannot
 * reach the namespace, so `skein dispatch` runs there too.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BINARY, EXAMPLES, baseConfig, runCli, stopAll, tempDir } from '../helpers/agent.ts';
import { createNetwork, netnsNeed, type NetHost, type Network } from '../helpers/netns.ts';
import { requires } from '../helpers/requires.ts';

const CODE_SERVER = join(import.meta.dirname, 'fixtures-netns/code-server.mjs');
const CODE = readFileSync(EXAMPLES, 'utf8');
const PIN = createHash('sha256').update(CODE).digest('hex');
// A publicly routed /24 (not private, documentation or reserved: http/address.ts), only
// ever configured inside the namespace.
const SUBNET = '11.231.77.0/24';
const CODE_PORT = 8443;
const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' };

let net: Network;
let host: NetHost;
let origin: string;
let ca: string;
let server: ChildProcess;

requires(netnsNeed()).describe('routine code from a URL, served from a public address in a network namespace', () => {
  beforeAll(async () => {
    net = await createNetwork({ name: 'sksrc', hosts: 1, subnet: SUBNET });
    host = net.hosts[0]!;
    origin = `https://${host.address}:${CODE_PORT}`;
    const pki = tempDir();
    expect((await runCli(['pki', 'init', '--dir', pki])).code).toBe(0);
    expect((await runCli(['pki', 'issue', '--dir', pki, '--name', 'code', '--kind', 'agent', '--host', host.address])).code).toBe(0);
    ca = join(pki, 'ca.crt');
    server = host.exec(process.execPath, [CODE_SERVER, JSON.stringify({ host: '0.0.0.0', port: CODE_PORT, cert: join(pki, 'agent-code.crt'), key: join(pki, 'agent-code.key'), code: EXAMPLES })]);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`code server not ready: ${out}`)), 10_000);
      server.stdout!.on('data', (d: Buffer) => {
        out += d;
        if (out.includes('"ready"')) {
          clearTimeout(timer);
          resolve();
        }
      });
      server.once('exit', (code) => reject(new Error(`code server exited ${code}: ${out}`)));
    });
  }, 30_000);

  afterAll(async () => {
    await net?.destroy();
    await stopAll();
  });

  const urlConfig = (path: string, sandbox: Record<string, unknown> = {}, sha256 = PIN, url = `${origin}${path}`) => ({
    // Not baseConfig's routines: a routine has a file or a url, never both.
    ...baseConfig({ workers: { poolSize: 1 }, sandbox: { allowedCodeHosts: [host.address], codeCa: ca, ...sandbox } }),
    routines: { echo: { url, sha256 }, add: { url, sha256 } },
  });

  /** Writes `config` to a fresh folder (0600) and returns its path. */
  function configFile(config: Record<string, unknown>): string {
    const path = join(tempDir(), 'agent.config.json');
    writeFileSync(path, JSON.stringify(config, null, 2), { mode: 0o600 });
    return path;
  }

  it('a good pin loads from a public address, logs the URL and hash, and runs', async () => {
    const config = { ...urlConfig('/examples.py'), routines: { add: { url: `${origin}/examples.py`, sha256: PIN } } };
    const path = configFile(config);
    const agent = host.exec(BINARY, ['agent', '--config', path], { cwd: join(path, '..'), env: ENV });
    const logs: Array<Record<string, unknown>> = [];
    let raw = '';
    agent.stderr!.on('data', (d: Buffer) => {
      raw += d;
      const lines = raw.split('\n');
      raw = lines.pop()!;
      for (const line of lines) {
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not a log line
        }
      }
    });
    try {
      const listening = await (async () => {
        for (const until = Date.now() + 20_000; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
          const hit = logs.find((l) => l.msg === 'listening');
          if (hit) return hit;
          if (agent.exitCode !== null) break;
        }
        throw new Error(`the agent did not start: ${JSON.stringify(logs)} ${raw}`);
      })();
      expect(logs.find((l) => l.msg === 'routine loaded')).toMatchObject({ routine: 'add', url: `${origin}/examples.py`, sha256: PIN });
      const port = String(listening.address).split(':').pop();
      const pki = join(path, '..', 'state', 'pki');
      const r = await host.run(
        BINARY,
        [
          'dispatch',
          'add',
          '--args',
          '[20, 22]',
          '--peer',
          `127.0.0.1:${port}`,
          '--cert',
          join(pki, 'client-dev-client.crt'),
          '--key',
          join(pki, 'client-dev-client.key'),
          '--ca',
          join(pki, 'ca.crt'),
        ],
        { timeoutMs: 15_000 },
      );
      expect(r.stdout.trim(), r.stderr).toBe('42');
    } finally {
      agent.kill('SIGTERM');
    }
  }, 60_000);

  it.each([
    ['a wrong pin', () => urlConfig('/examples.py', {}, 'a'.repeat(64)), /SKEIN_ERR_SOURCE_PIN_MISMATCH.*routine "echo"/],
    ['a host off the allow-list', () => urlConfig('/examples.py', { allowedCodeHosts: ['code.example'] }), /SKEIN_ERR_SOURCE_HOST/],
    [
      'a private address (localhost, allowed by name)',
      () => urlConfig('/examples.py', { allowedCodeHosts: ['localhost'] }, PIN, `https://localhost:${CODE_PORT}/examples.py`),
      /SKEIN_ERR_SOURCE_ADDRESS.*localhost resolves to (127\.0\.0\.1|::1) \(loopback\)/,
    ],
    ['a redirect off the allow-list', () => urlConfig('/redirect-away'), /SKEIN_ERR_SOURCE_HOST.*evil.example/],
    [
      'an oversize body',
      () =>
        urlConfig(
          '/huge.py',
          {},
          createHash('sha256')
            .update('#'.repeat(2 * 1024 * 1024))
            .digest('hex'),
        ),
      /SKEIN_ERR_SOURCE_TOO_LARGE/,
    ],
  ] as const)(
    '%s stops start-up with its code',
    async (_name, config, message) => {
      const path = configFile({ ...config(), agent: { name: 't', listen: '127.0.0.1:0', stateDir: 'state' } });
      const r = await host.run(BINARY, ['agent', '--config', path], { timeoutMs: 20_000 });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    },
    30_000,
  );
});
