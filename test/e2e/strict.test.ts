/**
 * security.strict through the binary: one test per violation (skein validate --strict reports
 * it with its key and exits 2), every violation listed at once by skein agent --strict, and a
 * clean strict configuration that starts.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { baseConfig, EXAMPLES, ROOT, runCli, startAgent, stopAll, tempDir } from '../helpers/agent.ts';

afterAll(stopAll);

/** A config file written 0600 (strict refuses config files readable by others). */
function configFile(config: Record<string, unknown>, mode = 0o600): string {
  const path = join(tempDir(), 'agent.config.json');
  writeFileSync(path, JSON.stringify(config));
  chmodSync(path, mode);
  return path;
}

const clean = () => ({ agent: { name: 'strict', listen: '127.0.0.1:0', stateDir: 'state' }, log: { format: 'json' }, workers: { poolSize: 1 }, routines: { echo: { file: EXAMPLES } } });

describe('each violation is reported with its key (skein validate --strict, exit 2)', () => {
  it.each([
    ['one-way TLS without a token plugin', { tls: { clientCerts: 'optional' } }, /tls.clientCerts: one-way TLS \("optional"\) without a token plugin/],
    ['plaintext h2c without a token plugin', { tls: { plaintext: true } }, /tls.plaintext: plaintext HTTP\/2 \(h2c\) without a token plugin/],
    ['TLS below 1.3', { tls: { minVersion: 'TLSv1.2' } }, /tls.minVersion: TLSv1.2 is below TLS 1.3/],
    ['a sandbox weaker than full', { sandbox: { profile: 'standard' } }, /sandbox.profile: "standard" is weaker than "full"/],
    [
      'plugins from files without required signatures',
      { plugins: { enabled: [{ name: 'office-hours' }] } },
      /plugins.requireSignature: plugins loaded from files \(office-hours\) but their signatures are not required/,
    ],
    ['the audit stream turned off', { audit: { sink: 'off' } }, /audit.sink: "off" records no security decision/],
    [
      'authorization.default "allow" reachable off-host',
      { agent: { name: 'strict', listen: '0.0.0.0:0', stateDir: 'state' }, authorization: { default: 'allow' } },
      /authorization.default: "allow" while listening off-host \(0.0.0.0:0\): every authenticated peer may run every routine that no plugin denies/,
    ],
  ])('%s', async (_name, overrides, message) => {
    const r = await runCli(['validate', '--strict', '--config', configFile({ ...clean(), ...overrides })]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error \[SKEIN_ERR_STRICT\]: security.strict: refusing to start; 1 violation:/);
    expect(r.stderr).toMatch(message);
  });

  it('built-in plugins need no signature: routine-policy alone passes', async () => {
    const r = await runCli([
      'validate',
      '--strict',
      '--config',
      configFile({ ...clean(), plugins: { enabled: [{ name: 'routine-policy', options: { rules: [{ effect: 'allow', identities: ['**'], routines: ['echo'] }] } }] } }),
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('a file shadowing a built-in is held to the signature rule when it loads', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'plugins'));
    writeFileSync(join(dir, 'plugins', 'routine-policy.ts'), `${readFileSync(join(ROOT, 'plugins/routine-policy.ts'), 'utf8')}\n// patched\n`);
    const path = join(dir, 'agent.config.json');
    writeFileSync(path, JSON.stringify({ ...clean(), plugins: { enabled: [{ name: 'routine-policy', options: { rules: [] } }] } }), { mode: 0o600 });
    const r = await runCli(['agent', '--strict', '--config', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /error \[SKEIN_ERR_STRICT\]: security.strict: refusing to start; 1 violation:\n {2}- plugins.requireSignature: plugin "routine-policy" is loaded from .*routine-policy\.ts but signatures are not required/,
    );
  });

  it('a private key readable by others', async () => {
    const pki = tempDir();
    expect((await runCli(['pki', 'init', '--dir', pki])).code).toBe(0);
    expect((await runCli(['pki', 'issue', '--dir', pki, '--name', 'strict', '--kind', 'agent'])).code).toBe(0);
    chmodSync(join(pki, 'agent-strict.key'), 0o644);
    const r = await runCli(['validate', '--strict', '--config', configFile({ ...clean(), tls: { cert: join(pki, 'agent-strict.crt'), key: join(pki, 'agent-strict.key'), ca: join(pki, 'ca.crt') } })]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/tls.key: .*agent-strict.key is readable or writable by group or others \(mode 0644; chmod 600\)/);
  });

  it('a config file readable by others', async () => {
    const r = await runCli(['validate', '--strict', '--config', configFile(clean(), 0o644)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/config: .*agent.config.json is readable or writable by group or others \(mode 0644; chmod 600\)/);
  });

  it('a fleet file named by extends that group or others can write, with the host file clean', async () => {
    const host = configFile({ ...clean(), extends: 'fleet.json' });
    const fleet = join(host, '..', 'fleet.json');
    writeFileSync(fleet, JSON.stringify({ workers: { poolSize: 1 } }));
    chmodSync(fleet, 0o664);
    for (const command of ['validate', 'agent']) {
      const r = await runCli([command, '--strict', '--config', host]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/refusing to start; 1 violation:\n {2}- extends: .*fleet\.json is readable or writable by group or others \(mode 0664; chmod 600\)/);
    }
    chmodSync(fleet, 0o600);
    expect((await runCli(['validate', '--strict', '--config', host])).code).toBe(0);
  });

  it('discovery without a trust store is refused even without strict (config error)', async () => {
    const r = await runCli(['validate', '--config', configFile({ ...clean(), discovery: { enabled: true, fleet: 'f', signingKey: 'k' } })]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/discovery.trustedKeys.*trust store/);
  });
});

describe('skein agent --strict', () => {
  it('lists every violation at once and does not start', async () => {
    const path = configFile({ ...clean(), tls: { minVersion: 'TLSv1.2', clientCerts: 'optional' }, sandbox: { profile: 'none' } }, 0o644);
    const r = await runCli(['agent', '--strict', '--config', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refusing to start; 4 violations:/);
    for (const key of ['tls.clientCerts', 'tls.minVersion', 'sandbox.profile', 'config']) expect(r.stderr).toContain(`  - ${key}: `);
  });

  it('refuses authorization.default "allow" off loopback, before listening', async () => {
    const r = await runCli(['agent', '--strict', '--config', configFile({ ...clean(), agent: { name: 'strict', listen: '0.0.0.0:0', stateDir: 'state' }, authorization: { default: 'allow' } })]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/SKEIN_ERR_STRICT.*1 violation:\n {2}- authorization.default: "allow" while listening off-host \(0.0.0.0:0\)/);
    expect(r.stderr).not.toMatch(/"msg":"listening"/);
  });

  it('off loopback with no plugin is no violation: what no rule allows is denied (authorization.default "deny")', async () => {
    const r = await runCli(['validate', '--strict', '--config', configFile({ ...clean(), agent: { name: 'strict', listen: '0.0.0.0:0', stateDir: 'state' } })]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('"allow" on loopback is no violation (warned at start instead)', async () => {
    const r = await runCli(['validate', '--strict', '--config', configFile({ ...clean(), authorization: { default: 'allow' } })]);
    expect(r.code).toBe(0);
    // validate shows the warning the agent would give at start, and no other line.
    const lines = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn' });
    expect(JSON.stringify(lines[0])).toContain('authorization.default');
  });

  it('a clean strict configuration starts and serves', async () => {
    const agent = await startAgent({ config: baseConfig({ security: { strict: true }, workers: { poolSize: 1 } }) });
    try {
      const client = agent.client();
      expect(await client.dispatch('add', { args: [2, 2] })).toBe(4);
      await client.close();
    } finally {
      await agent.stop();
    }
  });
});
