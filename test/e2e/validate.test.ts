/**
 * `skein validate` means "will start": one table of broken set-ups drives both commands, and
 * each must be refused by both with the same code and a message naming the same key or file
 * (so `ExecStartPre=skein validate` is a real gate). A good set-up passes validate, starts,
 * and validate leaves nothing behind.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { baseConfig, EXAMPLES, runCli, startAgent, stopAll, tempDir } from '../helpers/agent.ts';

afterAll(stopAll);

const ok = async (args: string[], cwd?: string) => {
  const r = await runCli(args, cwd ? { cwd } : {});
  if (r.code !== 0) throw new Error(`skein ${args.join(' ')}: ${r.stderr}`);
};

/** Each case builds its files in `dir` and returns the config to try. */
const CASES: Array<[string, (dir: string) => Promise<Record<string, unknown>> | Record<string, unknown>, string, RegExp]> = [
  ['a routine file that is missing', () => baseConfig({ routines: { echo: { file: 'missing.py' } } }), 'SKEIN_ERR_CONFIG', /config key "routines\.echo\.file": cannot read .*missing\.py/],
  [
    'a routine file that is a folder',
    (dir) => (mkdirSync(join(dir, 'code.py')), baseConfig({ routines: { echo: { file: 'code.py' } } })),
    'SKEIN_ERR_CONFIG',
    /config key "routines\.echo\.file": cannot read .*code\.py/,
  ],
  ['a function the file does not define', () => baseConfig({ routines: { nope: { file: EXAMPLES, function: 'no_such_function' } } }), 'SKEIN_ERR_CONFIG', /routine "nope".*no_such_function/],
  [
    'a routine with a syntax error',
    (dir) => (writeFileSync(join(dir, 'broken.py'), 'def f(:\n  pass\n'), baseConfig({ routines: { f: { file: 'broken.py' } } })),
    'SKEIN_ERR_CONFIG',
    /routine "f" failed to load: SyntaxError/,
  ],
  ['a Python that does not run', () => baseConfig({ workers: { poolSize: 1, python: '/nonexistent/python3' } }), 'SKEIN_ERR_CONFIG', /config key "workers\.python": cannot run \/nonexistent\/python3/],
  ['a plugin file that is missing', () => baseConfig({ plugins: { enabled: [{ name: 'office-hours' }] } }), 'SKEIN_ERR_PLUGIN_LOAD', /plugin "office-hours": no file .*office-hours/],
  [
    'an unsigned plugin where signatures are required',
    async (dir) => {
      await ok(['keygen', '--out', join(dir, 'k')]);
      await ok(['plugin', 'new', 'gate', '--kind', 'authz', '--dir', join(dir, 'plugins')]);
      return baseConfig({ plugins: { dir: 'plugins', requireSignature: true, trustedKeys: [readFileSync(join(dir, 'k.pub'), 'utf8').trim()], enabled: [{ name: 'gate' }] } });
    },
    'SKEIN_ERR_PLUGIN_LOAD',
    /plugin "gate": signature check failed \(SKEIN_ERR_SIG_MISSING\)/,
  ],
  [
    'strict mode and a file shadowing a built-in plugin, unsigned',
    (dir) => {
      mkdirSync(join(dir, 'plugins'));
      writeFileSync(
        join(dir, 'plugins/routine-policy.ts'),
        "import { definePlugin } from './skein-plugin.ts';\nexport default definePlugin({ name: 'routine-policy', version: '9', setup: () => ({ authorize: () => ({ decision: 'abstain' as const }) }) });\n",
      );
      return baseConfig({ security: { strict: true }, plugins: { enabled: [{ name: 'routine-policy' }] } });
    },
    'SKEIN_ERR_STRICT',
    /plugins\.requireSignature: plugin "routine-policy" is loaded from .*routine-policy\.ts but signatures are not required/,
  ],
  [
    'a TLS key that does not belong to the certificate',
    async (dir) => {
      await ok(['pki', 'init', '--dir', join(dir, 'pki')]);
      for (const n of ['a', 'b']) await ok(['pki', 'issue', '--dir', join(dir, 'pki'), '--name', n, '--kind', 'agent']);
      return baseConfig({ tls: { cert: 'pki/agent-a.crt', key: 'pki/agent-b.key', ca: 'pki/ca.crt' } });
    },
    'SKEIN_ERR_CONFIG',
    /tls\.key.*agent-b\.key.*does not belong to the certificate/,
  ],
  [
    'a malformed allow pattern',
    () => baseConfig({ authorization: { allow: [{ identities: ['spiffe://skein.local/a**b'], routines: ['*'] }] } }),
    'SKEIN_ERR_CONFIG',
    /authorization\.allow\[0\]\.identities\[0\]/,
  ],
  [
    'an endorsement of another key',
    async (dir) => {
      for (const n of ['root', 'agent', 'other']) await ok(['keygen', '--out', join(dir, n)]);
      await ok([
        'key',
        'endorse',
        '--root',
        join(dir, 'root'),
        '--agent-pub',
        join(dir, 'other.pub'),
        '--spiffe-id',
        'spiffe://skein.local/agent/test',
        '--not-after',
        '2030-01-01T00:00:00Z',
        '--out',
        join(dir, 'e'),
      ]);
      return baseConfig({
        discovery: { enabled: true, fleet: 'f', signingKey: 'agent', endorsement: 'e', rootKeys: [readFileSync(join(dir, 'root.pub'), 'utf8').trim()], groups: ['239.255.77.80:47000'] },
      });
    },
    'SKEIN_ERR_CONFIG',
    /discovery\.endorsement .* endorses key [0-9a-f]{16}, not the signing key [0-9a-f]{16} \(discovery\.signingKey\)/,
  ],
  [
    'a state folder through a regular file (the development PKI cannot be made)',
    (dir) => (writeFileSync(join(dir, 'file'), 'x'), baseConfig({ agent: { name: 'test', listen: '127.0.0.1:0', stateDir: 'file/state' } })),
    'SKEIN_ERR_CONFIG',
    /cannot create the folder .*file\/state\S* \(agent\.stateDir is ".*file\/state"\): a component of the path is not a folder \(ENOTDIR\)/,
  ],
];

