/**
 * HTTP routes (hono). The dispatch route is the hot path: identity comes from a per-session
 * cache, the body is read straight from the HTTP/2 stream with the size limit enforced while
 * reading, and the reply is encoded in the request's own media type.
 *
 *   POST /v1/dispatch/:routine   {args, kwargs} as CBOR or JSON → {result}
 *   GET  /v1/routines            configured routines
 *   GET  /healthz                liveness, worker and queue counts
 */
import { randomUUID } from 'node:crypto';
import type { Http2ServerRequest } from 'node:http2';
import { Hono, type Context } from 'hono';
import type { Http2Bindings } from '@hono/node-server';
import { decodeBody, encodeBody, mediaTypeOf, parseCallBody, type MediaType } from '../codec/index.ts';
import { SkeinError, toSkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { UNKNOWN_ROUTINE, type DispatchRecorder } from '../metrics/index.ts';
import type { Dispatcher } from '../workers/pool-set.ts';
import type { AuthPipeline } from '../plugin-host/pipeline.ts';
import type { Identity, RequestInfo } from '../plugin-host/api.ts';
import type { IdentityReader, PeerIdentity } from './identity.ts';
import type { RoutineInfo } from '../sources/routines.ts';

export interface AppDeps {
  pool: Dispatcher;
  routines: Map<string, RoutineInfo>;
  limits: { maxBodyBytes: number; defaultTimeoutMs: number; maxTimeoutMs: number };
  log: Logger;
  isDraining: () => boolean;
  /** The plugin pipeline; a config reload may swap what is behind it between requests. */
  auth: Pick<AuthPipeline, 'authenticate' | 'authorize'>;
  /** The discovery plane's view: verified peers and rejection counters. */
  peers: () => { enabled: boolean; peers: unknown[]; rejected?: Record<string, number>; idempotent?: string[] };
  /** Counts dispatches by routine and outcome, with their duration. */
  metrics?: DispatchRecorder;
  /** Identity of each session's client certificate (shared with the listener, which updates its trust domains). */
  identities: Pick<IdentityReader, 'ofSession'>;
}

// mediaType: the request's codec, undefined when its content-type is neither CBOR nor JSON
// (replies then use JSON).
type Env = { Bindings: Http2Bindings; Variables: { requestId: string; peer: PeerIdentity; mediaType: MediaType | undefined } };

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
export const TIMEOUT_HEADER = 'x-skein-timeout-ms';

export function createApp(deps: AppDeps): Hono<Env> {
  const app = new Hono<Env>();
  const { log, pool, routines, limits, auth } = deps;

  const requestInfo = (c: Context<Env>, routine: string | undefined): RequestInfo => ({
    requestId: c.get('requestId'),
    routine,
    method: c.req.method,
    path: c.req.path,
    headers: c.env.incoming.headers as Record<string, string | undefined>,
    remoteAddress: c.env.incoming.socket?.remoteAddress,
  });
  const authenticate = (c: Context<Env>, info: RequestInfo): Promise<Identity> => auth.authenticate(info, c.get('peer'));

  app.use('*', async (c, next) => {
    // Raw node headers: cheaper than materialising a fetch Headers object per request.
    const headers = c.env.incoming.headers;
    const given = headers['x-request-id'] as string | undefined;
    const requestId = given && REQUEST_ID.test(given) ? given : randomUUID();
    c.set('requestId', requestId);
    c.set('peer', deps.identities.ofSession(c.env.incoming.stream?.session));
    c.set('mediaType', mediaTypeOf(headers['content-type']));
    c.header('x-request-id', requestId);
    await next();
  });

  // Every dispatch is counted once, by routine (a name not configured counts as "_unknown", so
  // callers cannot grow the label set) and outcome ("ok" or the error code).
  const metrics = deps.metrics;
  app.post('/v1/dispatch/:routine', async (c) => {
    const name = c.req.param('routine');
    if (!metrics) return dispatch(c, name);
    const started = performance.now();
    try {
      const res = await dispatch(c, name);
      metrics.dispatch(name, 'ok', (performance.now() - started) / 1000);
      return res;
    } catch (err) {
      metrics.dispatch(routines.has(name) ? name : UNKNOWN_ROUTINE, toSkeinError(err).code, (performance.now() - started) / 1000);
      throw err;
    }
  });

  const dispatch = async (c: Context<Env>, name: string): Promise<Response> => {
    // Authenticate before saying whether a routine exists; authorize before any body is read.
    const info = requestInfo(c, name);
    const identity = await authenticate(c, info);
    const routine = routines.get(name);
    if (!routine) throw new SkeinError('SKEIN_ERR_UNKNOWN_ROUTINE', `no routine named "${name}" (GET /v1/routines lists them)`, { routine: name });
    await auth.authorize(info, identity);
    const headers = c.env.incoming.headers;
    const mediaType = c.get('mediaType');
    if (!mediaType) throw new SkeinError('SKEIN_ERR_UNSUPPORTED_MEDIA_TYPE', `content-type must be application/cbor or application/json, got ${JSON.stringify(headers['content-type'] ?? '(none)')}`);
    const timeoutMs = deadlineOf(headers[TIMEOUT_HEADER] as string | undefined, routine.timeoutMs ?? limits.defaultTimeoutMs, limits.maxTimeoutMs);
    // Cancellation: a reset stream or a closed connection aborts the call and its worker. The
    // listener goes on before the body is read: a stream reset mid-body must never queue work
    // (a rapid-reset flood would otherwise fill the queue with calls nobody waits for).
    const abort = new AbortController();
    const stream = c.env.incoming.stream;
    const onClose = () => abort.abort();
    stream?.once('close', onClose);
    try {
      const bytes = await readBody(c.env.incoming, limits.maxBodyBytes, abort.signal);
      const body = parseCallBody(bytes.length === 0 ? {} : decodeBody(mediaType, bytes));
      if (abort.signal.aborted || stream?.closed || stream?.destroyed) throw new SkeinError('SKEIN_ERR_ABORTED', 'the caller reset the stream before the call started');
      const outcome = await pool.dispatch({ routine: name, args: body.args, kwargs: body.kwargs, timeoutMs, signal: abort.signal, requestId: c.get('requestId') });
      if (!outcome.ok) throw outcome.error;
      if (log.enabled('debug')) log.debug('dispatched', { requestId: c.get('requestId'), peer: c.get('peer').id, routine: name });
      return reply(c, 200, { result: outcome.value });
    } finally {
      stream?.off('close', onClose);
    }
  };

  app.get('/v1/routines', async (c) => {
    await authenticate(c, requestInfo(c, undefined));
    return reply(c, 200, {
      routines: [...routines.values()].map((r) => ({ name: r.name, function: r.function, sha256: r.sha256, ...(r.timeoutMs ? { timeoutMs: r.timeoutMs } : {}) })),
    });
  });

  app.get('/v1/peers', async (c) => {
    await authenticate(c, requestInfo(c, undefined));
    return reply(c, 200, deps.peers());
  });

  app.get('/healthz', (c) => {
    const draining = deps.isDraining();
    return reply(c, draining ? 503 : 200, { status: draining ? 'draining' : 'ok', ...pool.stats });
  });

  app.notFound((c) => {
    throw new SkeinError('SKEIN_ERR_NOT_FOUND', `no endpoint ${c.req.method} ${c.req.path}`);
  });

  app.onError((err, c) => {
    const e = toSkeinError(err);
    const requestId = c.get('requestId') ?? randomUUID();
    const peer = c.get('peer') ?? { id: 'anonymous' };
    const fields = { requestId, peer: peer.id, code: e.code, path: c.req.path };
    if (e.code === 'SKEIN_ERR_INTERNAL') log.error('internal error', { ...fields, error: e.message, stack: (e.cause as Error | undefined)?.stack });
    else if (e.code === 'SKEIN_ERR_ROUTINE_RAISED') log.info('routine raised', { ...fields, exception: e.details.exception, trace: e.details.trace });
    // A caller that went away is not an operational problem, and a reset flood must not
    // become a log flood.
    else if (e.code === 'SKEIN_ERR_ABORTED') log.debug('request aborted by the caller', fields);
    else log.warn('request failed', { ...fields, message: e.message });
    if (e.code === 'SKEIN_ERR_OVERLOADED' || e.code === 'SKEIN_ERR_SHUTTING_DOWN' || e.code === 'SKEIN_ERR_CIRCUIT_OPEN' || e.code === 'SKEIN_ERR_STORE_FULL') c.header('retry-after', String(e.details.retryAfterSeconds ?? 1));
    const { trace: _trace, retryAfterSeconds: _r, ...details } = e.details;
    return reply(c, e.status || 500, { code: e.code, message: e.message, requestId, meta: { peer: peer.id, ...details } });
  });

  return app;
}

function reply(c: Context<Env>, status: number, value: unknown): Response {
  const type = c.get('mediaType') ?? 'application/json';
  return c.body(encodeBody(type, value) as Uint8Array<ArrayBuffer>, status as 200, { 'content-type': type });
}

/**
 * The call's deadline. A header over the maximum is refused, not capped: a caller that asked
 * for 10 minutes and silently got 5 would see a deadline error it cannot explain.
 */
function deadlineOf(header: string | undefined, fallback: number, max: number): number {
  if (header === undefined) return Math.min(fallback, max);
  if (!/^\d{1,9}$/.test(header) || Number(header) < 1) {
    throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${TIMEOUT_HEADER} must be a positive integer of milliseconds, got ${JSON.stringify(header)}`);
  }
  const ms = Number(header);
  if (ms > max) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${TIMEOUT_HEADER} ${ms} exceeds the maximum of ${max} ms (limits.maxTimeoutMs)`, { header: TIMEOUT_HEADER, limit: max });
  return ms;
}

/**
 * Reads the request body, refusing (413) as soon as it passes `max` bytes, and giving up when
 * `signal` aborts (the stream was reset: it may never end).
 */
function readBody(incoming: Http2ServerRequest, max: number, signal: AbortSignal): Promise<Buffer> {
  const declared = Number(incoming.headers['content-length']);
  if (declared > max) return Promise.reject(tooLarge(max));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        cleanup();
        incoming.resume(); // discard the rest so the stream can still carry our 413
        reject(tooLarge(max));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new SkeinError('SKEIN_ERR_BAD_REQUEST', `request body could not be read: ${err.message}`));
    };
    const onAbort = () => {
      cleanup();
      reject(new SkeinError('SKEIN_ERR_ABORTED', 'the caller reset the stream before the body was complete'));
    };
    const cleanup = () => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    if (signal.aborted) return onAbort();
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function tooLarge(max: number): SkeinError {
  return new SkeinError('SKEIN_ERR_BODY_TOO_LARGE', `request body exceeds limits.maxBodyBytes (${max} bytes)`, { limit: max });
}
