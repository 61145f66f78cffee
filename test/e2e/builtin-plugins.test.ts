/**
 * The first-party plugins are part of the binary: enabled by name from a host with no plugins
 * folder, trusted without a signature even where signatures are required, and still named
 * with the SHA-256 of their source on the audit stream. A file of the same name shadows the
 * built-in and is then held to the signature rules, unless its bytes are the built-in's.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { baseConfig, failure, ROOT, runCli, startAgent, stopAll, tempDir } from '../helpers/agent.ts';

afterAll(stopAll);

const SOURCE = join(ROOT, 'plugins/routine-policy.ts');
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const DEV = 'spiffe://skein.local/client/dev-client';

async function signerKey(): Promise<string> {
  const dir = tempDir();
  expect((await runCli(['keygen', '--out', join(dir, 'k')])).code).toBe(0);
  return readFileSync(join(dir, 'k.pub'), 'utf8').trim();
}

const policy = (trustedKey: string, dir = 'plugins') => ({
  plugins: {
    dir,
    requireSignature: true,
    trustedKeys: [trustedKey],
    enabled: [{ name: 'routine-policy', options: { rules: [{ effect: 'allow', identities: [DEV], routines: ['add'] }], default: 'deny' } }],
  },
});

describe('built-in plugins', () => {
  it('routine-policy runs with no file on the host, unsigned though signatures are required, named with its SHA-256', async () => {
    const agent = await startAgent({ config: baseConfig(policy(await signerKey())) });
    try {
      const loaded = await agent.waitForLog((l) => l.msg === 'plugin loaded');
      expect(loaded).toMatchObject({ plugin: 'routine-policy', file: 'builtin:routine-policy', builtin: true, signed: false, sha256: sha(SOURCE) });
      const audit = await agent.waitForAudit((l) => l.event === 'plugin.loaded');
      expect(audit).toMatchObject({ plugin: 'routine-policy', file: 'builtin:routine-policy', builtin: true, sha256: sha(SOURCE) });
      const client = agent.client();
      expect(await client.dispatch('add', { args: [2, 3] })).toBe(5);
      const denied = await failure(client.dispatch('echo', { args: ['x'] }));
      expect(denied.code).toBe('SKEIN_ERR_FORBIDDEN');
      await client.close();
    } finally {
      await agent.stop();
    }
  });

  it('a file with exactly the built-in bytes is the built-in (no signature needed)', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'plugins'));
    copyFileSync(SOURCE, join(dir, 'plugins', 'routine-policy.ts'));
    const agent = await startAgent({ dir, config: baseConfig(policy(await signerKey())) });
    try {
      expect(await agent.waitForLog((l) => l.msg === 'plugin loaded')).toMatchObject({ builtin: true, file: join(dir, 'plugins', 'routine-policy.ts') });
    } finally {
      await agent.stop();
    }
  });

  it('a different file of the same name shadows the built-in: warned, and refused unsigned where signatures are required', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'plugins'));
    writeFileSync(join(dir, 'plugins', 'routine-policy.ts'), `${readFileSync(SOURCE, 'utf8')}\n// patched\n`);
    const config = join(dir, 'agent.config.json');
    writeFileSync(config, JSON.stringify(baseConfig(policy(await signerKey()))));
    const r = await runCli(['agent', '--config', config], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/plugin file shadows the built-in plugin of the same name/);
    expect(r.stderr).toMatch(/error \[SKEIN_ERR_PLUGIN_LOAD\]: plugin "routine-policy": signature check failed \(SKEIN_ERR_SIG_MISSING\)/);
  });

  it('an unknown name with no file names the built-in plugins', async () => {
    const dir = tempDir();
    const config = join(dir, 'agent.config.json');
    writeFileSync(config, JSON.stringify(baseConfig({ plugins: { enabled: [{ name: 'policy' }] } })));
    const r = await runCli(['agent', '--config', config], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/plugin "policy": no file .*plugins\/policy\{\.ts,\.mjs,\.js\} .*and no built-in plugin of that name \(built in: bearer-jwt, routine-policy, signed-nonce\)/);
  });
});
