/**
 * Where a client command goes and with what credentials. Each setting is taken from the first
 * layer that has it, as Consul and kubectl users expect:
 *
 *   flag (--peer, --cert, --key, --ca, --token, --token-file)
 *   > environment (SKEIN_PEER, SKEIN_CERT, SKEIN_KEY, SKEIN_CA, SKEIN_TOKEN, SKEIN_TOKEN_FILE)
 *   > client profile (--profile / SKEIN_PROFILE, else the profile file's "default")
 *   > the local agent of the config (agent.listen, and its development client certificate).
 *
 * The profile file is JSONC at $SKEIN_CLIENT_CONFIG, else $XDG_CONFIG_HOME/skein/client.json
 * (~/.config/skein/client.json); relative paths in it resolve against its folder.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { authorizationHeader, SkeinClient, type ClientOptions } from '../client/index.ts';
import { loadConfig, parseHostPort } from '../config/load.ts';
import { parseJsonc } from '../config/jsonc.ts';
import { SkeinError } from '../../common/errors/index.ts';

/** The port skein listens on unless configured otherwise (agent.listen of the default config). */
export const DEFAULT_PORT = 7443;

export interface TargetFlags {
  peer?: string;
  cert?: string;
  key?: string;
  ca?: string;
  token?: string;
  'token-file'?: string;
  config?: string;
  profile?: string;
  plaintext?: boolean;
}

export interface Target {
  peer: string;
  /** Absent with plaintext: there is no certificate to present or check. */
  creds?: { cert: Buffer; key: Buffer; ca: Buffer };
  token?: string;
  plaintext: boolean;
}

/** Flags shared by every command that calls an agent (merged into each command's parseFlags). */
export const TARGET_FLAGS = {
  peer: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  config: { type: 'string' },
  profile: { type: 'string' },
} as const;

export const TARGET_HELP = `  --peer HOST[:PORT] agent to call (port default ${DEFAULT_PORT}); env SKEIN_PEER
  --cert/--key/--ca  client certificate, its key, and the CA of the agent; env SKEIN_CERT,
                     SKEIN_KEY, SKEIN_CA (default: the development PKI of the local config)
  --token T          token for the agent's token plugins, sent as "authorization: Bearer T",
                     or verbatim when T contains a space (e.g. "SkeinNonce …"); env SKEIN_TOKEN
  --token-file F     read the token from F (surrounding whitespace trimmed); keeps it out
                     of the process list and shell history; env SKEIN_TOKEN_FILE
  --profile NAME     client profile to use (env SKEIN_PROFILE; file: $SKEIN_CLIENT_CONFIG,
                     else ~/.config/skein/client.json; see docs/cli.md)
  --config PATH      agent config used for the defaults (default ./agent.config.json, else embedded)`;

type Field = 'peer' | 'cert' | 'key' | 'ca' | 'token' | 'tokenFile';
const ENV: Record<Field, string> = { peer: 'SKEIN_PEER', cert: 'SKEIN_CERT', key: 'SKEIN_KEY', ca: 'SKEIN_CA', token: 'SKEIN_TOKEN', tokenFile: 'SKEIN_TOKEN_FILE' };
const FLAG: Record<Field, string> = { peer: '--peer', cert: '--cert', key: '--key', ca: '--ca', token: '--token', tokenFile: '--token-file' };
const PROFILE_KEYS = new Set<string>([...Object.keys(ENV), 'plaintext']);

/** A value and where it came from, so every error names the flag, variable or profile key. */
interface Setting {
  value: string;
  from: string;
}

