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
    [`/** export default definePlugin({ name, version, setup }) */\nimport { definePlugin } from './skein-plugin.ts';\nconst p = definePlugin({ version: '4.0.0', name: 'p', setup });\nexport default p;`, { name: 'p', version: '4.0.0' }],
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
    [['new', 'ok', '--dir', ''], /--dir/],
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
  it('scaffolds the plugin, its test and the API copy, and refuses to overwrite', async () => {
    const dir = join(tempDir(), 'plugins');
    const t = memoryIo();
    expect(await runPlugin(['new', 'office-hours', '--dir', dir], t.io)).toBe(0);
    const plugin = readFileSync(join(dir, 'office-hours.ts'), 'utf8');
    expect(plugin).toBe(pluginTemplate('office-hours'));
    expect(plugin).toContain("from './skein-plugin.ts'");
    expect(plugin).toMatch(/authenticate\(req\)/);
    expect(plugin).toMatch(/authorize\(req\)/);
    expect(readFileSync(join(dir, 'office-hours.test.ts'), 'utf8')).toContain("import plugin from './office-hours.ts'");
    expect(readFileSync(join(dir, 'skein-plugin.ts'), 'utf8')).toBe(pluginApiCopy());
    expect(t.text()).toContain('(created)');
    // sign can read what new wrote.
    expect(readPluginMeta(plugin)).toEqual({ name: 'office-hours', version: '0.1.0' });

    writeFileSync(join(dir, 'office-hours.ts'), '// my edits');
    const err = await expectCode(() => runPlugin(['new', 'office-hours', '--dir', dir], memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(err.message).toMatch(/refusing to overwrite/);
    expect(readFileSync(join(dir, 'office-hours.ts'), 'utf8')).toBe('// my edits');
  });

  it('refuses when only the test file exists, writing nothing', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'x.test.ts'), '// mine');
    await expectCode(() => runPlugin(['new', 'x', '--dir', dir], memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(existsSync(join(dir, 'x.ts'))).toBe(false);
    expect(existsSync(join(dir, 'skein-plugin.ts'))).toBe(false);
  });

  it('refreshes a stale skein-plugin.ts and leaves a current one alone', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'skein-plugin.ts'), '// an older API');
    const t = memoryIo();
    await runPlugin(['new', 'one', '--dir', dir], t.io);
    expect(readFileSync(join(dir, 'skein-plugin.ts'), 'utf8')).toBe(pluginApiCopy());
    expect(t.text()).toContain('(updated');
    const t2 = memoryIo();
    await runPlugin(['new', 'two', '--dir', dir], t2.io);
    expect(t2.text()).toContain('(up to date)');
  });

  it('scaffolds files that typecheck and whose own tests pass', async () => {
    const dir = tempDir('skein-scaffold-');
    await runPlugin(['new', 'office-hours', '--dir', dir], memoryIo().io);
    // Resolve vitest and @types/node from this repository.
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    const { compilerOptions } = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8'));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...compilerOptions, types: ['node'] }, include: ['*.ts'] }));
    writeFileSync(join(dir, 'vitest.config.mjs'), "export default { test: { include: ['*.test.ts'] } };\n");

    const tsc = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')]).catch((e) => e);
    expect(`${tsc.stdout ?? ''}${tsc.stderr ?? ''}`).toBe('');

    const vitest = await run(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', '--root', dir, '--config', join(dir, 'vitest.config.mjs')], {
      cwd: dir,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    }).catch((e) => e);
    const output = `${vitest.stdout ?? ''}${vitest.stderr ?? ''}`;
    expect(vitest.code ?? 0, output).toBe(0);
    expect(output).toMatch(/Tests\s+\d+ passed \(\d+\)/);
  }, 120_000);
});
