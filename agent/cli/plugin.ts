/**
 * `skein plugin new|sign|verify`: scaffolds a plugin, signs it for plugins.requireSignature,
 * and checks a signature the way the agent's loader does.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { isSigningError, readPrivateKey, signFile, trustStore, verifyFile } from '../../signing/index.ts';
import { SkeinError } from '../errors/index.ts';
import { writeFileAtomic, writeFileExclusive } from '../fs/index.ts';
import { PLUGIN_API_FILE, pluginApiCopy } from '../plugin-host/publish.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

/** Names plugins.enabled[].name accepts (agent/config/schema.ts); the loader opens <dir>/<name>.ts. */
export const PLUGIN_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;
// What signing/ accepts in a .sig: 1–64 printable characters.
const PLUGIN_VERSION = /^[^\x00-\x1f\x7f]{1,64}$/;
const DEFAULT_DIR = 'plugins';

export const PLUGIN_USAGE = `Usage: skein plugin new NAME [--dir D]
       skein plugin sign FILE --key KEY [--name N] [--version V]
       skein plugin verify FILE --trusted-key KEY [--trusted-key KEY]... [--name N]

Writes, signs and checks authentication and authorization plugins (docs/plugins.md).

Commands:
  new     scaffold D/NAME.ts, its test D/NAME.test.ts and the API copy D/${PLUGIN_API_FILE}
  sign    write FILE.sig: an Ed25519 signature over FILE's SHA-256, plugin name and version
  verify  check FILE.sig as the agent does when plugins.requireSignature is true

Run "skein plugin COMMAND --help" for the options of each command.`;

export const PLUGIN_NEW_USAGE = `Usage: skein plugin new NAME [--dir D]

Scaffolds a plugin to adapt: an options validator, an authenticate hook (API key in the
x-api-key header) and an authorize hook (per-routine allow lists).

  NAME     plugin name: 1-64 of a-z 0-9 "-", starting with a letter or digit
  --dir D  plugins folder (default ${DEFAULT_DIR}, created when missing)

Writes D/NAME.ts and D/NAME.test.ts (never overwrites them), and writes D/${PLUGIN_API_FILE}
(the plugin API the plugin imports) when it is missing or differs from this binary's.`;

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
  if (sub === 'sign') return runSign(rest, io);
  if (sub === 'verify') return runVerify(rest, io);
  throw new SkeinError(
    'SKEIN_ERR_USAGE',
    sub === undefined ? 'missing plugin command: new, sign or verify (see skein plugin --help)' : `unknown plugin command "${sub}": new, sign or verify (see skein plugin --help)`,
  );
}

// ---------------------------------------------------------------------------------------------
// sign / verify
// ---------------------------------------------------------------------------------------------