export function resolveTarget(flags: TargetFlags, env: NodeJS.ProcessEnv = process.env): Target {
  const profile = loadProfile(flags.profile ?? env.SKEIN_PROFILE, env);
  const pick = (field: Field): Setting | undefined => {
    const flag = field === 'tokenFile' ? flags['token-file'] : flags[field];
    if (flag !== undefined) return { value: flag, from: FLAG[field] };
    const fromEnv = env[ENV[field]];
    if (fromEnv !== undefined && fromEnv !== '') return { value: fromEnv, from: ENV[field] };
    const p = profile?.values[field];
    if (typeof p === 'string') return { value: isPath(field) ? resolve(profile!.dir, p) : p, from: `profile "${profile!.name}" key "${field}" (${profile!.file})` };
    return undefined;
  };
  const plaintext = flags.plaintext === true || profile?.values.plaintext === true;
  const token = readToken(pick('token'), pick('tokenFile'));
  const tls = (['cert', 'key', 'ca'] as const).map(pick);
  const given = tls.filter(Boolean).length;

  let peerSetting = pick('peer');
  if (plaintext) {
    const why = flags.plaintext ? '--plaintext' : `plaintext (profile "${profile!.name}")`;
    if (given > 0)
      throw new SkeinError(
        'SKEIN_ERR_USAGE',
        `${why} sends no client certificate: drop ${tls
          .filter(Boolean)
          .map((s) => s!.from)
          .join(', ')}`,
      );
    const peer = peerSetting ? normalizePeer(peerSetting) : localPeer(flags.config);
    return { peer, plaintext: true, ...(token !== undefined ? { token } : {}) };
  }
  if (given !== 0 && given !== 3) {
    const missing = (['cert', 'key', 'ca'] as const).filter((_, i) => !tls[i]);
    throw new SkeinError(
      'SKEIN_ERR_USAGE',
      `--cert, --key and --ca must be given together (from flags, SKEIN_* variables or a profile); missing: ${missing.map((m) => `${FLAG[m]} / ${ENV[m]}`).join(', ')}`,
    );
  }
  let paths: Setting[];
  if (given === 3) {
    paths = tls as Setting[];
  } else {
    // The local development agent: its own config names where it listens and its PKI.
    const { config } = loadConfig({ path: flags.config, env });
    if (config.tls.cert && config.tls.key && config.tls.ca) {
      throw new SkeinError('SKEIN_ERR_USAGE', 'the config names its own tls files; pass a client certificate with --cert, --key and --ca (or SKEIN_CERT, SKEIN_KEY, SKEIN_CA, or a profile)');
    }
    const dir = join(config.agent.stateDir, 'pki');
    paths = ['client-dev-client.crt', 'client-dev-client.key', 'ca.crt'].map((f) => ({ value: join(dir, f), from: `the development PKI (${dir})` }));
    if (!existsSync(paths[0]!.value)) {
      throw new SkeinError('SKEIN_ERR_USAGE', `no development client certificate at ${paths[0]!.value}: start the agent once (npm start) to create it, or pass --cert, --key and --ca`);
    }
    peerSetting ??= { value: configPeer(config), from: 'agent.listen' };
  }
  const peer = peerSetting ? normalizePeer(peerSetting) : localPeer(flags.config);
  const [cert, key, ca] = paths.map(readCredential) as [Buffer, Buffer, Buffer];
  return { peer, creds: { cert, key, ca }, plaintext: false, ...(token !== undefined ? { token } : {}) };
}

/** The client library for a resolved target (one HTTP/2 session to its peer). */
export function clientFor(target: Target, extra: Partial<ClientOptions> = {}): SkeinClient {
  return new SkeinClient({ peer: target.peer, ...target.creds, ...(target.plaintext ? { plaintext: true } : {}), ...(target.token !== undefined ? { token: target.token } : {}), ...extra });
}

/**
 * HOST, HOST:PORT, [IPv6] or [IPv6]:PORT, optionally behind https:// or http://. A missing
 * port is skein's default port, never https' 443.
 */
export function normalizePeer(setting: Setting | string): string {
  const { value, from } = typeof setting === 'string' ? { value: setting, from: '--peer' } : setting;
  const scheme = /^(https?):\/\//.exec(value)?.[0] ?? '';
  const rest = value.slice(scheme.length).replace(/\/$/, '');
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(rest);
  if (!m) {
    const hint = rest.split(':').length > 2 && !rest.startsWith('[') ? ' (write an IPv6 address in brackets: [::1]:7443)' : '';
    throw new SkeinError('SKEIN_ERR_USAGE', `${from}: ${JSON.stringify(value)} is not HOST[:PORT]${hint}`);
  }
  const port = m[2] === undefined ? DEFAULT_PORT : Number(m[2]);
  if (port < 1 || port > 65535) throw new SkeinError('SKEIN_ERR_USAGE', `${from}: port ${m[2]} is out of range (1-65535)`);
  return `${scheme}${m[1]}:${port}`;
}

function localPeer(configPath: string | undefined): string {
  return configPeer(loadConfig({ path: configPath }).config);
}

