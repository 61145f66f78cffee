import { configJsonSchema } from '../../agent/config/json-rules.ts';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../agent/config/load.ts';
import { CONFIG_SCHEMA } from '../../agent/config/schema.ts';
import { configReference } from '../../agent/config/reference.ts';
import { pluginApiCopy } from '../../agent/plugin-host/publish.ts';
import { SkeinError } from '../../common/errors/index.ts';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function files(layout: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'skein-cfg-'));
  dirs.push(dir);
  for (const [name, content] of Object.entries(layout)) {
    const path = join(dir, name);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

function configError(fn: () => unknown): SkeinError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SkeinError);
    expect((err as SkeinError).code).toBe('SKEIN_ERR_CONFIG');
    return err as SkeinError;
  }
  throw new Error('expected a config error');
}

describe('defaults and the embedded default', () => {
  it('an empty file gets every default', () => {
    const dir = files({ 'a.json': {} });
    const { config } = loadConfig({ path: join(dir, 'a.json'), env: {} });
    expect(config.agent).toEqual({ name: 'dev', listen: '127.0.0.1:7443', stateDir: join(dir, '.skein') });
    expect(config.tls.minVersion).toBe('TLSv1.3');
    expect(config.limits.maxBodyBytes).toBe(1024 * 1024);
    expect(config.routines).toEqual({});
  });

  it('with no file in the working directory, the embedded default is used, on loopback', () => {
    const dir = files({});
    const loaded = loadConfig({ env: {}, cwd: dir });
    expect(loaded.source).toBe('embedded');
    expect(loaded.config.agent.listen).toMatch(/^127\.0\.0\.1:/);
    expect(Object.keys(loaded.config.routines)).toEqual(expect.arrayContaining(['echo', 'add', 'fail']));
  });

  it('the repository agent.config.json validates', () => {
    const { config } = loadConfig({ path: join(import.meta.dirname, '../../agent.config.json'), env: {} });
    expect(config.agent.listen.startsWith('127.0.0.1:')).toBe(true);
  });
});

describe('precedence: defaults < fleet (extends) < host file < env < flags', () => {
  const fleet = { agent: { listen: '0.0.0.0:9000' }, workers: { poolSize: 3, maxOpenFiles: 100 }, routines: { shared: { file: 'fleet-routines/r.py' } } };
  const host = { extends: 'fleet/fleet.json', agent: { name: 'host-a' }, workers: { poolSize: 4 }, routines: { local: { file: 'r.py' } } };

  it('host values win over the fleet file, and records merge', () => {
    const dir = files({ 'fleet/fleet.json': fleet, 'host.json': host });
    const { config } = loadConfig({ path: join(dir, 'host.json'), env: {} });
    expect(config.agent.name).toBe('host-a');
    expect(config.agent.listen).toBe('0.0.0.0:9000');
    expect(config.workers.poolSize).toBe(4);
    expect(config.workers.maxOpenFiles).toBe(100);
    expect(Object.keys(config.routines).sort()).toEqual(['local', 'shared']);
  });

  it('relative paths resolve against the file that names them', () => {
    const dir = files({ 'fleet/fleet.json': fleet, 'host.json': host });
    const { config } = loadConfig({ path: join(dir, 'host.json'), env: {}, cwd: '/' });
    expect(config.routines.shared!.file).toBe(join(dir, 'fleet/fleet-routines/r.py'));
    expect(config.routines.local!.file).toBe(join(dir, 'r.py'));
  });

  it('SKEIN_* environment beats the files; flags beat the environment', () => {
    const dir = files({ 'fleet/fleet.json': fleet, 'host.json': host });
    const env = { SKEIN_LISTEN: '127.0.0.1:1111', SKEIN_POOL_SIZE: '7', SKEIN_LOG_LEVEL: 'debug' };
    const envOnly = loadConfig({ path: join(dir, 'host.json'), env }).config;
    expect(envOnly.agent.listen).toBe('127.0.0.1:1111');
    expect(envOnly.workers.poolSize).toBe(7);
    const withFlags = loadConfig({ path: join(dir, 'host.json'), env, flags: { 'agent.listen': '127.0.0.1:2222' } }).config;
    expect(withFlags.agent.listen).toBe('127.0.0.1:2222');
    expect(withFlags.log.level).toBe('debug');
  });

  it('SKEIN_CONFIG names the file when no path is given', () => {
    const dir = files({ 'x.json': { agent: { name: 'from-env' } } });
    expect(loadConfig({ env: { SKEIN_CONFIG: join(dir, 'x.json') } }).config.agent.name).toBe('from-env');
  });
});

