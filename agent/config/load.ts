/**
 * Loading the configuration: layers, lowest first, merged by one function —
 *   schema defaults < fleet file(s) named by `extends` < the host file < SKEIN_* env < flags.
 * Each file layer is checked on its own (so an error names the file and the key) and its
 * relative paths are resolved against that file's folder before merging.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SkeinError } from '../../common/errors/index.ts';
import defaultConfigJson from '../../agent.config.json' with { type: 'json' };
import { parseJsonc } from './jsonc.ts';
import { CONFIG_SCHEMA, type AgentConfig } from './schema.ts';
import { checkLayer, complete, configError, envLayer, mergeLayers, parseScalar, redact, type Node } from './schema-dsl.ts';

export const DEFAULT_CONFIG_FILE = 'agent.config.json';
const MAX_EXTENDS_DEPTH = 8;

export interface LoadOptions {
  /** Config file; undefined means ./agent.config.json if present, else the embedded default. */
  path?: string;
  env?: NodeJS.ProcessEnv;
  /** Dotted keys from command-line flags, e.g. { 'agent.listen': '0.0.0.0:7443' }. */
  flags?: Record<string, string | undefined>;
  cwd?: string;
}

export interface LoadedConfig {
  config: AgentConfig;
  /** Absolute path of the file read, or "embedded" for the built-in default. */
  source: string;
  /** Folder relative paths were resolved against. */
  baseDir: string;
  /** Every file read: the host file, then the fleet files its `extends` chain named (strict mode checks their modes). */
  files: string[];
}

export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  const explicit = options.path ?? env.SKEIN_CONFIG;

  let fileLayers: unknown[];
  let source: string;
  let baseDir: string;
  const files: string[] = [];
  if (explicit) {
    source = resolve(cwd, explicit);
    baseDir = dirname(source);
    fileLayers = readChain(source, files);
  } else if (existsSync(resolve(cwd, DEFAULT_CONFIG_FILE))) {
    source = resolve(cwd, DEFAULT_CONFIG_FILE);
    baseDir = cwd;
    fileLayers = readChain(source, files);
  } else {
    source = 'embedded';
    baseDir = cwd;
    fileLayers = [checkLayer(CONFIG_SCHEMA, structuredClone(defaultConfigJson), '', cwd, 'embedded default config')];
  }

  const envValues = envLayer(CONFIG_SCHEMA, env);
  const flagValues = flagLayer(options.flags ?? {});
  // Env and flag values are checked like a file whose folder is the working directory.
  const overrides = [envValues, flagValues].map((layer, i) => (layer === undefined ? undefined : checkLayer(CONFIG_SCHEMA, layer, '', cwd, i === 0 ? 'environment' : 'command line')));
  const merged = mergeLayers(...fileLayers, ...overrides) as Record<string, unknown>;
  delete merged.extends;
  delete merged.$schema;
  const config = complete(CONFIG_SCHEMA, merged, '', baseDir) as AgentConfig;
  crossCheck(config);
  return { config, source, baseDir, files };
}

/**
 * Reads a file and the fleet files it extends, returning layers lowest-precedence first.
 * `seen` collects the chain, host file first.
 */
function readChain(file: string, seen: string[], referencedBy?: string): unknown[] {
  if (seen.includes(file)) throw configError('extends', `cycle: ${[...seen, file].join(' → ')}`, { source: file });
  if (seen.length >= MAX_EXTENDS_DEPTH) throw configError('extends', `more than ${MAX_EXTENDS_DEPTH} levels of extends`, { source: file });
  seen.push(file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
    // A missing fleet file is a mistake in the file that names it: say which one.
    const via = referencedBy ? ` (named by "extends" in ${referencedBy})` : '';
    throw new SkeinError('SKEIN_ERR_CONFIG', `cannot read config file ${file}${via}: ${reason}`, { source: file, ...(referencedBy ? { key: 'extends', referencedBy } : {}) });
  }
  const raw = parseJsonc(text, file);
  const layer = checkLayer(CONFIG_SCHEMA, raw, '', dirname(file), file) as Record<string, unknown>;
  const parent = typeof layer.extends === 'string' ? readChain(layer.extends, seen, file) : [];
  return [...parent, layer];
}

