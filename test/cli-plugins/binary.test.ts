/**
 * keygen and plugin through the compiled binary: exit codes and messages as an operator sees
 * them, and a scaffolded plugin signed with the CLI and loaded by a real agent.
 */
import { appendFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { baseConfig, failure, runCli, startAgent, stopAll, tempDir } from '../helpers/agent.ts';

afterAll(stopAll);

describe('skein keygen / plugin (binary)', () => {
  it.each([['keygen'], ['plugin']])('skein %s --help prints usage and exits 0', async (command) => {
    const r = await runCli([command, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: skein ${command}`));
  });

  it('keygen writes 0600 + .pub and refuses to overwrite (exit 2)', async () => {
    const dir = tempDir();
    const first = await runCli(['keygen', '--out', 'release.key'], { cwd: dir });
    expect(first.code).toBe(0);
    expect(statSync(join(dir, 'release.key')).mode & 0o777).toBe(0o600);
    const pub = readFileSync(join(dir, 'release.key.pub'), 'utf8').trim();
    expect(first.stdout).toContain(pub);

    const again = await runCli(['keygen', '--out', 'release.key'], { cwd: dir });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^error \[SKEIN_ERR_SIG_KEY_EXISTS\]: .*--force/);
    expect(readFileSync(join(dir, 'release.key.pub'), 'utf8').trim()).toBe(pub);
  });

  it('new → sign → verify; a tampered file and an untrusted key exit 2 with their codes', async () => {
    const dir = tempDir();
    expect((await runCli(['keygen', '--out', 'release.key'], { cwd: dir })).code).toBe(0);
    expect((await runCli(['keygen', '--out', 'other.key'], { cwd: dir })).code).toBe(0);
    const created = await runCli(['plugin', 'new', 'gate', '--kind', 'authz'], { cwd: dir });
    expect(created.code).toBe(0);
    for (const f of ['gate.ts', 'gate.test.ts', 'skein-plugin.ts']) expect(existsSync(join(dir, 'plugins', f))).toBe(true);
    const again = await runCli(['plugin', 'new', 'gate', '--kind', 'authn'], { cwd: dir });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/SKEIN_ERR_USAGE\]: refusing to overwrite/);

    const signed = await runCli(['plugin', 'sign', 'plugins/gate.ts', '--key', 'release.key'], { cwd: dir });
    expect(signed.code).toBe(0);
    expect(signed.stdout).toMatch(/signed plugins\/gate\.ts as plugin "gate" version 0\.1\.0/);

    const ok = await runCli(['plugin', 'verify', 'plugins/gate.ts', '--trusted-key', 'release.key.pub'], { cwd: dir });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/verified/);

    const untrusted = await runCli(['plugin', 'verify', 'plugins/gate.ts', '--trusted-key', readFileSync(join(dir, 'other.key.pub'), 'utf8').trim()], { cwd: dir });
    expect(untrusted.code).toBe(2);
    expect(untrusted.stderr).toMatch(/^error \[SKEIN_ERR_SIG_UNKNOWN_KEY\]/);

    appendFileSync(join(dir, 'plugins/gate.ts'), '\n// edited after signing\n');
    const tampered = await runCli(['plugin', 'verify', 'plugins/gate.ts', '--trusted-key', 'release.key.pub'], { cwd: dir });
    expect(tampered.code).toBe(2);
    expect(tampered.stderr).toMatch(/^error \[SKEIN_ERR_SIG_TAMPERED\]/);
  });

  it('scaffolded plugins of both kinds, signed with the CLI, load with requireSignature and decide', async () => {
    const dir = tempDir();
    await runCli(['keygen', '--out', 'release.key'], { cwd: dir });
    await runCli(['plugin', 'new', 'keys', '--kind', 'authn'], { cwd: dir });
    await runCli(['plugin', 'new', 'gate', '--kind', 'authz'], { cwd: dir });
    for (const name of ['keys', 'gate']) expect((await runCli(['plugin', 'sign', `plugins/${name}.ts`, '--key', 'release.key'], { cwd: dir })).code).toBe(0);
    const apiKey = 'k'.repeat(40);
    const agent = await startAgent({
      dir,
      config: baseConfig({
        plugins: {
          dir: 'plugins',
          enabled: [
            { name: 'keys', options: { apiKeys: { ci: apiKey } } },
            { name: 'gate', options: { allow: { add: ['key:ci'] } } },
          ],
          requireSignature: true,
          trustedKeys: [readFileSync(join(dir, 'release.key.pub'), 'utf8').trim()],
        },
      }),
    });
    const client = agent.client();
    try {
      expect(await agent.waitForLog((l) => l.msg === 'plugin loaded' && l.plugin === 'gate')).toMatchObject({ plugin: 'gate', version: '0.1.0', signed: true });
      expect(await client.dispatch('echo', { args: ['abstained'] })).toBe('abstained');
      const denied = await failure(client.dispatch('add', { args: [1, 2] }));
      expect(denied.details).toMatchObject({ status: 403, reason: 'NOT_LISTED', plugin: 'gate', routine: 'add' });
      expect(await client.dispatch('add', { args: [1, 2], headers: { 'x-api-key': apiKey } })).toBe(3);
      const wrong = await failure(client.dispatch('add', { args: [1, 2], headers: { 'x-api-key': 'x'.repeat(40) } }));
      expect(wrong.details).toMatchObject({ status: 401, reason: 'BAD_API_KEY', plugin: 'keys' });
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});