describe('errors name the key (and the file)', () => {
  it.each([
    [{ agent: { lisen: '1' } }, /config key "agent.lisen" \(in .*a.json\): unknown key \(allowed here: name, listen, stateDir\)/],
    [{ bogus: 1 }, /config key "bogus".*unknown key/],
    [{ workers: { poolSize: 'two' } }, /config key "workers.poolSize".*must be an integer, got string "two"/],
    [{ workers: { poolSize: 5000 } }, /config key "workers.poolSize".*between 0 and 1024, got 5000/],
    [{ agent: { listen: 'localhost' } }, /config key "agent.listen".*is not HOST:PORT/],
    [{ log: { level: 'loud' } }, /config key "log.level".*one of "debug", "info", "warn", "error"/],
    [{ tls: { minVersion: 'TLSv1.1' } }, /config key "tls.minVersion"/],
    [{ routines: { echo: {} } }, /config key "routines.echo": set exactly one of "file" and "url"/],
    [{ routines: { echo: { file: 'a.py', url: 'https://x/a.py' } } }, /config key "routines.echo": set exactly one of "file" and "url"/],
    [{ routines: { echo: { url: 'https://code.example/a.py' } } }, /config key "routines.echo.sha256": is required with "url"/],
    [{ routines: { echo: { url: 'http://code.example/a.py', sha256: 'a'.repeat(64) } } }, /config key "routines.echo.url".*is not an https:\/\/ URL/],
    [{ routines: { '1bad': { file: 'x.py' } } }, /config key "routines.1bad".*invalid name/],
    [{ routines: { echo: { file: 'x.py', function: 'not-ident' } } }, /config key "routines.echo.function".*Python identifier/],
    [{ tls: { cert: 'a.pem' } }, /config key "tls.key".*must be set together \(missing: tls.key, tls.ca\)/],
    [{ limits: { defaultTimeoutMs: 10, maxTimeoutMs: 5 } }, /config key "limits.defaultTimeoutMs"/],
    [{ discovery: { enabled: true, signingKey: 'k' } }, /config key "discovery.fleet": is required when discovery.enabled is true/],
    [{ discovery: { enabled: true, fleet: 'f', signingKey: 'k' } }, /config key "discovery.trustedKeys": discovery needs a trust store/],
    [{ agent: { listen: '0.0.0.0:7443' }, discovery: { enabled: true, fleet: 'f', signingKey: 'k', rootKeys: ['ed25519:' + 'A'.repeat(43)] } }, /config key "discovery.advertise"/],
    [{ discovery: { groups: ['239.1.1.1'] } }, /config key "discovery.groups\[0\]".*GROUP:PORT/],
  ])('%j', (layer, message) => {
    const dir = files({ 'a.json': layer });
    expect(configError(() => loadConfig({ path: join(dir, 'a.json'), env: {} })).message).toMatch(message);
  });

  it("JSONC: comments and trailing commas are accepted, as in the docs' examples", () => {
    const dir = files({
      'fleet.json': '{\n  // the fleet\'s pool\n  "workers": { "poolSize": 3, },\n}\n',
      'host.json': '/* this host */ {\n  "extends": "fleet.json", // inherit\n  "agent": { "name": "edge-7" },\n}',
    });
    const { config } = loadConfig({ path: join(dir, 'host.json'), env: {} });
    expect(config.workers.poolSize).toBe(3);
    expect(config.agent.name).toBe('edge-7');
  });

  it.each([
    ['{\n  "agent": { "name": "x" }\n  "workers": {}\n}', 3, 3, 'expected "," or the end of the object or array'],
    ['{ "agent": { name: "x" } }', 1, 14, 'unexpected character "name" (names and strings need double quotes)'],
    ['{ "a": 1 /* open', 1, 10, 'unterminated /* comment'],
    ['{ "a": "x', 1, 8, 'unterminated string'],
    ['', 1, 1, 'expected a value'],
  ])('JSONC syntax error in %j names line %i, column %i', (text, line, column, what) => {
    const dir = files({ 'bad.json': text });
    const err = configError(() => loadConfig({ path: join(dir, 'bad.json'), env: {} }));
    expect(err.message).toBe(`config file ${join(dir, 'bad.json')}:${line}:${column}: ${what}`);
  });

  it('not JSON, missing file, extends cycle, bad env value', () => {
    const dir = files({ 'bad.json': '{ "agent": ', 'a.json': { extends: 'b.json' }, 'b.json': { extends: 'a.json' }, 'ok.json': {} });
    expect(configError(() => loadConfig({ path: join(dir, 'bad.json'), env: {} })).message).toMatch(/^config file .*bad\.json:1:12: expected a value$/);
    expect(configError(() => loadConfig({ path: join(dir, 'none.json'), env: {} })).message).toMatch(/file not found/);
    expect(configError(() => loadConfig({ path: join(dir, 'a.json'), env: {} })).message).toMatch(/cycle: .*a.json → .*b.json → .*a.json/);
    const missingParent = files({ 'host.json': { extends: 'fleet.json' } });
    expect(configError(() => loadConfig({ path: join(missingParent, 'host.json'), env: {} })).message).toMatch(
      /^cannot read config file .*fleet\.json \(named by "extends" in .*host\.json\): file not found$/,
    );
    expect(configError(() => loadConfig({ path: join(dir, 'ok.json'), env: { SKEIN_POOL_SIZE: 'many' } }).config).message).toMatch(/workers.poolSize \(from SKEIN_POOL_SIZE\)/);
  });
});

describe('published JSON Schema', () => {
  it('docs/config.schema.json is the one generated from the validator (run npm run schema)', () => {
    const published = JSON.parse(readFileSync(join(import.meta.dirname, '../../docs/config.schema.json'), 'utf8'));
    expect(published).toEqual(configJsonSchema());
  });

  it('plugins/skein-plugin.ts is the published copy of the plugin API (run npm run schema)', () => {
    expect(readFileSync(join(import.meta.dirname, '../../plugins/skein-plugin.ts'), 'utf8')).toBe(pluginApiCopy());
  });

  it('docs/config-reference.md lists every key as the schema says (run npm run schema)', () => {
    expect(readFileSync(join(import.meta.dirname, '../../docs/config-reference.md'), 'utf8')).toBe(configReference(CONFIG_SCHEMA));
  });
});