function flagLayer(flags: Record<string, string | undefined>): unknown {
  const out: Record<string, unknown> = {};
  for (const [dotted, raw] of Object.entries(flags)) {
    if (raw === undefined) continue;
    const keys = dotted.split('.');
    let node: Node = CONFIG_SCHEMA;
    let target = out;
    keys.forEach((key, i) => {
      if (node.kind !== 'object' || !node.fields[key]) throw new Error(`flag maps to unknown config key ${dotted}`);
      node = node.fields[key];
      if (i === keys.length - 1) target[key] = parseScalar(node, raw, `${dotted} (from the command line)`);
      else target = (target[key] ??= {}) as Record<string, unknown>;
    });
  }
  return Object.keys(out).length ? out : undefined;
}

function crossCheck(config: AgentConfig): void {
  const { cert, key, ca } = config.tls;
  const set = [cert, key, ca].filter((v) => v !== undefined).length;
  if (set !== 0 && set !== 3) {
    const missing = (['cert', 'key', 'ca'] as const).filter((k) => config.tls[k] === undefined).map((k) => `tls.${k}`);
    throw configError(missing[0]!, `tls.cert, tls.key and tls.ca must be set together (missing: ${missing.join(', ')}); leave all three unset for the development PKI`);
  }
  for (const [name, r] of Object.entries(config.routines)) {
    if ((r.file === undefined) === (r.url === undefined)) throw configError(`routines.${name}`, 'set exactly one of "file" and "url"');
    if (r.url !== undefined && r.sha256 === undefined) throw configError(`routines.${name}.sha256`, 'is required with "url": pin the code you reviewed (sha256sum of the file)');
    if (r.file !== undefined && r.sha256 !== undefined) throw configError(`routines.${name}.sha256`, 'applies only to "url" routines');
  }
  // Multicast needs a fleet, a signing key and a trust store; static peers alone need none.
  if (config.discovery.enabled && config.discovery.groups.length > 0) {
    for (const key of ['fleet', 'signingKey'] as const) {
      if (config.discovery[key] === undefined) throw configError(`discovery.${key}`, 'is required when discovery.enabled is true');
    }
    if (config.discovery.trustedKeys.length === 0 && config.discovery.rootKeys.length === 0) {
      throw configError('discovery.trustedKeys', 'discovery needs a trust store: set discovery.trustedKeys or discovery.rootKeys');
    }
    // At least three adverts per TTL (the interval never stretches past ttlMs / 3): one or two
    // lost datagrams in a row never expire a live peer, and a vanished one goes within the TTL.
    if (config.discovery.ttlMs < 3 * config.discovery.intervalMs) {
      throw configError(
        'discovery.ttlMs',
        `(${config.discovery.ttlMs}) must be at least 3 × discovery.intervalMs (${config.discovery.intervalMs}), so peers hear at least three adverts per TTL: raise ttlMs to ${3 * config.discovery.intervalMs} or lower intervalMs`,
      );
    }
    const host = parseHostPort(config.agent.listen).host;
    if (config.discovery.advertise.length === 0 && (host === '0.0.0.0' || host === '::')) {
      throw configError('discovery.advertise', `agent.listen is ${config.agent.listen}; name the endpoints peers should dial`);
    }
  }
  if (config.audit.sink === 'file' && config.audit.path === undefined) {
    throw configError('audit.path', 'is required when audit.sink is "file": name the audit file (e.g. "/var/log/skein/audit.jsonl")');
  }
  if (config.discovery.enabled && config.tls.plaintext) {
    // Peers and callers pin an advertised agent's certificate on connect; h2c has none to show.
    throw configError('tls.plaintext', "cannot be combined with discovery.enabled: peers check an advertised agent's TLS certificate on connect");
  }
  if (config.limits.defaultTimeoutMs > config.limits.maxTimeoutMs) {
    throw configError('limits.defaultTimeoutMs', `(${config.limits.defaultTimeoutMs}) must not exceed limits.maxTimeoutMs (${config.limits.maxTimeoutMs})`);
  }
  const port = Number(config.agent.listen.slice(config.agent.listen.lastIndexOf(':') + 1));
  if (port > 65535) throw configError('agent.listen', `port ${port} is out of range`);
  if (config.admin.enabled) {
    const adminPort = parseHostPort(config.admin.listen).port;
    if (adminPort > 65535) throw configError('admin.listen', `port ${adminPort} is out of range`);
    if (!isLoopbackHost(parseHostPort(config.admin.listen).host) && config.admin.token === undefined) {
      throw configError('admin.token', `is required when admin.listen (${config.admin.listen}) is not a loopback address: the admin endpoints would be open to the network`);
    }
  }
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

export function parseHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  let host = value.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(value.slice(i + 1)) };
}

export function redactedConfig(config: AgentConfig): unknown {
  return redact(CONFIG_SCHEMA, config);
}
