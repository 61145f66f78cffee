/**
 * `skein plugin new|sign|verify`: scaffolds a plugin, signs it for plugins.requireSignature,
 * and checks a signature the way the agent's loader does.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { isSigningError, readPrivateKey, signFile, trustStore, verifyFile } from '../../signing/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { PLUGIN_NAME_HINT, PLUGIN_NAME_PATTERN } from '../../common/names/index.ts';
import { writeFileAtomic, writeFileExclusive } from '../../common/fs/index.ts';
import { PLUGIN_API_FILE, pluginApiCopy } from '../plugin-host/publish.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';
// Bun's text attribute yields each template's source; TypeScript type-checks them as modules.
// @ts-ignore a default import of a module that exports a plugin, here read as text
import AUTHN from './plugin-templates/example-authn.ts' with { type: 'text' };
// @ts-ignore as above
import AUTHN_TEST from './plugin-templates/example-authn.test.ts' with { type: 'text' };
// @ts-ignore as above
import AUTHZ from './plugin-templates/example-authz.ts' with { type: 'text' };
// @ts-ignore as above
import AUTHZ_TEST from './plugin-templates/example-authz.test.ts' with { type: 'text' };
// @ts-ignore as above
import TESTING from './plugin-templates/skein-plugin-testing.ts' with { type: 'text' };
import PACKAGE from './plugin-templates/package.json' with { type: 'text' };
import TSCONFIG from './plugin-templates/tsconfig.json' with { type: 'text' };

// What signing/ accepts in a .sig: 1–64 printable characters.
const PLUGIN_VERSION = /^[^\x00-\x1f\x7f]{1,64}$/;
const DEFAULT_DIR = 'plugins';

export const PLUGIN_USAGE = `Usage: skein plugin new NAME --kind authn|authz [--dir D]
       skein plugin test [--dir D] [FILTER]...
       skein plugin sign FILE --key KEY [--name N] [--version V]
       skein plugin verify FILE --trusted-key KEY [--trusted-key KEY]... [--name N]

Writes, tests, signs and checks authentication and authorization plugins (docs/plugins.md).

Commands:
  new     scaffold D/NAME.ts and its test D/NAME.test.ts for one kind of hook
  test    run the plugins' tests with the test runner inside this binary
  sign    write FILE.sig: an Ed25519 signature over FILE's SHA-256, plugin name and version
  verify  check FILE.sig as the agent does when plugins.requireSignature is true

Run "skein plugin COMMAND --help" for the options of each command.`;

export const PLUGIN_NEW_USAGE = `Usage: skein plugin new NAME --kind authn|authz [--dir D]

Scaffolds a plugin to adapt, with an options validator and a test:
  --kind authn  an authenticate hook: turns a credential into an identity (the example
                accepts an API key in the x-api-key header as key:<label>)
  --kind authz  an authorize hook: decides what an identity may run (the example keeps
                per-routine allow lists)

  NAME     plugin name: 1-64 of a-z 0-9 "-", starting with a letter or digit
  --dir D  plugins folder (default ${DEFAULT_DIR}, created when missing)

Writes D/NAME.ts and D/NAME.test.ts (never overwrites them); D/${PLUGIN_API_FILE} (the plugin
API the plugin imports) and D/skein-plugin-testing.ts (test helpers) when missing or
different from this binary's; D/package.json and D/tsconfig.json, so an editor resolves the
types, when missing. Run the test with: skein plugin test --dir D`;

export const PLUGIN_TEST_USAGE = `Usage: skein plugin test [--dir D] [FILTER]...

Runs the *.test.ts files of the plugins folder D (default ${DEFAULT_DIR}) with the test runner
built into this binary (Bun's, imported as "bun:test"): nothing to install. FILTER limits
the run to test files whose path contains it. Exit code: 0 when every test passed.`;

export const PLUGIN_SIGN_USAGE = `Usage: skein plugin sign FILE --key KEY [--name N] [--version V]

Signs FILE with the Ed25519 private key KEY (skein keygen) and writes FILE.sig. The
signature covers FILE's SHA-256, the plugin name and the version: any edit to FILE, or
loading it under another name, makes the agent refuse it.

  --key KEY      private key file (mode 0600)
  --name N       plugin name (default: FILE's base name without extension, which is the
                 name the agent loads it by)
  --version V    version to sign (default: the version: '…' literal of FILE's
                 definePlugin call, read without running FILE)`;

export const PLUGIN_VERIFY_USAGE = `Usage: skein plugin verify FILE --trusted-key KEY [--trusted-key KEY]... [--name N]

Checks FILE.sig against FILE and the trusted keys, as the agent does with
plugins.requireSignature. Exit 0 when it verifies; otherwise prints the signing error
code (SKEIN_ERR_SIG_MISSING, _TAMPERED, _UNKNOWN_KEY, _INVALID, _MALFORMED,
_NAME_MISMATCH) and exits 2.

  --trusted-key KEY  repeatable: "ed25519:<base64url>" (as in plugins.trustedKeys), a PEM
                     public key, or the path of a file holding one (e.g. release.key.pub)
  --name N           plugin name the signature must carry (default: FILE's base name
                     without extension, as the agent expects)`;

/**
 * @example
 *   await runPlugin(['sign', 'plugins/office-hours.ts', '--key', 'release.key'], processIo);
 */
