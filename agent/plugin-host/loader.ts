/**
 * Loads the enabled plugins at start-up. Any failure — no file, a bad signature, a syntax
 * error, a missing or malformed default export, bad options, a hook that is not a function —
 * stops the agent (exit 2) with a message naming the plugin: it never runs half-configured.
 *
 * The verified bytes are what runs: each plugin is copied into a private run directory
 * (with our own copy of the plugin API beside it) and imported from there, so a file swapped
 * in the plugins folder after its signature was checked is never executed.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { extname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isSigningError, trustStore, verifyFile } from '../../signing/index.ts';
import type { Audit } from '../audit/index.ts';
import type { PluginsConfig } from '../config/schema.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { writeFileAtomic } from '../../common/fs/index.ts';
import type { Logger } from '../log/index.ts';
import type { Hooks, PluginDefinition } from './api.ts';
import { BUILTIN_PLUGIN_NAMES, builtinPluginSource } from './builtin.ts';
import { createContext } from './context.ts';
import { createPluginHttp, HttpTally } from './http.ts';
import { PLUGIN_API_FILE, pluginApiCopy } from './publish.ts';

export interface LoadedPlugin {
  name: string;
  version: string;
  /** The file it was read from, or "builtin:<name>" for a first-party plugin built into the binary. */
  file: string;
  sha256: string;
  /** True for a first-party plugin built into the binary (or a file with exactly its bytes). */
  builtin: boolean;
  hooks: Hooks;
  /** Counts the plugin's ctx.http requests; the auth pipeline binds it to the agent's metrics. */
  httpTally: HttpTally;
}

export interface LoadDeps {
  log: Logger;
  /** Folder of the config file: plugins' readFile() paths resolve against it. */
  baseDir: string;
  /** Private directory the verified copies are imported from. */
  runDir: string;
  now?: () => number;
  /** Records plugin.loaded, with the SHA-256 of the bytes that run. */
  audit?: Audit;
  /** security.strict: a plugin from a file must be signed, even one shadowing a built-in. */
  strict?: boolean;
}

const EXTENSIONS = ['.ts', '.mjs', '.js'];
const SETUP_TIMEOUT_MS = 10_000;

export function pluginError(name: string, message: string, cause?: unknown): SkeinError {
  return new SkeinError('SKEIN_ERR_PLUGIN_LOAD', `plugin "${name}": ${message}`, { plugin: name }, cause ? { cause } : undefined);
}

export async function loadPlugins(config: PluginsConfig, deps: LoadDeps): Promise<LoadedPlugin[]> {
  if (config.enabled.length === 0) return [];
  rmSync(deps.runDir, { recursive: true, force: true });
  mkdirSync(deps.runDir, { recursive: true, mode: 0o700 });
  writeFileAtomic(join(deps.runDir, PLUGIN_API_FILE), pluginApiCopy(), 0o600);
  const trusted = trustStore(config.trustedKeys);
  const loaded: LoadedPlugin[] = [];
  const seen = new Set<string>();
  try {
    for (const [index, entry] of config.enabled.entries()) {
      if (seen.has(entry.name)) throw pluginError(entry.name, 'is enabled twice in plugins.enabled');
      seen.add(entry.name);
      loaded.push(await loadOne(entry, index, config, trusted, deps));
    }
  } catch (err) {
    // The plugins set up before the one that failed may hold timers or sockets: release them.
    await closePlugins(loaded, config.hookTimeoutMs, deps.log);
    throw err;
  }
  return loaded;
}

/**
 * Runs each plugin's close hook once, in order, each within `timeoutMs` (a hook that hangs
 * must not hang the agent's stop); a failure is logged with the plugin's name and the rest
 * still run.
 */