/** The local agent's address from agent.listen (a wildcard address reached on loopback). */
function configPeer(config: ReturnType<typeof loadConfig>['config']): string {
  const { host, port } = parseHostPort(config.agent.listen);
  if (port === 0) throw new SkeinError('SKEIN_ERR_USAGE', `agent.listen in the config is ${config.agent.listen} (a port picked at start): pass --peer HOST:PORT`);
  const local = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `${local.includes(':') ? `[${local}]` : local}:${port}`;
}

const isPath = (field: Field) => field === 'cert' || field === 'key' || field === 'ca' || field === 'tokenFile';

interface Profile {
  name: string;
  file: string;
  dir: string;
  values: Record<string, unknown>;
}

/** The selected profile, or undefined when there is no profile file and none was asked for. */
function loadProfile(name: string | undefined, env: NodeJS.ProcessEnv): Profile | undefined {
  const explicitFile = env.SKEIN_CLIENT_CONFIG;
  const file = explicitFile ?? join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'skein', 'client.json');
  if (!existsSync(file)) {
    if (explicitFile) throw new SkeinError('SKEIN_ERR_USAGE', `SKEIN_CLIENT_CONFIG: ${file} does not exist`);
    if (name) throw new SkeinError('SKEIN_ERR_USAGE', `profile "${name}" asked for, but there is no client profile file at ${file}`);
    return undefined;
  }
  let doc: unknown;
  try {
    doc = parseJsonc(readFileSync(file, 'utf8'), file);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `client profile file: ${(err as Error).message}`);
  }
  const bad = (why: string) => new SkeinError('SKEIN_ERR_USAGE', `client profile file ${file}: ${why}`);
  if (!isObject(doc) || !isObject(doc.profiles)) throw bad('expected { "default": NAME, "profiles": { NAME: { "peer", "cert", "key", "ca", "token", "tokenFile", "plaintext" } } }');
  const chosen = name ?? (typeof doc.default === 'string' ? doc.default : undefined);
  if (chosen === undefined) return undefined;
  const values = doc.profiles[chosen];
  if (!isObject(values)) throw bad(`no profile named "${chosen}" (profiles: ${Object.keys(doc.profiles).join(', ') || 'none'})`);
  for (const [k, v] of Object.entries(values)) {
    if (!PROFILE_KEYS.has(k)) throw bad(`profile "${chosen}": unknown key "${k}" (known: ${[...PROFILE_KEYS].join(', ')})`);
    if (k === 'plaintext' ? typeof v !== 'boolean' : typeof v !== 'string') throw bad(`profile "${chosen}" key "${k}": must be a ${k === 'plaintext' ? 'boolean' : 'string'}`);
  }
  return { name: chosen, file, dir: dirname(file), values };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The token, or the trimmed content of the token file; checked here so a bad one is exit 2. */
function readToken(token: Setting | undefined, file: Setting | undefined): string | undefined {
  // Two sources at the same level are ambiguous; a higher layer simply wins over a lower one.
  if (token && file && token.from.startsWith('--') && file.from.startsWith('--')) throw new SkeinError('SKEIN_ERR_USAGE', '--token and --token-file cannot be given together');
  let chosen = token;
  let value = token?.value;
  if (file && (!token || rank(file.from) < rank(token.from))) {
    chosen = file;
    try {
      value = readFileSync(file.value, 'utf8').trim();
    } catch (err) {
      throw new SkeinError('SKEIN_ERR_USAGE', `cannot read ${label(file)}${file.value}: ${(err as Error).message}`);
    }
  }
  if (value === undefined) return undefined;
  try {
    authorizationHeader(value);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `${chosen!.from === '--token-file' ? `--token-file ${file!.value}` : chosen!.from}: ${(err as Error).message}`);
  }
  return value;
}

const rank = (from: string) => (from.startsWith('--') ? 0 : from.startsWith('SKEIN_') ? 1 : 2);

export function readCredential(setting: Setting): Buffer {
  try {
    return readFileSync(setting.value);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `cannot read ${label(setting)}${setting.value}: ${(err as Error).message}`);
  }
}

/** "--cert " for a flag, "SKEIN_CERT: " or "profile … : " otherwise: messages name the source. */
const label = (s: Setting) => (s.from.startsWith('--') ? `${s.from} ` : `${s.from}: `);