export async function runPlugin(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    io.out(PLUGIN_USAGE);
    return 0;
  }
  if (sub === 'new') return runNew(rest, io);
  if (sub === 'test') return runTest(rest, io);
  if (sub === 'sign') return runSign(rest, io);
  if (sub === 'verify') return runVerify(rest, io);
  throw new SkeinError(
    'SKEIN_ERR_USAGE',
    sub === undefined ? 'missing plugin command: new, test, sign or verify (see skein plugin --help)' : `unknown plugin command "${sub}": new, test, sign or verify (see skein plugin --help)`,
  );
}

// ---------------------------------------------------------------------------------------------
// sign / verify
// ---------------------------------------------------------------------------------------------

/** The single FILE positional, which must be a readable regular file. */
function fileArg(positionals: string[]): string {
  if (positionals.length !== 1) throw new SkeinError('SKEIN_ERR_USAGE', `expected exactly one FILE, got ${positionals.length} (see --help)`);
  const file = positionals[0]!;
  let isFile: boolean;
  try {
    isFile = statSync(file).isFile();
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `cannot read ${file}: ${(err as Error).message}`);
  }
  if (!isFile) throw new SkeinError('SKEIN_ERR_USAGE', `${file} is not a regular file`);
  return file;
}

/** The name the agent loads FILE by: its base name without extension. */
function nameFromFile(file: string): string {
  return basename(file, extname(file));
}

function pluginName(flag: string | undefined, file: string): string {
  const name = flag ?? nameFromFile(file);
  if (!PLUGIN_NAME_PATTERN.test(name)) {
    const where = flag === undefined ? `the file name of ${file} gives the plugin name ${JSON.stringify(name)}, which` : `--name ${JSON.stringify(name)}`;
    throw new SkeinError('SKEIN_ERR_USAGE', `${where} is not ${PLUGIN_NAME_HINT} (as in plugins.enabled[].name)${flag === undefined ? ': pass --name' : ''}`);
  }
  return name;
}

export interface PluginSourceMeta {
  name?: string;
  version?: string;
}

