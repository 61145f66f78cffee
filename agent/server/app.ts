/**
 * HTTP routes (hono). The dispatch route is the hot path: identity comes from a per-session
 * cache, the body is read straight from the HTTP/2 stream with the size limit enforced while
 * reading, and the reply is encoded in the request's own media type.
 *
 *   POST /v1/dispatch/:routine   {args, kwargs} as CBOR or JSON → {result}
 *   /v1/calls…                   async calls (./calls.ts)
 *   GET  /v1/routines            configured routines
 *   GET  /healthz                liveness, worker and queue counts
 */
import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { Http2Bindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { encodeBody, mediaTypeOf, type MediaType } from '../codec/index.ts';
import { SkeinError, toSkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { UNKNOWN_ROUTINE, type DispatchRecorder } from '../metrics/index.ts';
import type { CallDispatcher, CallRequest } from '../workers/call.ts';
import type { AuthPipeline } from '../plugin-host/pipeline.ts';
import type { Identity, RequestAction, RequestInfo } from '../plugin-host/api.ts';
import type { IdentityReader, PeerIdentity } from './identity.ts';
import type { RoutineInfo } from '../sources/routines.ts';
import { abortOnClose, admitCall, readCallBody, type CallerPolicy, type CallLimits } from './call-request.ts';
import { streamReply, streamTypeOf } from './stream.ts';
import { registerCallRoutes, type AsyncCallDeps } from './calls.ts';

export { TIMEOUT_HEADER } from './call-request.ts';

export interface AppDeps {
  /** Runs calls (agent/calls/service.ts): audit lines and metrics for every shape. */
  calls: CallDispatcher;
  /** Worker and queue counts for /healthz. */
  stats: () => Record<string, number>;
  callers: CallerPolicy;
  routines: Map<string, RoutineInfo>;
  limits: CallLimits;
  log: Logger;
  isDraining: () => boolean;
  /** The plugin pipeline; a config reload may swap what is behind it between requests. */
  auth: Pick<AuthPipeline, 'authenticate' | 'authorize'>;
  /** The discovery plane's view: verified peers and rejection counters. */
  peers: () => { enabled: boolean; peers: unknown[]; rejected?: Record<string, number>; idempotent?: string[] };
  /** Counts dispatches refused before a call existed (the call service counts the rest). */
  metrics?: DispatchRecorder;
  /** Identity of each session's client certificate (shared with the listener, which updates its trust domains). */
  identities: Pick<IdentityReader, 'ofSession'>;
  /** The async calls' store and runner: serves /v1/calls (agent/server/calls.ts). */
  asyncCalls?: AsyncCallDeps;
}

/** A call's own failure, already counted by the call service. */
class CallFailed extends Error {
  constructor(readonly error: SkeinError) {
    super(error.message);
  }
}

// mediaType: the request's codec, undefined when its content-type is neither CBOR nor JSON
// (replies then use JSON).
type Env = { Bindings: Http2Bindings; Variables: { requestId: string; peer: PeerIdentity; mediaType: MediaType | undefined } };
export type AppEnv = Env;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function createApp(deps: AppDeps): Hono<Env> {
  const app = new Hono<Env>();
  const { log, calls, callers, routines, limits } = deps;

  const requestInfo = (c: Context<Env>, routine: string | undefined, action: RequestAction | undefined): RequestInfo => ({
    requestId: c.get('requestId'),
    action,
    routine,
    method: c.req.method,
    path: c.req.path,
    headers: c.env.incoming.headers as Record<string, string | undefined>,
    remoteAddress: c.env.incoming.socket?.remoteAddress,
  });
  const authenticate = (c: Context<Env>, info: RequestInfo): Promise<Identity> => deps.auth.authenticate(info, c.get('peer'));

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
  // callers cannot grow the label set) and outcome ("ok" or the error code): by the call
  // service once the call exists, here when it was refused before (401, 403, 404, a bad body).
  const metrics = deps.metrics;
  app.post('/v1/dispatch/:routine', async (c) => {
    const name = c.req.param('routine');
    const started = performance.now();
    try {
      return await dispatch(c, name);
    } catch (err) {
      if (err instanceof CallFailed) throw err.error;
      metrics?.dispatch(routines.has(name) ? name : UNKNOWN_ROUTINE, toSkeinError(err).code, (performance.now() - started) / 1000);
      throw err;
    }
  });

  const dispatch = async (c: Context<Env>, name: string): Promise<Response> => {
    const info = requestInfo(c, name, 'dispatch') as RequestInfo & { routine: string };
    const admitted = await admitCall(deps, info, c.get('peer'), c.get('mediaType'));
    const streamType = streamTypeOf(info.headers.accept);
    // Cancellation: a reset stream or a closed connection aborts the call and its worker.
    const closed = abortOnClose(c.env.incoming);
    const stream = c.env.incoming.stream;
    let streaming = false;
    try {
      const body = await readCallBody(c.env.incoming, admitted.mediaType, limits.maxBodyBytes, closed.signal);
      if (closed.signal.aborted || stream?.closed || stream?.destroyed) throw new SkeinError('SKEIN_ERR_ABORTED', 'the caller reset the stream before the call started');
      const req: CallRequest = {
        routine: name,
        args: body.args,
        kwargs: body.kwargs,
        timeoutMs: admitted.timeoutMs,
        signal: closed.signal,
        requestId: c.get('requestId'),
        priority: admitted.priority,
        caller: admitted.caller,
        weight: callers.weightOf(admitted.identity),
        ...(streamType ? { stream: true, shape: 'stream' as const } : {}),
      };
      if (streamType) {
        const requestId = c.get('requestId');
        const { handler, committed } = streamReply(c.env.outgoing, streamType, { 'x-request-id': requestId }, (e) => errorBody(e, requestId, c.get('peer').id));
        calls.call(req, handler);
        await committed.catch((e: SkeinError) => Promise.reject(new CallFailed(e)));
        // From here the handler owns the response, and the close listener the cancellation.
        streaming = true;
        return RESPONSE_ALREADY_SENT;
      }
      const value = await new Promise<unknown>((resolve, reject) => calls.call(req, { onComplete: resolve, onError: (e) => reject(new CallFailed(e)) }));
      if (log.enabled('debug')) log.debug('dispatched', { requestId: c.get('requestId'), peer: c.get('peer').id, routine: name });
      return reply(c, 200, { result: value });
    } finally {
      if (!streaming) closed.release();
    }
  };

  if (deps.asyncCalls) registerCallRoutes(app, deps, deps.asyncCalls, { reply, requestInfo });

  app.get('/v1/routines', async (c) => {
    await authenticate(c, requestInfo(c, undefined, undefined));
    return reply(c, 200, {
      routines: [...routines.values()].map((r) => ({ name: r.name, function: r.function, sha256: r.sha256, ...(r.timeoutMs ? { timeoutMs: r.timeoutMs } : {}) })),
    });
  });

  app.get('/v1/peers', async (c) => {
    await authenticate(c, requestInfo(c, undefined, undefined));
    return reply(c, 200, deps.peers());
  });

  app.get('/healthz', (c) => {
    const draining = deps.isDraining();
    return reply(c, draining ? 503 : 200, { status: draining ? 'draining' : 'ok', ...deps.stats() });
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
    if (e.code === 'SKEIN_ERR_OVERLOADED' || e.code === 'SKEIN_ERR_SHUTTING_DOWN' || e.code === 'SKEIN_ERR_CIRCUIT_OPEN' || e.code === 'SKEIN_ERR_STORE_FULL')
      c.header('retry-after', String(e.details.retryAfterSeconds ?? 1));
    return reply(c, e.status || 500, errorBody(e, requestId, peer.id));
  });

  return app;
}

function reply(c: Context<Env>, status: number, value: unknown): Response {
  const type = c.get('mediaType') ?? 'application/json';
  return c.body(encodeBody(type, value) as Uint8Array<ArrayBuffer>, status as 200, { 'content-type': type });
}

/** The body of an error response (and of a stream's error frame): code, message, request id, details. */
function errorBody(e: SkeinError, requestId: string, peer: string): Record<string, unknown> {
  const { trace: _trace, retryAfterSeconds: _r, ...details } = e.details;
  return { code: e.code, message: e.message, requestId, meta: { peer, ...details } };
}
