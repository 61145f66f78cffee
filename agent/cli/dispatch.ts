/**
 * `skein dispatch ROUTINE`: one call through the client library. With no peer or credential
 * flags it targets the agent of the local config (or the embedded default) with the
 * development client certificate from its state directory.
 */
import { writeFileSync } from 'node:fs';
import { SkeinClient, type DispatchOptions } from '../client/index.ts';
import { PeerPool, type PeerEndpoint } from '../client/pool.ts';
import { ERROR_TABLE, SkeinError, toSkeinError } from '../../common/errors/index.ts';
import { PRIORITIES, type Priority } from '../workers/call.ts';
import { parseFlags, parseIntFlag } from './args.ts';
import type { Io } from './io.ts';
import { clientFor, resolveTarget, TARGET_FLAGS, TARGET_HELP } from './target.ts';
import { jsonText, resultText } from './values.ts';

export const DISPATCH_USAGE = `Usage: skein dispatch ROUTINE [--args JSON] [--kwargs JSON] [--peer HOST[:PORT]]
                      [--cert PATH --key PATH --ca PATH] [--token T | --token-file F]
                      [--timeout MS] [--priority high|normal|low] [--encoding cbor|json]
                      [--stream | --async | --output FILE] [--json] [--config PATH]
                      [--profile NAME] [--discover] [--plaintext]

Runs ROUTINE on an agent and prints its result (docs/calls.md). Bytes in a result print as
{"$bytes": "<base64>"}; --output FILE writes a bytes result raw instead.

  --args JSON        positional arguments, a JSON array (default [])
  --kwargs JSON      keyword arguments, a JSON object (default {})
${TARGET_HELP}
  --timeout MS       deadline of the call (sent as x-skein-timeout-ms)
  --priority P       queue priority when the routine's workers are busy: high, normal
                     (the agent's default) or low (sent as x-skein-priority)
  --stream           print the items a generator routine yields, one JSON line each, as
                     they arrive; the exit code is that of the stream's last frame
  --async            submit the call and print its id (with --json the whole answer);
                     follow it with skein calls get|wait|cancel
  --output FILE      write the result to FILE instead of stdout: bytes raw, a string as
                     its UTF-8 text, anything else as JSON
  --discover         run on a peer of the local agent that offers ROUTINE (least loaded;
                     its advertised identity pinned; fails over when a peer is unreachable)
  --encoding E       request encoding, cbor (default) or json
  --json             print {"result", "requestId"} or the error object as JSON on stdout
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
      ...TARGET_FLAGS,
      args: { type: 'string' },
      kwargs: { type: 'string' },
      timeout: { type: 'string' },
      priority: { type: 'string' },
      encoding: { type: 'string' },
      stream: { type: 'boolean' },
      async: { type: 'boolean' },
      output: { type: 'string' },
      json: { type: 'boolean' },
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
  const priority = parsePriority(values.priority);
  if (values.encoding !== undefined && values.encoding !== 'cbor' && values.encoding !== 'json')
    throw new SkeinError('SKEIN_ERR_USAGE', `--encoding must be cbor or json, got ${JSON.stringify(values.encoding)}`);
  const shapes = (['stream', 'async', 'output'] as const).filter((f) => values[f] !== undefined);
  if (shapes.length > 1) throw new SkeinError('SKEIN_ERR_USAGE', `${shapes.map((f) => `--${f}`).join(' and ')} cannot be combined`);
  if (values.discover && (values.stream || values.async))
    throw new SkeinError('SKEIN_ERR_USAGE', `--discover runs a sync call on a peer; it cannot be combined with --${values.stream ? 'stream' : 'async'}`);

  if (values.plaintext && values.discover) throw new SkeinError('SKEIN_ERR_USAGE', '--plaintext cannot be combined with --discover: discovered peers are reached over TLS, their identity pinned');
  const target = resolveTarget(values);
  const { creds, token } = target;
  if (target.plaintext && values.discover) throw new SkeinError('SKEIN_ERR_USAGE', 'the profile asks for plaintext, which cannot be combined with --discover');
  const client = clientFor(target, values.encoding ? { encoding: values.encoding as 'cbor' | 'json' } : {});
  const call: DispatchOptions = { args: args ?? [], kwargs: kwargs ?? {}, ...(timeoutMs ? { timeoutMs } : {}), ...(priority ? { priority } : {}) };
  const show = (result: unknown) => (values.output !== undefined ? writeResult(values.output, result) : io.out(resultText(result)));
  try {
    if (values.discover) {
      // The local agent's verified peer table decides where the call goes; the pool pins
      // each peer's advertised identity and fails over.
      const { result, peer } = await dispatchDiscovered(client, routine, call, { ...creds!, ...(token !== undefined ? { token } : {}) });
      if (values.json) io.out(jsonText({ result, peer: peer.agent }));
      else show(result);
      if (!values.json) io.err(`(ran on peer ${peer.agent})`);
      return 0;
    }
    if (values.stream) return await printStream(client, routine, call, io);
    if (values.async) {
      const submitted = await client.submit(routine, call);
      io.out(values.json ? jsonText(submitted) : submitted.id);
      return 0;
    }
    const { result, requestId } = await client.dispatchDetailed(routine, call);
    if (values.json) io.out(jsonText({ result, requestId }));
    else show(result);
    return 0;
  } catch (err) {
    return reportFailure(err, io, values.json === true);
  } finally {
    await client.destroy();
  }
}

/** `--stream`: one JSON line per item as it arrives; a consumer that stops reading pauses the generator. */
async function printStream(client: SkeinClient, routine: string, call: DispatchOptions, io: Io): Promise<number> {
  for await (const item of client.stream(routine, call)) {
    io.out(jsonText(item));
    // The reader is gone (EPIPE): leaving the loop resets the stream and stops the generator;
    // the exit reports SKEIN_ERR_OUTPUT.
    if (io.drain && (await io.drain())) break;
  }
  return 0;
}

/** Prints a failure (stderr, and with --json its object on stdout); returns its exit code. */
export function reportFailure(err: unknown, io: Io, json: boolean): number {
  const e = toSkeinError(err);
  const exit = ERROR_TABLE[e.code].exit;
  if (json) io.out(JSON.stringify({ code: e.code, message: e.message, ...e.details }));
  const kind = KIND_BY_CODE[e.code] ?? KIND_BY_EXIT[exit] ?? 'failed';
  // A 403's message already names the request (the id to quote to the operator).
  const requestId = e.details.requestId === undefined ? '' : String(e.details.requestId);
  const id = requestId && !e.message.includes(requestId) ? ` (request ${requestId})` : '';
  io.err(`error [${e.code}]: ${kind}: ${e.message}${id}`);
  return exit;
}

/** Throws SKEIN_ERR_USAGE naming the levels unless the flag is one. */
export function parsePriority(raw: string | undefined): Priority | undefined {
  if (raw === undefined || (PRIORITIES as readonly string[]).includes(raw)) return raw as Priority | undefined;
  throw new SkeinError('SKEIN_ERR_USAGE', `--priority must be one of ${PRIORITIES.join(', ')}, got ${JSON.stringify(raw)}`);
}

function writeResult(path: string, result: unknown): void {
  const bytes = result instanceof Uint8Array ? result : typeof result === 'string' ? Buffer.from(result) : Buffer.from(jsonText(result, 2) + '\n');
  try {
    writeFileSync(path, bytes);
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_OUTPUT', `cannot write --output ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
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