// Where the plugin definition starts, best first: the documented form, any definePlugin call
// (e.g. assigned to a const and exported later), a plain object default export (.mjs/.js).
const DEFINITION_STARTS = [/export\s+default\s+definePlugin\s*(?:<[^()]*?>)?\s*\(/, /\bdefinePlugin\s*(?:<[^()]*?>)?\s*\(/g, /export\s+default\s*\{/];

function stringField(text: string, key: string): string | undefined {
  // A single-line string literal: '…', "…" or `…` without escapes or interpolation.
  const m = new RegExp(`\\b${key}\\s*:\\s*(?:'([^'\\\\\\n]*)'|"([^"\\\\\\n]*)"|\`([^\`\\\\$\\n]*)\`)`).exec(text);
  return m ? (m[1] ?? m[2] ?? m[3]) : undefined;
}

/**
 * Reads `name` and `version` from a plugin's source text without running it: the first
 * `name: '…'` / `version: '…'` literals after `definePlugin(`. Either is undefined when no
 * plain literal is found (a computed version must be passed with --version).
 *
 * @example
 *   readPluginMeta("export default definePlugin({ name: 'x', version: '1.2.0', setup })") // { name: 'x', version: '1.2.0' }
 */
export function readPluginMeta(source: string): PluginSourceMeta {
  for (const start of DEFINITION_STARTS) {
    const starts = start.global ? [...source.matchAll(start)].map((m) => m.index) : [start.exec(source)?.index].filter((i) => i !== undefined);
    for (const index of starts) {
      const rest = source.slice(index);
      const version = stringField(rest, 'version');
      if (version !== undefined) {
        const name = stringField(rest, 'name');
        return name === undefined ? { version } : { name, version };
      }
    }
  }
  return {};
}

async function runSign(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      key: { type: 'string' },
      name: { type: 'string' },
      version: { type: 'string' },
    },
    true,
  );
  if (values.help) {
    io.out(PLUGIN_SIGN_USAGE);
    return 0;
  }
  const file = fileArg(positionals);
  if (values.key === undefined || values.key === '') throw new SkeinError('SKEIN_ERR_USAGE', '--key KEY is required: the private key from skein keygen');
  const name = pluginName(values.name, file);
  const meta = readPluginMeta(readFileSync(file, 'utf8'));

  let version = values.version;
  if (version === undefined) {
    if (meta.version === undefined) {
      throw new SkeinError('SKEIN_ERR_USAGE', `cannot read a version: '…' literal from the definePlugin call in ${file}: pass --version V`);
    }
    version = meta.version;
  } else if (meta.version !== undefined && meta.version !== version) {
    io.err(`warning: signing version ${version}, but ${file} declares version '${meta.version}'`);
  }
  if (!PLUGIN_VERSION.test(version)) {
    throw new SkeinError('SKEIN_ERR_USAGE', `version ${JSON.stringify(version)} must be 1-64 printable characters`);
  }
  if (meta.name !== undefined && meta.name !== name) {
    // The loader refuses a default export whose name differs from the name it is enabled as.
    io.err(`warning: ${file} declares name '${meta.name}', but is signed as "${name}": the agent refuses a plugin whose declared name differs from the one it is enabled as`);
  }
  if (values.name !== undefined && values.name !== nameFromFile(file)) {
    io.err(`warning: the agent loads plugin "${name}" from ${name}.ts, .mjs or .js, and checks the signature carries that name: rename ${basename(file)} before deploying it`);
  }

  const key = readPrivateKey(values.key);
  const sig = signFile(file, { name, version }, key);
  io.out(
    [
      `signed ${file} as plugin "${sig.name}" version ${sig.version}`,
      `  key id     ${sig.keyId}`,
      `  sha256     ${sig.sha256}`,
      `  name       ${sig.name}`,
      `  version    ${sig.version}`,
      `  signature  ${file}.sig`,
      `ship ${file} and ${file}.sig together; agents verify them when plugins.requireSignature is true`,
    ].join('\n'),
  );
  return 0;
}

async function runVerify(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      'trusted-key': { type: 'string', multiple: true },
      name: { type: 'string' },
    },
    true,
  );
  if (values.help) {
    io.out(PLUGIN_VERIFY_USAGE);
    return 0;
  }
  const file = fileArg(positionals);
  const keys = values['trusted-key'] ?? [];
  if (keys.length === 0) throw new SkeinError('SKEIN_ERR_USAGE', '--trusted-key KEY is required (repeatable): a key from plugins.trustedKeys');
  const expectedName = pluginName(values.name, file);
  // A key that cannot be parsed is SKEIN_ERR_SIG_KEY_INVALID (exit 2) through main.
  const trustedKeys = trustStore(keys);
  try {
    const ok = verifyFile(file, { trustedKeys, expectedName });
    io.out([`verified ${file}: plugin "${ok.name}" version ${ok.version}`, `  key id   ${ok.keyId}`, `  sha256   ${ok.sha256}`].join('\n'));
    return 0;
  } catch (err) {
    // Every rejection is exit 2 here, as it is for the agent (which will not start): the
    // table's exit 1 for some signing codes is about runtime uses (advertisements).
    if (!isSigningError(err)) throw err;
    io.err(`error [${err.code}]: ${err.message}`);
    return 2;
  }
}

// ---------------------------------------------------------------------------------------------
// new
// ---------------------------------------------------------------------------------------------

