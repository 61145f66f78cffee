/** The binary's commands as an operator uses them: help, version, validate, bad configs. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import pkg from '../../package.json' with { type: 'json' };
import { EXAMPLES, runCli, stopAll, tempDir } from '../helpers/agent.ts';

afterAll(stopAll);

function configFile(content: unknown): string {
  const path = join(tempDir(), 'host.json');
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

describe('help and version', () => {
  it.each([['agent'], ['dispatch'], ['pki'], ['validate'], ['doctor'], ['peers'], ['keygen'], ['key'], ['plugin'], ['token']])('skein %s --help prints usage and exits 0', async (command) => {
    const r = await runCli([command, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: skein ${command}`));
  });

  it('skein version / --version', async () => {
    for (const args of [['version'], ['--version']]) {
      const r = await runCli(args);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toMatch(new RegExp(`^skein ${pkg.version.replaceAll('.', '\\.')} \\(commit ([0-9a-f]{12}(-dirty)?), built \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\)$`));
    }
  });

  it('no command prints usage and exits 2; an unknown command or flag exits 2 naming it', async () => {
    expect((await runCli([])).code).toBe(2);
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/error \[SKEIN_ERR_USAGE\]: unknown command "frobnicate"/);
    const flag = await runCli(['agent', '--lisen', '127.0.0.1:1']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/error \[SKEIN_ERR_USAGE\]: .*--lisen/);
  });
});

describe('skein validate', () => {
  it('prints the effective config with defaults filled and paths resolved', async () => {
    const path = configFile({ agent: { name: 'edge-1', listen: '127.0.0.1:0' }, routines: { echo: { file: EXAMPLES } } });
    const r = await runCli(['validate', '--config', path]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.source).toBe(path);
    expect(out.config.agent).toEqual({ name: 'edge-1', listen: '127.0.0.1:0', stateDir: join(path, '../.skein') });
    expect(out.config.limits.maxBodyBytes).toBe(1048576);
  });

  it('SKEIN_* environment overrides show in the effective config', async () => {
    const path = configFile({});
    const r = await runCli(['validate', '--config', path], { env: { SKEIN_POOL_SIZE: '3' } });
    expect(JSON.parse(r.stdout).config.workers.poolSize).toBe(3);
  });
});

describe('invalid configuration stops the agent with exit 2 naming the key', () => {
  it.each([
    [{ workers: { poolSize: -1 } }, /config key "workers.poolSize" \(in .*host.json\): must be between 0 and 1024, got -1/],
    [{ agent: { listen: '127.0.0.1:0' }, routines: { echo: { file: 'missing.py' } } }, /config key "routines.echo.file": cannot read .*missing.py/],
    [{ agent: { listen: '127.0.0.1:0' }, workers: { python: '/nonexistent/python3' } }, /config key "workers.python": cannot run \/nonexistent\/python3/],
    [{ agent: { listen: '127.0.0.1:0' }, tls: { cert: 'a.pem', key: 'b.pem', ca: 'c.pem' } }, /cannot read tls.cert file .*a.pem/],
    ['{"agent": ', /config file .*host\.json:1:11: expected a value/],
  ])('%j', async (content, message) => {
    const path = configFile(content);
    for (const command of ['agent', 'validate']) {
      const r = await runCli([command, '--config', path]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^error \[SKEIN_ERR_CONFIG\]: /m);
      expect(r.stderr).toMatch(message);
    }
  });

  it('a routine with a syntax error stops start-up naming the routine', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'broken.py'), 'def f(:\n  pass\n');
    const path = join(dir, 'host.json');
    writeFileSync(path, JSON.stringify({ agent: { listen: '127.0.0.1:0', stateDir: 'state' }, workers: { poolSize: 1 }, routines: { f: { file: 'broken.py' } } }));
    const r = await runCli(['agent', '--config', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/routine "f" failed to load: SyntaxError/);
  });

  it('a port already in use is a config error naming agent.listen', async () => {
    const net = await import('node:net');
    const server = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as { port: number }).port;
    try {
      const dir = tempDir();
      const path = join(dir, 'host.json');
      writeFileSync(path, JSON.stringify({ agent: { listen: `127.0.0.1:${port}`, stateDir: 'state' }, workers: { poolSize: 1 } }));
      const r = await runCli(['agent', '--config', path]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/cannot listen on 127.0.0.1:\d+ \(agent.listen\): address already in use/);
    } finally {
      server.close();
    }
  });
});