export async function closePlugins(plugins: readonly LoadedPlugin[], timeoutMs: number, log: Logger): Promise<void> {
  for (const p of plugins) {
    if (!p.hooks.close) continue;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(() => p.hooks.close!()),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within plugins.hookTimeoutMs (${timeoutMs} ms)`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      log.warn('plugin close hook failed', { plugin: p.name, error: (err as Error)?.message ?? String(err) });
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Where a plugin's bytes come from: a file in plugins.dir, else the first-party plugin of that
 * name built into the binary. A file shadows the built-in (a newer or patched copy), and then
 * follows the same signature rules as any file — unless its bytes are exactly the built-in's.
 */
function locate(name: string, config: PluginsConfig, log: Logger): { file: string; bytes: Buffer; builtin: boolean } {
  const file = EXTENSIONS.map((ext) => join(config.dir, `${name}${ext}`)).find((f) => existsSync(f));
  const builtin = builtinPluginSource(name);
  if (!file) {
    if (builtin === undefined)
      throw pluginError(
        name,
        `no file ${join(config.dir, name)}{${EXTENSIONS.join(',')}} (plugins.dir is ${config.dir}), and no built-in plugin of that name (built in: ${BUILTIN_PLUGIN_NAMES.join(', ')})`,
      );
    return { file: `builtin:${name}`, bytes: Buffer.from(builtin), builtin: true };
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw pluginError(name, `cannot read ${file}: ${(err as Error).message}`, err);
  }
  const same = builtin !== undefined && bytes.equals(Buffer.from(builtin));
  if (builtin !== undefined && !same) log.warn('plugin file shadows the built-in plugin of the same name', { plugin: name, file });
  return { file, bytes, builtin: same };
}

async function loadOne(entry: PluginsConfig['enabled'][number], index: number, config: PluginsConfig, trusted: ReturnType<typeof trustStore>, deps: LoadDeps): Promise<LoadedPlugin> {
  const { name } = entry;
  const { file, bytes, builtin } = locate(name, config, deps.log);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let keyId: string | undefined;
  if (deps.strict && !builtin && !config.requireSignature) {
    throw new SkeinError(
      'SKEIN_ERR_STRICT',
      `security.strict: refusing to start; 1 violation:\n  - plugins.requireSignature: plugin "${name}" is loaded from ${file} but signatures are not required`,
      { violations: [{ key: 'plugins.requireSignature' }] },
    );
  }
  // Built-in bytes are trusted as part of the binary; everything else needs its signature.
  if (config.requireSignature && !builtin) {
    try {
      const verified = verifyFile(file, { trustedKeys: trusted, expectedName: name });
      keyId = verified.keyId;
      // Check the bytes we will run, not just the file verifyFile read.
      if (verified.sha256 !== sha256) throw pluginError(name, `${file} changed while it was being verified`);
    } catch (err) {
      if (isSigningError(err)) throw pluginError(name, `signature check failed (${err.code}): ${err.message}`, err);
      throw err;
    }
  }

  const copy = join(deps.runDir, `${name}-${sha256.slice(0, 12)}${builtin ? '.ts' : extname(file)}`);
  writeFileAtomic(copy, bytes.toString('utf8'), 0o600);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(copy).href)) as { default?: unknown };
  } catch (err) {
    throw pluginError(name, `${file} failed to load: ${(err as Error).name}: ${(err as Error).message}`, err);
  }
  const def = checkDefinition(name, mod.default);

  const fail = (key: string, message: string) => new SkeinError('SKEIN_ERR_CONFIG', `plugin "${name}": option "${key}": ${message}`, { plugin: name, key: `plugins.enabled.${name}.options.${key}` });
  let options: unknown = entry.options;
  if (def.options) {
    try {
      options = def.options(entry.options ?? {}, fail);
    } catch (err) {
      if (err instanceof SkeinError) throw err;
      throw pluginError(name, `options rejected: ${(err as Error).message}`, err);
    }
  } else if (entry.options !== undefined) {
    throw pluginError(name, 'takes no options, but plugins.enabled sets some');
  }

  const key = `plugins.enabled[${index}]`;
  const allowedHosts = entry.allowedHosts ?? [];
  const allowPrivateAddresses = entry.allowPrivateAddresses ?? false;
  if (allowPrivateAddresses) {
    deps.log.warn(`plugin "${name}" may reach private and loopback addresses over ctx.http (${key}.allowPrivateAddresses): keep ${key}.allowedHosts to the internal servers it needs`, {
      plugin: name,
      key: `${key}.allowPrivateAddresses`,
      allowedHosts,
    });
  }
  const httpTally = new HttpTally(name);
  const http = createPluginHttp(name, { allowedHosts, allowPrivateAddresses, key }, httpTally);
  const ctx = createContext(name, options, { log: deps.log, baseDir: deps.baseDir, http, strict: deps.strict === true, ...(deps.now ? { now: deps.now } : {}) });
  let hooks: unknown;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    hooks = await Promise.race([
      Promise.resolve().then(() => def.setup(ctx)),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`setup did not finish within ${SETUP_TIMEOUT_MS} ms`)), SETUP_TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    if (err instanceof SkeinError) throw err;
    throw pluginError(name, `setup failed: ${(err as Error).message}`, err);
  } finally {
    // Not left behind: a timer per plugin would outlive a start-up that fails later.
    clearTimeout(timer);
  }
  const checked = checkHooks(name, hooks);
  const signed = keyId !== undefined;
  deps.log.info('plugin loaded', { plugin: name, version: def.version, file, sha256, builtin, signed, hooks: Object.keys(checked) });
  deps.audit?.record('plugin.loaded', { plugin: name, version: def.version, file, sha256, builtin, signed, ...(keyId ? { keyId } : {}), hooks: Object.keys(checked) });
  return { name, version: def.version, file, sha256, builtin, hooks: checked, httpTally };
}

function checkDefinition(name: string, value: unknown): PluginDefinition {
  if (typeof value !== 'object' || value === null) throw pluginError(name, 'has no default export (export default definePlugin({ name, version, setup }))');
  const def = value as Record<string, unknown>;
  if (typeof def.name !== 'string') throw pluginError(name, 'default export has no "name"');
  if (def.name !== name) throw pluginError(name, `default export is named "${def.name}", but it is enabled as "${name}"`);
  if (typeof def.version !== 'string' || def.version === '') throw pluginError(name, 'default export has no "version"');
  if (typeof def.setup !== 'function') throw pluginError(name, '"setup" is not a function');
  if (def.options !== undefined && typeof def.options !== 'function') throw pluginError(name, '"options" is not a function');
  return def as unknown as PluginDefinition;
}

function checkHooks(name: string, value: unknown): Hooks {
  if (typeof value !== 'object' || value === null) throw pluginError(name, 'setup() must return an object of hooks');
  const hooks = value as Record<string, unknown>;
  const known = ['authenticate', 'authorize', 'close'];
  for (const [key, hook] of Object.entries(hooks)) {
    if (!known.includes(key)) throw pluginError(name, `setup() returned an unknown hook "${key}" (known: ${known.join(', ')})`);
    if (typeof hook !== 'function') throw pluginError(name, `hook "${key}" is not a function`);
  }
  if (!hooks.authenticate && !hooks.authorize) throw pluginError(name, 'setup() returned neither an authenticate nor an authorize hook');
  return hooks as Hooks;
}