/** The single FILE positional, which must be a readable regular file. */
function fileArg(positionals: string[]): string {
  if (positionals.length !== 1) throw new SkeinError('SKEIN_ERR_USAGE', `expected exactly one FILE, got ${positionals.length} (see --help)`);
  const file = positionals[0]!;
  let isFile = false;
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
  if (!PLUGIN_NAME.test(name)) {
    const where = flag === undefined ? `the file name of ${file} gives the plugin name ${JSON.stringify(name)}, which` : `--name ${JSON.stringify(name)}`;
    throw new SkeinError('SKEIN_ERR_USAGE', `${where} is not a plugin name (1-64 of a-z 0-9 "-", as in plugins.enabled[].name)${flag === undefined ? ': pass --name' : ''}`);
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
    io.out(
      [
        `verified ${file}: plugin "${ok.name}" version ${ok.version}`,
        `  key id   ${ok.keyId}`,
        `  sha256   ${ok.sha256}`,
      ].join('\n'),
    );
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
  const { values, positionals } = parseFlags(argv, { dir: { type: 'string' } }, true);
  if (values.help) {
    io.out(PLUGIN_NEW_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new SkeinError('SKEIN_ERR_USAGE', `expected exactly one plugin NAME, got ${positionals.length} (see --help)`);
  const name = positionals[0]!;
  if (!PLUGIN_NAME.test(name)) throw new SkeinError('SKEIN_ERR_USAGE', `plugin name ${JSON.stringify(name)} is invalid: 1-64 of a-z 0-9 "-", starting with a letter or digit`);
  if (values.dir === '') throw new SkeinError('SKEIN_ERR_USAGE', '--dir must not be empty');
  const dir = values.dir ?? DEFAULT_DIR;

  const pluginFile = join(dir, `${name}.ts`);
  const testFile = join(dir, `${name}.test.ts`);
  // Check every file the name could collide with before writing any: a refusal leaves nothing behind.
  for (const f of [pluginFile, testFile, join(dir, `${name}.mjs`), join(dir, `${name}.js`)]) {
    if (existsSync(f)) throw new SkeinError('SKEIN_ERR_USAGE', `refusing to overwrite ${f}: choose another name or remove it`);
  }
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `cannot create --dir ${dir}: ${(err as Error).message}`);
  }

  const apiFile = join(dir, PLUGIN_API_FILE);
  const api = pluginApiCopy();
  let current: string | undefined;
  try {
    current = readFileSync(apiFile, 'utf8');
  } catch {
    current = undefined;
  }
  if (current !== api) writeFileAtomic(apiFile, api, 0o644);
  const apiState = current === undefined ? 'created' : current === api ? 'up to date' : 'updated to this binary\'s API';

  for (const [file, text] of [[pluginFile, pluginTemplate(name)], [testFile, testTemplate(name)]] as const) {
    try {
      writeFileExclusive(file, text, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SkeinError('SKEIN_ERR_USAGE', `refusing to overwrite ${file}: choose another name or remove it`);
      throw new SkeinError('SKEIN_ERR_USAGE', `cannot write ${file}: ${(err as Error).message}`);
    }
  }

  io.out(
    [
      `created plugin "${name}"`,
      `  ${pluginFile}`,
      `  ${testFile}`,
      `  ${apiFile} (${apiState})`,
      'next:',
      `  edit the hooks, then test:  npx vitest run --root ${dir} ${name}`,
      `  enable it in the config:     "plugins": { "enabled": [{ "name": "${name}", "options": { … } }] }`,
      `  sign it (requireSignature):  skein plugin sign ${pluginFile} --key release.key`,
    ].join('\n'),
  );
  return 0;
}

/** The scaffolded plugin: working example hooks with the reasoning in comments. */
export function pluginTemplate(name: string): string {
  return `/**
 * ${name}: a skein plugin (docs/plugins.md). Scaffolded by \`skein plugin new ${name}\`.
 *
 * What the example hooks do (adapt them):
 *  - authenticate: accepts an API key in the \`x-api-key\` header and asserts the identity
 *    \`key:<label>\`. No header (or no keys configured): "skip", so other plugins and the
 *    client certificate decide. A wrong key: "rejected" (401, reason BAD_API_KEY).
 *  - authorize: \`allow\` maps a routine to the identities that may run it. A listed routine
 *    is denied to everyone else (403); an unlisted routine gets no opinion ("abstain").
 *
 * Enable it in the agent config (authenticate hooks run in plugins.enabled order):
 *   "plugins": { "enabled": [{ "name": "${name}", "options": {
 *     "apiKeys": { "ci": "<at least 32 random characters>" },
 *     "allow": { "deploy": ["key:ci", "spiffe://skein.local/client/ops"] } } }] }
 *
 * Import ./skein-plugin.ts and nothing else: the agent runs a verified copy of this one
 * file beside its own copy of the API, so other imports would not resolve (and would not be
 * covered by its signature). Clock, crypto, logging and files come through \`ctx\`.
 *
 * \`skein plugin sign\` reads the version literal below: bump it when the file changes.
 */
import { definePlugin, type AuthnResult, type AuthzResult, type Identity, type OptionsFail } from './skein-plugin.ts';

interface Options {
  /** Label → API key. Empty: authenticate always skips. */
  apiKeys: Record<string, string>;
  /** Routine → identities allowed to run it: principals ("key:ci") or peer ids ("spiffe://…"). */
  allow: Record<string, string[]>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates plugins.enabled[].options (the agent passes {} when there are none). Throwing
 * \`fail(key, message)\` stops the agent at start-up with exit 2, naming this plugin and key.
 */
function parseOptions(raw: unknown, fail: OptionsFail): Options {
  if (!isObject(raw)) throw fail('options', 'must be a JSON object');
  for (const key of Object.keys(raw)) {
    if (key !== 'apiKeys' && key !== 'allow') throw fail(key, 'unknown option (known: apiKeys, allow)');
  }
  const apiKeys = raw.apiKeys ?? {};
  if (!isObject(apiKeys)) throw fail('apiKeys', 'must be an object of label → key');
  for (const [label, key] of Object.entries(apiKeys)) {
    if (!/^[a-z0-9-]{1,32}$/.test(label)) throw fail(\`apiKeys.\${label}\`, 'label must be 1-32 of a-z 0-9 -');
    if (typeof key !== 'string' || key.length < 32) throw fail(\`apiKeys.\${label}\`, 'must be a string of at least 32 characters');
  }
  const allow = raw.allow ?? {};
  if (!isObject(allow)) throw fail('allow', 'must be an object of routine → identities');
  for (const [routine, ids] of Object.entries(allow)) {
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string' && id !== '')) throw fail(\`allow.\${routine}\`, 'must be an array of identities');
  }
  return { apiKeys: apiKeys as Record<string, string>, allow: allow as Record<string, string[]> };
}

/** Every name the caller is known by: the certificate's peer id and the token principals. */
function namesOf(identity: Identity): string[] {
  return [identity.peer.id, ...identity.principals];
}

export default definePlugin<Options>({
  name: '${name}',
  version: '0.1.0',
  options: parseOptions,
  setup: (ctx) => {
    const keys = Object.entries(ctx.options.apiKeys);
    // A Map: a routine named like an Object.prototype key must not find an inherited value.
    const allow = new Map(Object.entries(ctx.options.allow));
    ctx.log.info('ready', { apiKeys: keys.length, routines: [...allow.keys()] });

    return {
      // Hooks may be async; each call has plugins.hookTimeoutMs. Throwing, returning
      // something that is not an AuthnResult/AuthzResult, or running late fails closed
      // (401/403, reason PLUGIN_FAILED).
      authenticate(req): AuthnResult {
        const given = req.headers['x-api-key'];
        if (given === undefined || keys.length === 0) return { outcome: 'skip' };
        // Compare with every key, in constant time, so timing does not tell which one matched.
        let label: string | undefined;
        for (const [l, key] of keys) if (ctx.crypto.timingSafeEqual(given, key)) label = l;
        if (label === undefined) return { outcome: 'rejected', reason: 'BAD_API_KEY', message: 'unknown API key' };
        return { outcome: 'authenticated', identity: \`key:\${label}\` };
      },

      authorize(req): AuthzResult {
        // Not a routine call (e.g. GET /v1/routines), or a routine these rules do not cover.
        const allowed = req.routine === undefined ? undefined : allow.get(req.routine);
        if (allowed === undefined) return { decision: 'abstain' };
        const match = namesOf(req.identity).find((n) => allowed.includes(n));
        // \`rule\` names what decided: the agent's audit line records it as "<plugin>:<rule>".
        const rule = \`allow.\${req.routine}\`;
        if (match !== undefined) return { decision: 'allow', reason: 'LISTED', rule };
        // The caller sees only the reason code and the request id; rule and message go to the
        // audit line, so the message may say what the operator needs to know.
        return { decision: 'deny', reason: 'NOT_LISTED', rule, message: \`\${namesOf(req.identity).join(', ')} not in options.allow["\${req.routine}"]\` };
      },
    };
  },
});
`;
}

/** The scaffolded test: calls the hooks with a hand-built context, no agent needed. */
export function testTemplate(name: string): string {
  return `/**
 * Tests of the ${name} plugin: its hooks called with a hand-built context and requests, no
 * agent needed. Run: npx vitest run --root <plugins folder> ${name}
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AuthnRequest, AuthzRequest, Hooks, PluginContext } from './skein-plugin.ts';
import plugin from './${name}.ts';

const KEY = 'k'.repeat(32);
const OPS = 'spiffe://skein.local/client/ops';

const fail = (key: string, message: string) => new Error(\`option "\${key}": \${message}\`);

/** What the agent passes to setup(), reduced to what a test needs; \`now\` is fixed. */
function context<O>(options: O, now = Date.UTC(2025, 0, 6, 10)): PluginContext<O> {
  const unused = (what: string) => () => {
    throw new Error(\`\${what} is not used by this plugin\`);
  };
  return {
    name: plugin.name,
    options,
    log: { debug() {}, info() {}, warn() {}, error() {} },
    now: () => now,
    crypto: {
      timingSafeEqual: (a, b) => {
        const x = typeof a === 'string' ? Buffer.from(a) : a;
        const y = typeof b === 'string' ? Buffer.from(b) : b;
        return x.length === y.length && timingSafeEqual(x, y);
      },
      sha256Hex: (data) => createHash('sha256').update(data).digest('hex'),
      verifyJwt: () => Promise.reject(new Error('verifyJwt is not used by this plugin')),
      verifyEd25519: unused('verifyEd25519'),
      parseEd25519PublicKey: unused('parseEd25519PublicKey'),
    },
    readFile: unused('readFile'),
  };
}

/** Validates \`raw\` as the agent does, then runs setup() with the clock at \`now\` (ms). */
async function hooks(raw: unknown, now?: number): Promise<Hooks> {
  return plugin.setup(context(plugin.options!(raw, fail), now));
}

const base = { requestId: 'req-1', method: 'POST', remoteAddress: '127.0.0.1' };
const authn = (headers: Record<string, string> = {}): AuthnRequest => ({
  ...base,
  routine: 'deploy',
  path: '/v1/dispatch/deploy',
  headers,
  peer: { id: OPS, spiffeId: OPS },
});
const authz = (routine: string | undefined, principals: string[] = [], peerId = 'anonymous'): AuthzRequest => ({
  ...base,
  routine,
  path: routine === undefined ? '/v1/routines' : \`/v1/dispatch/\${routine}\`,
  headers: {},
  identity: { peer: { id: peerId }, principals, claims: {} },
});

describe('${name} options', () => {
  it('accepts no options', () => {
    expect(plugin.options?.({}, fail)).toEqual({ apiKeys: {}, allow: {} });
  });

  it.each([
    [{ apiKeys: { ci: 'short' } }, /apiKeys\\.ci/],
    [{ allow: { deploy: 'key:ci' } }, /allow\\.deploy/],
    [{ alow: {} }, /alow/],
  ])('refuses %j', (raw, message) => {
    expect(() => plugin.options?.(raw, fail)).toThrow(message);
  });
});

describe('${name} authenticate', () => {
  it('skips without the header, so other plugins decide', async () => {
    const h = await hooks({ apiKeys: { ci: KEY } });
    expect(await h.authenticate!(authn())).toEqual({ outcome: 'skip' });
  });

  it('authenticates a known key as key:<label>', async () => {
    const h = await hooks({ apiKeys: { ci: KEY } });
    expect(await h.authenticate!(authn({ 'x-api-key': KEY }))).toEqual({ outcome: 'authenticated', identity: 'key:ci' });
  });

  it('rejects an unknown key', async () => {
    const h = await hooks({ apiKeys: { ci: KEY } });
    expect(await h.authenticate!(authn({ 'x-api-key': 'x'.repeat(32) }))).toMatchObject({ outcome: 'rejected', reason: 'BAD_API_KEY' });
  });
});

describe('${name} authorize', () => {
  const options = { allow: { deploy: ['key:ci', OPS] } };

  it('allows a listed principal or peer', async () => {
    const h = await hooks(options);
    expect(await h.authorize!(authz('deploy', ['key:ci']))).toMatchObject({ decision: 'allow' });
    expect(await h.authorize!(authz('deploy', [], OPS))).toMatchObject({ decision: 'allow' });
  });

  it('denies anyone else a listed routine', async () => {
    const h = await hooks(options);
    expect(await h.authorize!(authz('deploy', ['key:other']))).toMatchObject({ decision: 'deny', reason: 'NOT_LISTED' });
  });

  it('abstains on routines it does not list and on other endpoints', async () => {
    const h = await hooks(options);
    expect(await h.authorize!(authz('echo', ['key:other']))).toEqual({ decision: 'abstain' });
    expect(await h.authorize!(authz('constructor'))).toEqual({ decision: 'abstain' });
    expect(await h.authorize!(authz(undefined))).toEqual({ decision: 'abstain' });
  });
});
`;
}