describe('what validate passes, the agent starts; what the agent refuses, validate refuses', () => {
  it.each(CASES)('%s', async (_name, setup, code, message) => {
    const dir = tempDir();
    const config = await setup(dir);
    const path = join(dir, 'agent.config.json');
    writeFileSync(path, JSON.stringify(config));
    chmodSync(path, 0o600);
    const results = { agent: await runCli(['agent', '--config', path], { cwd: dir }), validate: await runCli(['validate', '--config', path], { cwd: dir }) };
    for (const [command, r] of Object.entries(results)) {
      expect(r.code, `${command}: ${r.stderr}`).toBe(2);
      expect(r.stderr, command).toMatch(new RegExp(`^error \\[${code}\\]: `, 'm'));
      expect(r.stderr, command).toMatch(message);
      expect(r.stderr, command).not.toMatch(/\n\s+at /);
    }
  });

  it('a good set-up passes validate (what it checked is printed), leaves nothing behind, and starts', async () => {
    const dir = tempDir();
    const config = baseConfig({ agent: { name: 'test', listen: '127.0.0.1:0', stateDir: 'state' } });
    const path = join(dir, 'agent.config.json');
    writeFileSync(path, JSON.stringify(config));
    const r = await runCli(['validate', '--config', path], { cwd: dir });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).checked).toMatchObject({ config: true, tls: 'development PKI', routines: 4, workers: 1, plugins: [], discovery: false });
    expect(existsSync(join(dir, 'state'))).toBe(false);
    expect(readdirSync(dir)).toEqual(['agent.config.json']);
    const agent = await startAgent({ dir, config });
    expect(await agent.client().dispatch('add', { args: [1, 2] })).toBe(3);
    await agent.stop();
  });

  it('--config-only checks the file alone: a missing routine file passes it', async () => {
    const dir = tempDir();
    const path = join(dir, 'agent.config.json');
    writeFileSync(path, JSON.stringify(baseConfig({ routines: { echo: { file: 'missing.py' } } })));
    const r = await runCli(['validate', '--config-only', '--config', path], { cwd: dir });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).checked).toEqual({ config: true });
  });
});
