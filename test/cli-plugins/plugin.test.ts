import { execFile } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKeygen } from '../../agent/cli/keygen.ts';
import { pluginTemplate, readPluginMeta, runPlugin } from '../../agent/cli/plugin.ts';
import { pluginApiCopy } from '../../agent/plugin-host/publish.ts';
import { verifyFile, trustStore } from '../../signing/index.ts';
import { expectCode, memoryIo, removeTempDirs, tempDir } from './io.ts';

const ROOT = join(import.meta.dirname, '../..');
const run = promisify(execFile);

afterAll(removeTempDirs);

/** A key pair made by skein keygen: { key, pub } where pub is the ed25519:… line. */
async function keygen(dir: string, name = 'release.key'): Promise<{ key: string; pub: string }> {
  const key = join(dir, name);
  await runKeygen(['--out', key], memoryIo().io);
  return { key, pub: readFileSync(`${key}.pub`, 'utf8').trim() };
}

const PLUGIN_SOURCE = `import { definePlugin } from './skein-plugin.ts';
export default definePlugin({
  name: 'office-hours',
  version: '1.2.0',
  setup: () => ({ authorize: () => ({ decision: 'abstain' as const }) }),
});
`;

describe('readPluginMeta', () => {
  it.each([
    [PLUGIN_SOURCE, { name: 'office-hours', version: '1.2.0' }],
    [`export default definePlugin<{ a: Record<string, string> }>({ name: "x", version: "2.0.0-rc.1", setup })`, { name: 'x', version: '2.0.0-rc.1' }],
    ['export default definePlugin({ name: `t`, version: `3.1`, setup })', { name: 't', version: '3.1' }],
    // The import of definePlugin is not the call; a doc comment mentioning it has no literal.
    [
      `/** export default definePlugin({ name, version, setup }) */\nimport { definePlugin } from './skein-plugin.ts';\nconst p = definePlugin({ version: '4.0.0', name: 'p', setup });\nexport default p;`,
      { name: 'p', version: '4.0.0' },
    ],
    ["export default { name: 'plain', version: '0.0.1', setup() { return {}; } };", { name: 'plain', version: '0.0.1' }],
  ])('reads literals without running the file (%#)', (source, expected) => {
    expect(readPluginMeta(source)).toEqual(expected);
  });

  it.each([
    ["export default definePlugin({ name: 'x', version: VERSION, setup })"],
    ['export default definePlugin({ name: `x`, version: `${major}.0`, setup })'],
    ['const version = "1.0.0"; // no definePlugin call, no default export object'],
  ])('finds no version in %j', (source) => {
    expect(readPluginMeta(source).version).toBeUndefined();
  });
});