async function runNew(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseFlags(argv, { dir: { type: 'string' }, kind: { type: 'string' } }, true);
  if (values.help) {
    io.out(PLUGIN_NEW_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new SkeinError('SKEIN_ERR_USAGE', `expected exactly one plugin NAME, got ${positionals.length} (see --help)`);
  const name = positionals[0]!;
  if (!PLUGIN_NAME_PATTERN.test(name)) throw new SkeinError('SKEIN_ERR_USAGE', `plugin name ${JSON.stringify(name)} is invalid: it must be ${PLUGIN_NAME_HINT}`);
  const kind = values.kind;
  if (kind !== 'authn' && kind !== 'authz') {
    throw new SkeinError(
      'SKEIN_ERR_USAGE',
      `--kind must be authn (an authentication hook: turns a credential into an identity) or authz (an authorization hook: decides what an identity may run)${kind === undefined ? '' : `, got ${JSON.stringify(kind)}`}`,
    );
  }
  if (values.dir === '') throw new SkeinError('SKEIN_ERR_USAGE', '--dir must not be empty');
  const dir = values.dir ?? DEFAULT_DIR;

  const pluginFile = join(dir, `${name}.ts`);
  const testFile = join(dir, `${name}.test.ts`);
  // Check every file the name could collide with before writing any: a refusal leaves nothing behind.
  for (const f of [pluginFile, testFile, join(dir, `${name}.mjs`), join(dir, `${name}.js`)]) {
    if (existsSync(f)) throw new SkeinError('SKEIN_ERR_USAGE', `refusing to overwrite ${f}: choose another name or remove it`);
  }
  if (name === 'skein-plugin' || name === 'skein-plugin-testing') throw new SkeinError('SKEIN_ERR_USAGE', `plugin name "${name}" is reserved for the API files skein writes`);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `cannot create --dir ${dir}: ${(err as Error).message}`);
  }

  const states: string[] = [];
  for (const { file, text: wanted, replace } of folderFiles()) {
    const path = join(dir, file);
    let current: string | undefined;
    try {
      current = readFileSync(path, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === undefined || (replace && current !== wanted)) writeFileAtomic(path, wanted, 0o644);
    states.push(`  ${path} (${current === undefined ? 'created' : current === wanted ? 'up to date' : replace ? "updated to this binary's API" : 'kept: yours'})`);
  }

  for (const [file, content] of [
    [pluginFile, pluginTemplate(name, kind)],
    [testFile, testTemplate(name, kind)],
  ] as const) {
    try {
      writeFileExclusive(file, content, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SkeinError('SKEIN_ERR_USAGE', `refusing to overwrite ${file}: choose another name or remove it`);
      throw new SkeinError('SKEIN_ERR_USAGE', `cannot write ${file}: ${(err as Error).message}`);
    }
  }

  io.out(
    [
      `created ${kind === 'authn' ? 'authentication' : 'authorization'} plugin "${name}"`,
      `  ${pluginFile}`,
      `  ${testFile}`,
      ...states,
      'next:',
      `  edit the hook, then test:    skein plugin test --dir ${dir}   (nothing to install)`,
      `  enable it in the config:     "plugins": { "enabled": [{ "name": "${name}", "options": { … } }] }`,
      `  sign it (requireSignature):  skein plugin sign ${pluginFile} --key release.key`,
      `  editor types (optional):     npm install in ${dir} (brings @types/bun for the tests)`,
    ].join('\n'),
  );
  return 0;
}

// ---------------------------------------------------------------------------------------------
// test
// ---------------------------------------------------------------------------------------------

/**
 * Runs the plugins' tests with the test runner built into this binary: the skein binary is a
 * compiled Bun, and BUN_BE_BUN=1 makes it behave as `bun` (here: `bun test`), so a plugin
 * author needs no Node, npm or install step.
 */
async function runTest(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseFlags(argv, { dir: { type: 'string' } }, true);
  if (values.help) {
    io.out(PLUGIN_TEST_USAGE);
    return 0;
  }
  const dir = values.dir ?? DEFAULT_DIR;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new SkeinError('SKEIN_ERR_USAGE', `--dir ${dir} is not a folder (the plugins folder holding NAME.test.ts files)`);
  const child = spawn(process.execPath, ['test', ...positionals], { cwd: dir, env: { ...process.env, BUN_BE_BUN: '1' }, stdio: 'inherit' });
  const code = await new Promise<number>((resolve) => {
    child.on('error', (err) => {
      io.err(`cannot run the test runner (${process.execPath}): ${err.message}`);
      resolve(1);
    });
    child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0)));
  });
  return code;
}

/** The scaffolds: real files under plugin-templates/, type-checked with the repository, embedded as text. */
const text = (imported: unknown) => imported as string;
const TEMPLATE_NAME = {
  authn: 'example-authn',
  authz: 'example-authz',
} as const;
export type PluginKind = keyof typeof TEMPLATE_NAME;
const TEMPLATES: Record<PluginKind, { plugin: string; test: string }> = {
  authn: { plugin: text(AUTHN), test: text(AUTHN_TEST) },
  authz: { plugin: text(AUTHZ), test: text(AUTHZ_TEST) },
};

/** The scaffolded plugin of a kind, named `name`: working example hooks with the reasoning in comments. */
export function pluginTemplate(name: string, kind: PluginKind): string {
  return TEMPLATES[kind].plugin.replaceAll(TEMPLATE_NAME[kind], name);
}

/** Its test, run by `skein plugin test`: the hooks called with a hand-built context, no agent needed. */
export function testTemplate(name: string, kind: PluginKind): string {
  return TEMPLATES[kind].test.replaceAll(TEMPLATE_NAME[kind], name);
}

/** Files that belong to the folder rather than to one plugin: written when missing or stale (the first two), or only when missing (the editor set-up, which the user may have changed). */
export function folderFiles(): Array<{ file: string; text: string; replace: boolean }> {
  return [
    { file: PLUGIN_API_FILE, text: pluginApiCopy(), replace: true },
    { file: 'skein-plugin-testing.ts', text: text(TESTING), replace: true },
    { file: 'package.json', text: text(PACKAGE), replace: false },
    { file: 'tsconfig.json', text: text(TSCONFIG), replace: false },
  ];
}
