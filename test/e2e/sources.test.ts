/**
 * Routine code from an https URL, through the binary: a good pin loads and runs; a wrong
 * pin, a host off the allow-list, a private address, a redirect off the allow-list and an
 * oversize body each stop start-up (exit 2) with their own code.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, EXAMPLES, runCli, startAgent, startMustFail, stopAll, tempDir } from '../helpers/agent.ts';

const CODE = readFileSync(EXAMPLES, 'utf8');
const PIN = createHash('sha256').update(CODE).digest('hex');
let server: Server;
let port: number;
let ca: string;

beforeAll(async () => {
  const pki = tempDir();
  expect((await runCli(['pki', 'init', '--dir', pki])).code).toBe(0);
  expect((await runCli(['pki', 'issue', '--dir', pki, '--name', 'code', '--kind', 'agent', '--host', 'localhost'])).code).toBe(0);
  ca = join(pki, 'ca.crt');
  server = createServer({ cert: readFileSync(join(pki, 'agent-code.crt')), key: readFileSync(join(pki, 'agent-code.key')) }, (req, res) => {
    if (req.url === '/examples.py') return res.end(CODE);
    if (req.url === '/redirect-away') {
      res.writeHead(302, { location: 'https://evil.example/examples.py' });
      return res.end();
    }
    if (req.url === '/huge.py') return res.end('#'.repeat(2 * 1024 * 1024));
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
afterAll(async () => {
  server?.close();
  await stopAll();
});

const urlConfig = (path: string, sandbox: Record<string, unknown> = {}, sha256 = PIN) => ({
  // Not baseConfig's routines: a routine has a file or a url, never both.
  ...baseConfig({ workers: { poolSize: 1 }, sandbox: { allowedCodeHosts: ['localhost'], allowPrivateCodeAddresses: true, codeCa: ca, ...sandbox } }),
  routines: { echo: { url: `https://localhost:${port}${path}`, sha256 }, add: { url: `https://localhost:${port}${path}`, sha256 } },
});


describe('routine code from a URL', () => {
  it('a good pin loads, logs the URL and hash, and runs', async () => {
    const agent = await startAgent({ config: { ...urlConfig('/examples.py'), routines: { add: { url: `https://localhost:${port}/examples.py`, sha256: PIN } } } });
    try {
      const loaded = await agent.waitForLog((l) => l.msg === 'routine loaded');
      expect(loaded).toMatchObject({ routine: 'add', url: `https://localhost:${port}/examples.py`, sha256: PIN });
      await agent.waitForLog((l) => l.level === 'warn' && String(l.msg).includes('allowPrivateCodeAddresses'));
      const client = agent.client();
      expect(await client.dispatch('add', { args: [20, 22] })).toBe(42);
      await client.close();
    } finally {
      await agent.stop();
    }
  });

  it.each([
    ['a wrong pin', () => urlConfig('/examples.py', {}, 'a'.repeat(64)), /SKEIN_ERR_SOURCE_PIN_MISMATCH.*routine "echo"/],
    ['a host off the allow-list', () => urlConfig('/examples.py', { allowedCodeHosts: ['code.example'] }), /SKEIN_ERR_SOURCE_HOST/],
    ['a private address', () => urlConfig('/examples.py', { allowPrivateCodeAddresses: false }), /SKEIN_ERR_SOURCE_ADDRESS/],
    ['a redirect off the allow-list', () => urlConfig('/redirect-away'), /SKEIN_ERR_SOURCE_HOST.*evil.example/],
    ['an oversize body', () => urlConfig('/huge.py', {}, createHash('sha256').update('#'.repeat(2 * 1024 * 1024)).digest('hex')), /SKEIN_ERR_SOURCE_TOO_LARGE/],
  ])('%s stops start-up with its code', async (_name, config, message) => {
    const stderr = await startMustFail(config());
    expect(stderr).toMatch(message);
  });
});
