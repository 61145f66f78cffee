/**
 * `skein dispatch ROUTINE`: one call through the client library. With no peer or credential
 * flags it targets the agent of the local config (or the embedded default) with the
 * development client certificate from its state directory.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { authorizationHeader, SkeinClient, type DispatchOptions } from '../client/index.ts';
import { PeerPool, type PeerEndpoint } from '../client/pool.ts';
import { loadConfig, parseHostPort } from '../config/load.ts';
import { ERROR_TABLE, SkeinError, toSkeinError } from '../errors/index.ts';
import { parseFlags, parseIntFlag } from './args.ts';
import type { Io } from './io.ts';

export const DISPATCH_USAGE = `Usage: skein dispatch ROUTINE [--args JSON] [--kwargs JSON] [--peer HOST:PORT]
                      [--cert PATH --key PATH --ca PATH] [--token T | --token-file F]
                      [--timeout MS] [--encoding cbor|json] [--json] [--config PATH]
                      [--plaintext]

Runs ROUTINE on an agent and prints its result.

  --args JSON        positional arguments, a JSON array (default [])
  --kwargs JSON      keyword arguments, a JSON object (default {})
  --peer HOST:PORT   agent to call (default: agent.listen of the config)
  --cert/--key/--ca  client certificate, its key, and the CA of the agent
                     (default: the development PKI in the config's agent.stateDir)
  --token T          token for the agent's token plugins, sent as "authorization: Bearer T",
                     or verbatim when T contains a space (e.g. "SkeinNonce …")
  --token-file F     read the token from F (surrounding whitespace trimmed); keeps it out
                     of the process list and shell history
  --timeout MS       deadline of the call (sent as x-skein-timeout-ms)
  --discover         run on a peer of the local agent that offers ROUTINE (least loaded;
                     its advertised identity pinned; fails over when a peer is unreachable)
  --encoding E       request encoding, cbor (default) or json
  --json             print {"result", "requestId"} or the error object as JSON on stdout
  --config PATH      config used for the defaults (default ./agent.config.json, else embedded)
  --plaintext        speak plaintext HTTP/2 (h2c) to an agent with tls.plaintext (behind a
                     TLS-terminating proxy); nothing is encrypted, the token included. No
                     client certificate; --peer may then be http://HOST:PORT

Exit codes:
  0  the routine returned
  1  unexpected failure
  2  usage or configuration error
  3  rejected by the server (the message carries the server's error code)
  4  the routine raised (or its worker crashed)
  5  deadline exceeded
  6  TLS or transport failure`;

const KIND_BY_EXIT: Record<number, string> = {
  3: 'rejected by the server',
  4: 'routine failed',
  5: 'deadline exceeded',
  6: 'transport failure',
};
const KIND_BY_CODE: Partial<Record<string, string>> = { SKEIN_ERR_TLS: 'TLS failure' };

export async function runDispatch(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      args: { type: 'string' },
      kwargs: { type: 'string' },
      peer: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      ca: { type: 'string' },
      timeout: { type: 'string' },
      encoding: { type: 'string' },
      json: { type: 'boolean' },
      config: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      discover: { type: 'boolean' },
      plaintext: { type: 'boolean' },
    },
    true,
  );
  if (values.help) {
    io.out(DISPATCH_USAGE);
    return 0;
  }
  const routine = positionals[0];
  if (!routine || positionals.length > 1) throw new SkeinError('SKEIN_ERR_USAGE', 'expected exactly one ROUTINE name (see --help)');
  const args = parseJsonFlag(values.args, 'args', (v) => Array.isArray(v), 'a JSON array') as unknown[] | undefined;
  const kwargs = parseJsonFlag(values.kwargs, 'kwargs', (v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'a JSON object') as Record<string, unknown> | undefined;
  const timeoutMs = parseIntFlag(values.timeout, 'timeout', 1, 86_400_000);
  if (values.encoding !== undefined && values.encoding !== 'cbor' && values.encoding !== 'json') throw new SkeinError('SKEIN_ERR_USAGE', `--encoding must be cbor or json, got ${JSON.stringify(values.encoding)}`);

  const token = readToken(values.token, values['token-file']);

  if (values.plaintext) {
    if (values.discover) throw new SkeinError('SKEIN_ERR_USAGE', '--plaintext cannot be combined with --discover: discovered peers are reached over TLS, their identity pinned');
    if (values.cert || values.key || values.ca) throw new SkeinError('SKEIN_ERR_USAGE', '--plaintext sends no client certificate: drop --cert, --key and --ca');
  }
  // Plaintext needs only the address: there is no certificate to present or check.
  const target = values.plaintext ? { peer: values.peer ?? configPeer(loadConfig({ path: values.config }).config) } : resolveTarget(values);
  const creds = 'cert' in target ? { cert: readCredential(target.cert, 'cert'), key: readCredential(target.key, 'key'), ca: readCredential(target.ca, 'ca') } : undefined;
  const client = new SkeinClient({
    peer: target.peer,
    ...creds,
    ...(values.plaintext ? { plaintext: true } : {}),
    ...(values.encoding ? { encoding: values.encoding as 'cbor' | 'json' } : {}),
    ...(token !== undefined ? { token } : {}),
  });
  const call = { args: args ?? [], kwargs: kwargs ?? {}, ...(timeoutMs ? { timeoutMs } : {}) };
  try {
    if (values.discover) {
      // The local agent's verified peer table decides where the call goes; the pool pins
      // each peer's advertised identity and fails over.
      const { result, peer } = await dispatchDiscovered(client, routine, call, { ...creds!, ...(token !== undefined ? { token } : {}) });
      io.out(values.json ? JSON.stringify({ result, peer: peer.agent }) : typeof result === 'string' ? result : JSON.stringify(result, null, 2));
      if (!values.json) io.err(`(ran on peer ${peer.agent})`);
      return 0;
    }
    const { result, requestId } = await client.dispatchDetailed(routine, call);
    io.out(values.json ? JSON.stringify({ result, requestId }) : typeof result === 'string' ? result : JSON.stringify(result, null, 2));
    return 0;
  } catch (err) {
    const e = toSkeinError(err);
    const exit = ERROR_TABLE[e.code].exit;
    if (values.json) io.out(JSON.stringify({ code: e.code, message: e.message, ...e.details }));
    const kind = KIND_BY_CODE[e.code] ?? KIND_BY_EXIT[exit] ?? 'failed';
    // A 403's message already names the request (the id to quote to the operator).
    const requestId = e.details.requestId === undefined ? '' : String(e.details.requestId);
    const id = requestId && !e.message.includes(requestId) ? ` (request ${requestId})` : '';
    io.err(`error [${e.code}]: ${kind}: ${e.message}${id}`);
    return exit;
  } finally {
    await client.destroy();
  }
}

async function dispatchDiscovered(local: SkeinClient, routine: string, call: DispatchOptions, creds: { cert: Buffer; key: Buffer; ca: Buffer; token?: string }) {
  const { enabled, peers, idempotent = [] } = await local.peers();
  if (!enabled) throw new SkeinError('SKEIN_ERR_USAGE', 'the local agent has discovery disabled (discovery.enabled); --discover needs its peer table');
  const pool = new PeerPool({ ...creds, peers: () => peers as unknown as PeerEndpoint[], idempotent: (r) => idempotent.includes(r) });
  try {
    return await pool.dispatch(routine, call);
  } finally {
    await pool.close();
  }
}

export function resolveTarget(values: { peer?: string; cert?: string; key?: string; ca?: string; config?: string }) {
  const creds = [values.cert, values.key, values.ca].filter(Boolean).length;
  if (creds !== 0 && creds !== 3) throw new SkeinError('SKEIN_ERR_USAGE', '--cert, --key and --ca must be given together');
  if (values.peer && creds === 3) return { peer: values.peer, cert: values.cert!, key: values.key!, ca: values.ca! };
  // Defaults come from the same config the local agent runs with.
  const { config } = loadConfig({ path: values.config });
  const peer = values.peer ?? configPeer(config);
  if (creds === 3) return { peer, cert: values.cert!, key: values.key!, ca: values.ca! };
  if (config.tls.cert && config.tls.key && config.tls.ca) {
    throw new SkeinError('SKEIN_ERR_USAGE', 'the config names its own tls files; pass a client certificate with --cert, --key and --ca');
  }
  const dir = join(config.agent.stateDir, 'pki');
  const paths = { cert: join(dir, 'client-dev-client.crt'), key: join(dir, 'client-dev-client.key'), ca: join(dir, 'ca.crt') };
  if (!existsSync(paths.cert)) {
    throw new SkeinError('SKEIN_ERR_USAGE', `no development client certificate at ${paths.cert}: start the agent once (npm start) to create it, or pass --cert, --key and --ca`);
  }
  return { peer, ...paths };
}

/** The local agent's address from agent.listen (a wildcard address reached on loopback). */
function configPeer(config: ReturnType<typeof loadConfig>['config']): string {
  const { host, port } = parseHostPort(config.agent.listen);
  if (port === 0) throw new SkeinError('SKEIN_ERR_USAGE', `agent.listen in the config is ${config.agent.listen} (a port picked at start): pass --peer HOST:PORT`);
  const local = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `${local.includes(':') ? `[${local}]` : local}:${port}`;
}

/** --token or the trimmed content of --token-file; checked here so a bad one is exit 2. */
function readToken(token: string | undefined, file: string | undefined): string | undefined {
  if (token !== undefined && file !== undefined) throw new SkeinError('SKEIN_ERR_USAGE', '--token and --token-file cannot be given together');
  let value = token;
  let flag = '--token';
  if (file !== undefined) {
    flag = `--token-file ${file}`;
    try {
      value = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new SkeinError('SKEIN_ERR_USAGE', `cannot read --token-file ${file}: ${(err as Error).message}`);
    }
  }
  if (value === undefined) return undefined;
  try {
    authorizationHeader(value);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `${flag}: ${(err as Error).message}`);
  }
  return value;
}

export function readCredential(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `cannot read --${flag} ${path}: ${(err as Error).message}`);
  }
}

function parseJsonFlag(raw: string | undefined, flag: string, ok: (v: unknown) => boolean, what: string): unknown {
  if (raw === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `--${flag} is not valid JSON: ${(err as Error).message}`);
  }
  if (!ok(v)) throw new SkeinError('SKEIN_ERR_USAGE', `--${flag} must be ${what}`);
  return v;
}
