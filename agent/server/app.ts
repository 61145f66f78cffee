/**
 * HTTP routes (hono), and the dispatch route served on the HTTP/2 stream itself.
 *
 *   POST /v1/dispatch/:routine   {args, kwargs} as CBOR or JSON → {result} (./dispatch.ts)
 *   /v1/calls…                   async calls (./calls.ts)
 *   GET  /v1/routines            the configured routines the caller may dispatch
 *   GET  /healthz                liveness, worker and queue counts
 *
 * The dispatch route is the hot path: the listener offers every new stream to
 * `app.streamRoute` first, which serves a plain POST /v1/dispatch/<name> straight on the
 * stream (no compat objects, no adapter, no routing); every other request, and a dispatch
 * of an unusual shape, goes through the compat layer to hono, whose dispatch route calls the
 * same implementation. Identity comes from a per-session cache, the body is read with the
 * size limit enforced while reading, and the reply is encoded in the request's own media type.
 */
import { Hono, type Context } from 'hono';
import type { Http2Bindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { encodeBody, mediaTypeOf, type MediaType } from '../codec/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import type { DispatchRecorder } from '../metrics/index.ts';
import type { CallDispatcher } from '../workers/call.ts';
import type { AuthPipeline } from '../plugin-host/pipeline.ts';
import type { Identity, RequestAction, RequestInfo } from '../plugin-host/api.ts';
import type { IdentityReader, PeerIdentity } from './identity.ts';
import type { RoutineInfo } from '../sources/routines.ts';
import type { CallerPolicy, CallLimits } from './call-request.ts';
import { registerCallRoutes, type AsyncCallDeps } from './calls.ts';
import { createDispatch, dispatchOnStream, type StreamRoute } from './dispatch.ts';
import { failureReply, requestIdOf } from './reply.ts';

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
  auth: Pick<AuthPipeline, 'authenticate' | 'authorize' | 'allowedRoutines'>;
  /** The discovery plane's view: verified peers and rejection counters. */
  peers: () => { enabled: boolean; peers: unknown[]; rejected?: Record<string, number>; idempotent?: string[] };
  /** Counts dispatches refused before a call existed (the call service counts the rest). */
  metrics?: DispatchRecorder;
  /** Identity of each session's client certificate (shared with the listener, which updates its trust domains). */
  identities: Pick<IdentityReader, 'ofSession'>;
  /** The async calls' store and runner: serves /v1/calls (agent/server/calls.ts). */
  asyncCalls?: AsyncCallDeps;
}

// mediaType: the request's codec, undefined when its content-type is neither CBOR nor JSON
// (replies then use JSON).
type Env = { Bindings: Http2Bindings; Variables: { requestId: string; peer: PeerIdentity; mediaType: MediaType | undefined } };
export type AppEnv = Env;

/** The app, with the route the listener serves on the HTTP/2 stream before hono sees it. */
export type App = Hono<Env> & { streamRoute: StreamRoute };

export function createApp(deps: AppDeps): App {
  const app = new Hono<Env>();
  const { log, routines } = deps;

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
    const requestId = requestIdOf(headers['x-request-id']);
    c.set('requestId', requestId);
    c.set('peer', deps.identities.ofSession(c.env.incoming.stream?.session));
    c.set('mediaType', mediaTypeOf(headers['content-type']));
    c.header('x-request-id', requestId);
    await next();
  });

  const dispatch = createDispatch(deps);
  // The dispatches the stream route leaves to hono (a query string, a percent-encoded name,
  // an expect header): the same implementation, reading the body through the compat request
  // (so the adapter sees it end) and answering on the stream underneath.
  app.post('/v1/dispatch/:routine', async (c) => {
    const incoming = c.env.incoming;
    await dispatch({ stream: incoming.stream, body: incoming, headers: incoming.headers, path: c.req.path, routine: c.req.param('routine'), requestId: c.get('requestId'), peer: c.get('peer') });
    return RESPONSE_ALREADY_SENT;
  });

  if (deps.asyncCalls) registerCallRoutes(app, deps, deps.asyncCalls, { reply, requestInfo });

  // Only the routines the caller may dispatch: each one is put to the authorization a dispatch
  // of it would meet (action "dispatch", method GET, path /v1/routines), so a caller learns no
  // name, function or SHA-256 of a routine it may not run. A fleet agent's certificate is told
  // every routine (DNS discovery reads a peer's routines here; signed adverts carry the names).
  app.get('/v1/routines', async (c) => {
    const info = requestInfo(c, undefined, undefined);
    const identity = await authenticate(c, info);
    const names = await deps.auth.allowedRoutines({ ...info, action: 'dispatch' }, identity, [...routines.keys()], { fleetAgent: isFleetAgent(identity) });
    return reply(c, 200, {
      routines: names.map((name) => {
        const r = routines.get(name)!;
        return { name: r.name, function: r.function, sha256: r.sha256, ...(r.timeoutMs ? { timeoutMs: r.timeoutMs } : {}) };
      }),
    });
  });

  // The fleet's routing table, for every authenticated caller (failover needs it): peers,
  // their endpoints and routine names as their signed adverts (or DNS) told them, and the
  // names of this agent's idempotent routines; never a function or a SHA-256 (docs/api.md).
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
    const requestId = c.get('requestId') ?? requestIdOf(undefined);
    const f = failureReply(err, requestId, (c.get('peer') ?? { id: 'anonymous' }).id, c.req.path, log);
    if (f.retryAfter !== undefined) c.header('retry-after', f.retryAfter);
    return reply(c, f.status, f.body);
  });

  return Object.assign(app, { streamRoute: dispatchOnStream(dispatch, deps.identities) });
}

/**
 * A fleet agent: a certificate (not a token) whose SPIFFE ID is spiffe://<trust domain>/agent/<name>,
 * the form `skein pki issue --kind agent` gives and DNS discovery accepts by default. The trust
 * domain is one of tls.trustDomains already (agent/server/identity.ts refuses any other).
 */
function isFleetAgent(identity: Identity): boolean {
  return identity.principals.length === 0 && FLEET_AGENT.test(identity.peer.spiffeId ?? '');
}
const FLEET_AGENT = /^spiffe:\/\/[^/]+\/agent\/[^/]+$/;

function reply(c: Context<Env>, status: number, value: unknown): Response {
  const type = c.get('mediaType') ?? 'application/json';
  return c.body(encodeBody(type, value) as Uint8Array<ArrayBuffer>, status as 200, { 'content-type': type });
}