describe('skein plugin sign / verify', () => {
  let dir: string;
  let release: { key: string; pub: string };
  let file: string;
  beforeAll(async () => {
    dir = tempDir();
    release = await keygen(dir);
    file = join(dir, 'office-hours.ts');
    writeFileSync(file, PLUGIN_SOURCE);
  });

  it('signs with the name from the file name and the version from the source', async () => {
    const t = memoryIo();
    expect(await runPlugin(['sign', file, '--key', release.key], t.io)).toBe(0);
    const sig = JSON.parse(readFileSync(`${file}.sig`, 'utf8'));
    expect(sig).toMatchObject({ v: 1, alg: 'ed25519', name: 'office-hours', version: '1.2.0' });
    expect(sig.sha256).toMatch(/^[0-9a-f]{64}$/);
    for (const fact of [sig.keyId, sig.sha256, 'office-hours', '1.2.0']) expect(t.text()).toContain(fact);
    expect(t.err).toEqual([]);
    // What the agent's loader checks.
    expect(verifyFile(file, { trustedKeys: trustStore([release.pub]), expectedName: 'office-hours' })).toMatchObject({ name: 'office-hours', version: '1.2.0' });
  });

  it('verifies: exit 0 and prints what verified', async () => {
    await runPlugin(['sign', file, '--key', release.key], memoryIo().io);
    const t = memoryIo();
    expect(await runPlugin(['verify', file, '--trusted-key', release.pub], t.io)).toBe(0);
    expect(t.text()).toMatch(/verified .*office-hours\.ts: plugin "office-hours" version 1\.2\.0/);
    // A .pub path works too, and any of several keys may be the signer.
    const other = await keygen(tempDir());
    expect(await runPlugin(['verify', file, '--trusted-key', other.pub, '--trusted-key', `${release.key}.pub`], memoryIo().io)).toBe(0);
  });

  it('--version and --name override, with warnings when they disagree with the source', async () => {
    const d = tempDir();
    const f = join(d, 'office-hours.ts');
    writeFileSync(f, PLUGIN_SOURCE);
    const t = memoryIo();
    expect(await runPlugin(['sign', f, '--key', release.key, '--version', '9.9.9', '--name', 'other'], t.io)).toBe(0);
    expect(JSON.parse(readFileSync(`${f}.sig`, 'utf8'))).toMatchObject({ name: 'other', version: '9.9.9' });
    const warnings = t.err.join('\n');
    expect(warnings).toMatch(/declares version '1\.2\.0'/);
    expect(warnings).toMatch(/declares name 'office-hours'/);
    expect(warnings).toMatch(/rename office-hours\.ts/);
    // verify expects the file's name by default, as the agent does.
    const v = memoryIo();
    expect(await runPlugin(['verify', f, '--trusted-key', release.pub], v.io)).toBe(2);
    expect(v.err.join('\n')).toMatch(/^error \[SKEIN_ERR_SIG_NAME_MISMATCH\]/);
    expect(await runPlugin(['verify', f, '--trusted-key', release.pub, '--name', 'other'], memoryIo().io)).toBe(0);
  });

  it('reports a tampered file as SKEIN_ERR_SIG_TAMPERED, exit 2', async () => {
    const d = tempDir();
    const f = join(d, 'office-hours.ts');
    writeFileSync(f, PLUGIN_SOURCE);
    await runPlugin(['sign', f, '--key', release.key], memoryIo().io);
    appendFileSync(f, "\nexport const backdoor = 'x';\n");
    const t = memoryIo();
    expect(await runPlugin(['verify', f, '--trusted-key', release.pub], t.io)).toBe(2);
    expect(t.err.join('\n')).toMatch(/^error \[SKEIN_ERR_SIG_TAMPERED\]: .*modified after signing/);
    expect(t.out).toEqual([]);
  });

  it('reports a signature by a key that is not trusted as SKEIN_ERR_SIG_UNKNOWN_KEY, exit 2', async () => {
    await runPlugin(['sign', file, '--key', release.key], memoryIo().io);
    const stranger = await keygen(tempDir());
    const t = memoryIo();
    expect(await runPlugin(['verify', file, '--trusted-key', stranger.pub], t.io)).toBe(2);
    expect(t.err.join('\n')).toMatch(/^error \[SKEIN_ERR_SIG_UNKNOWN_KEY\]/);
  });

  it('reports an edited .sig as SKEIN_ERR_SIG_INVALID and a missing one as SKEIN_ERR_SIG_MISSING', async () => {
    const d = tempDir();
    const f = join(d, 'office-hours.ts');
    writeFileSync(f, PLUGIN_SOURCE);
    const t0 = memoryIo();
    expect(await runPlugin(['verify', f, '--trusted-key', release.pub], t0.io)).toBe(2);
    expect(t0.err.join('\n')).toMatch(/SKEIN_ERR_SIG_MISSING/);

    await runPlugin(['sign', f, '--key', release.key], memoryIo().io);
    const sig = JSON.parse(readFileSync(`${f}.sig`, 'utf8'));
    writeFileSync(`${f}.sig`, JSON.stringify({ ...sig, version: '6.6.6' }));
    const t1 = memoryIo();
    expect(await runPlugin(['verify', f, '--trusted-key', release.pub], t1.io)).toBe(2);
    expect(t1.err.join('\n')).toMatch(/SKEIN_ERR_SIG_INVALID/);
  });

  it('requires --version when the source has no version literal', async () => {
    const d = tempDir();
    const f = join(d, 'computed.ts');
    writeFileSync(f, "import { definePlugin } from './skein-plugin.ts';\nconst VERSION = '1.0.0';\nexport default definePlugin({ name: 'computed', version: VERSION, setup: () => ({}) });\n");
    const err = await expectCode(() => runPlugin(['sign', f, '--key', release.key], memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(err.message).toMatch(/--version/);
    expect(existsSync(`${f}.sig`)).toBe(false);
    expect(await runPlugin(['sign', f, '--key', release.key, '--version', '1.0.0'], memoryIo().io)).toBe(0);
  });

  it('refuses a private key readable by others (SKEIN_ERR_SIG_KEY_PERMISSIONS)', async () => {
    const d = tempDir();
    const k = await keygen(d, 'loose.key');
    const { chmodSync } = await import('node:fs');
    chmodSync(k.key, 0o644);
    await expectCode(() => runPlugin(['sign', file, '--key', k.key], memoryIo().io), 'SKEIN_ERR_SIG_KEY_PERMISSIONS');
  });

  it.each([
    [[], /missing plugin command/],
    [['publish'], /unknown plugin command/],
    [['sign'], /exactly one FILE/],
    [['sign', '/nonexistent/x.ts', '--key', 'k'], /cannot read/],
    [['sign', '@file', '--key', 'k'], /cannot read/],
    [['sign', 'FILE', '--version', '1'], /--key/],
    [['sign', 'FILE', '--key', 'KEY', '--name', 'Bad_Name'], /--name/],
    [['sign', 'FILE', '--key', 'KEY', '--version', 'a\nb'], /version/],
    [['verify', 'FILE'], /--trusted-key/],
    [['verify', 'FILE', '--trusted'], /trusted/],
    [['new'], /NAME/],
    [['new', 'Bad'], /invalid/],
    [['new', '-x'], /-x/],
    [['new', 'a', 'b'], /exactly one/],
    [['new', 'ok', '--kind', 'authn', '--dir', ''], /--dir/],
  ])('%j is a usage error', async (argv, message) => {
    const args = argv.map((a) => (a === 'FILE' ? file : a === 'KEY' ? release.key : a));
    const err = await expectCode(() => runPlugin(args, memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(err.message).toMatch(message);
  });

  it.each([[['--help']], [['sign', '--help']], [['verify', '-h']], [['new', '--help']]])('prints usage for %j', async (argv) => {
    const t = memoryIo();
    expect(await runPlugin(argv, t.io)).toBe(0);
    expect(t.text()).toMatch(/^Usage: skein plugin/);
  });
});

describe('skein plugin new', () => {
  it.each([
    ['authn', /authenticate\(req\)/, /authorize\(req\)/],
    ['authz', /authorize\(req\)/, /authenticate\(req\)/],
  ] as const)('--kind %s scaffolds that kind of hook, its test, the API copy and an editor set-up; refuses to overwrite', async (kind, has, hasNot) => {
    const dir = join(tempDir(), 'plugins');
    const t = memoryIo();
    expect(await runPlugin(['new', 'office-hours', '--kind', kind, '--dir', dir], t.io)).toBe(0);
    const plugin = readFileSync(join(dir, 'office-hours.ts'), 'utf8');
    expect(plugin).toBe(pluginTemplate('office-hours', kind));
    expect(plugin).toContain("from './skein-plugin.ts'");
    expect(plugin).toMatch(has);
    expect(plugin).not.toMatch(hasNot);
    expect(plugin).not.toContain('example-');
    expect(readFileSync(join(dir, 'office-hours.test.ts'), 'utf8')).toContain("import plugin from './office-hours.ts'");
    expect(readFileSync(join(dir, 'skein-plugin.ts'), 'utf8')).toBe(pluginApiCopy());
    for (const f of ['skein-plugin-testing.ts', 'package.json', 'tsconfig.json']) expect(existsSync(join(dir, f))).toBe(true);
    expect(t.text()).toContain('(created)');
    expect(t.text()).toContain(`skein plugin test --dir ${dir}`);
    // sign can read what new wrote.
    expect(readPluginMeta(plugin)).toEqual({ name: 'office-hours', version: '0.1.0' });

    writeFileSync(join(dir, 'office-hours.ts'), '// my edits');
    const err = await expectCode(() => runPlugin(['new', 'office-hours', '--kind', kind, '--dir', dir], memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(err.message).toMatch(/refusing to overwrite/);
    expect(readFileSync(join(dir, 'office-hours.ts'), 'utf8')).toBe('// my edits');
  });

  it('requires --kind, naming the two kinds', async () => {
    const dir = tempDir();
    const err = await expectCode(() => runPlugin(['new', 'x', '--dir', dir], memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(err.message).toMatch(/--kind must be authn \(an authentication hook.*\) or authz \(an authorization hook/);
    await expectCode(() => runPlugin(['new', 'x', '--kind', 'both', '--dir', dir], memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(existsSync(join(dir, 'x.ts'))).toBe(false);
  });

  it('refuses when only the test file exists, writing nothing', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'x.test.ts'), '// mine');
    await expectCode(() => runPlugin(['new', 'x', '--kind', 'authn', '--dir', dir], memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(existsSync(join(dir, 'x.ts'))).toBe(false);
    expect(existsSync(join(dir, 'skein-plugin.ts'))).toBe(false);
  });

  it('refreshes a stale skein-plugin.ts, leaves a current one alone, and never replaces the editor set-up', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'skein-plugin.ts'), '// an older API');
    writeFileSync(join(dir, 'tsconfig.json'), '{ "mine": true }');
    const t = memoryIo();
    await runPlugin(['new', 'one', '--kind', 'authz', '--dir', dir], t.io);
    expect(readFileSync(join(dir, 'skein-plugin.ts'), 'utf8')).toBe(pluginApiCopy());
    expect(t.text()).toContain('(updated');
    expect(t.text()).toMatch(/tsconfig\.json \(kept: yours\)/);
    expect(readFileSync(join(dir, 'tsconfig.json'), 'utf8')).toBe('{ "mine": true }');
    const t2 = memoryIo();
    await runPlugin(['new', 'two', '--kind', 'authn', '--dir', dir], t2.io);
    expect(t2.text()).toContain('skein-plugin.ts (up to date)');
  });

  it('scaffolds of both kinds typecheck with the tsconfig.json written beside them', async () => {
    const dir = tempDir('skein-scaffold-');
    await runPlugin(['new', 'office-hours', '--kind', 'authz', '--dir', dir], memoryIo().io);
    await runPlugin(['new', 'api-keys', '--kind', 'authn', '--dir', dir], memoryIo().io);
    // What `npm install` in the folder would bring (@types/bun), taken from this repository.
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    const tsc = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')]).catch((e) => e);
    expect(`${tsc.stdout ?? ''}${tsc.stderr ?? ''}`).toBe('');
  }, 120_000);

  it("skein plugin test runs the scaffolds' own tests with the runner inside the binary: nothing installed, no node_modules", async () => {
    const dir = tempDir('skein-scaffold-');
    const binary = join(ROOT, 'dist/skein');
    for (const [name, kind] of [
      ['api-keys', 'authn'],
      ['office-hours', 'authz'],
    ]) {
      const made = await run(binary, ['plugin', 'new', name!, '--kind', kind!, '--dir', dir]);
      expect(made.stdout).toContain(`created`);
    }
    expect(existsSync(join(dir, 'node_modules'))).toBe(false);
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, NO_COLOR: '1' };
    const ok = await run(binary, ['plugin', 'test', '--dir', dir], { env }).catch((e) => e);
    const output = `${ok.stdout ?? ''}${ok.stderr ?? ''}`;
    expect(ok.code ?? 0, output).toBe(0);
    expect(output).toMatch(/\b(1\d|[2-9]\d) pass\b/);
    expect(output).toMatch(/\b0 fail\b/);
    // A broken hook fails the run, with a non-zero exit.
    writeFileSync(join(dir, 'office-hours.ts'), readFileSync(join(dir, 'office-hours.ts'), 'utf8').replace("decision: 'deny'", "decision: 'allow'"));
    const broken = await run(binary, ['plugin', 'test', '--dir', dir, 'office-hours'], { env }).catch((e) => e);
    expect(broken.code).toBe(1);
    expect(`${broken.stdout ?? ''}${broken.stderr ?? ''}`).toMatch(/\b[1-9]\d* fail\b/);
  }, 120_000);
});
