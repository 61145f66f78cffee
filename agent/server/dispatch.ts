/**
 * POST /v1/dispatch/:routine, the hot path: one implementation, written against the HTTP/2
 * stream, reached two ways.
 *
 *  - On the stream (`dispatchOnStream`, called by the listener for every new stream): a POST
 *    whose path is exactly /v1/dispatch/<name> is served right there, from the stream's
 *    headers object, with stream.respond / write / end. No compat request/response objects,
 *    no @hono/node-server adapter, no hono routing: docs/benchmarks.md "Serving dispatch on
 *    the HTTP/2 stream" has the before/after figures.
 *  - Through hono (app.ts), for the requests of that route whose shape hono has more to say
 *    about: a query string, a percent-encoded name, an `expect` header, a host the adapter
 *    refuses. The route hands the same function the compat request as the body to read, and
 *    answers on the stream underneath.
 *
 * Either way: the request id, the identity from the session cache, admission (authn, routine,
 * authz, media type, deadline, priority: call-request.ts), the body read with its limit, the
 * call through the call service, the reply in the request's media type or as a stream
 * (`accept`), the same error bodies (reply.ts) and the same dispatch metric.
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import { encodeBody, mediaTypeOf, type MediaType } from '../codec/index.ts';
import { SkeinError, toSkeinError } from '../../common/errors/index.ts';
import { UNKNOWN_ROUTINE } from '../metrics/index.ts';
import type { CallRequest } from '../workers/call.ts';
import type { RequestInfo } from '../plugin-host/api.ts';
import type { IdentityReader, PeerIdentity } from './identity.ts';
import type { AppDeps } from './app.ts';
import { abortOnClose, admitCall, readCallBody } from './call-request.ts';
import { failureReply, errorBody, requestIdOf } from './reply.ts';
import { streamReply, streamTypeOf } from './stream.ts';
import type { StreamRoute } from './listener.ts';

export type { StreamRoute };

/** One dispatch request, wherever it came in. */
export interface DispatchExchange {
  /** Where the answer goes, and whose close cancels the call. */
  stream: ServerHttp2Stream;
  /** The request body: the stream itself, or the compat request reading it. */
  body: Readable;
  headers: IncomingHttpHeaders;
  /** The path as the plugins see it (RequestInfo.path). */
  path: string;
  routine: string;
  requestId: string;
  peer: PeerIdentity;
}

/** Serves a dispatch: resolves once the answer is written (a streamed one: once its first frame is). */
export type Dispatch = (x: DispatchExchange) => Promise<void>;

/** A call's own failure, already counted by the call service. */
class CallFailed extends Error {
  constructor(readonly error: SkeinError) {
    super(error.message);
  }
}

type Deps = Pick<AppDeps, 'calls' | 'callers' | 'routines' | 'limits' | 'log' | 'auth' | 'metrics'>;

export function createDispatch(deps: Deps): Dispatch {
  const { calls, callers, routines, limits, log, metrics } = deps;

  // Every dispatch is counted once, by routine (a name not configured counts as "_unknown", so
  // callers cannot grow the label set) and outcome ("ok" or the error code): by the call
  // service once the call exists, here when it was refused before (401, 403, 404, a bad body).
  return async (x) => {
    const started = performance.now();
    const mediaType = mediaTypeOf(x.headers['content-type'] as string | undefined);
    try {
      await serve(x, mediaType);
    } catch (err) {
      const failed = err instanceof CallFailed ? err.error : err;
      if (!(err instanceof CallFailed)) metrics?.dispatch(routines.has(x.routine) ? x.routine : UNKNOWN_ROUTINE, toSkeinError(err).code, (performance.now() - started) / 1000);
      const f = failureReply(failed, x.requestId, x.peer.id, x.path, log);
      try {
        send(x.stream, f.status, mediaType, x.requestId, f.body, f.retryAfter);
      } catch (e) {
        // The stream went away between the check and the write: nobody is left to tell.
        log.debug('error response not sent', { requestId: x.requestId, error: (e as Error).message });
      }
    }
  };

  async function serve(x: DispatchExchange, mediaType: MediaType | undefined): Promise<void> {
    const { stream, requestId, routine: name } = x;
    const info: RequestInfo & { routine: string } = {
      requestId,
      action: 'dispatch',
      routine: name,
      method: 'POST',
      path: x.path,
      headers: x.headers as Record<string, string | undefined>,
      remoteAddress: stream.session?.socket?.remoteAddress,
    };
    const admitted = await admitCall(deps, info, x.peer, mediaType);
    const streamType = streamTypeOf(info.headers.accept);
    // Cancellation: a reset stream or a closed connection aborts the call and its worker.
    const closed = abortOnClose(stream);
    let streaming = false;
    try {
      const body = await readCallBody(x.body, info.headers['content-length'], admitted.mediaType, limits.maxBodyBytes, closed.signal);
      if (closed.signal.aborted || stream.closed || stream.destroyed) throw new SkeinError('SKEIN_ERR_ABORTED', 'the caller reset the stream before the call started');
      const req: CallRequest = {
        routine: name,
        args: body.args,
        kwargs: body.kwargs,
        timeoutMs: admitted.timeoutMs,
        signal: closed.signal,
        requestId,
        priority: admitted.priority,
        caller: admitted.caller,
        weight: callers.weightOf(admitted.identity),
        ...(streamType ? { stream: true, shape: 'stream' as const } : {}),
      };
      if (streamType) {
        const { handler, committed } = streamReply(stream, streamType, { 'x-request-id': requestId }, (e) => errorBody(e, requestId, x.peer.id));
        calls.call(req, handler);
        await committed.catch((e: SkeinError) => Promise.reject(new CallFailed(e)));
        // From here the handler owns the response, and the close listener the cancellation.
        streaming = true;
        return;
      }
      const value = await new Promise<unknown>((resolve, reject) => calls.call(req, { onComplete: resolve, onError: (e) => reject(new CallFailed(e)) }));
      if (log.enabled('debug')) log.debug('dispatched', { requestId, peer: x.peer.id, routine: name });
      send(stream, 200, admitted.mediaType, requestId, { result: value });
    } finally {
      if (!streaming) closed.release();
    }
  }
}

/** Writes a whole response: the value in `type` (JSON when the request's type was neither CBOR nor JSON). */
function send(stream: ServerHttp2Stream, status: number, type: MediaType | undefined, requestId: string, value: unknown, retryAfter?: string): void {
  // A caller that reset the stream has nobody left to answer.
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  const contentType = type ?? 'application/json';
  const bytes = encodeBody(contentType, value);
  stream.respond({
    ':status': status,
    'content-type': contentType,
    'x-request-id': requestId,
    ...(retryAfter !== undefined ? { 'retry-after': retryAfter } : {}),
    'content-length': bytes.byteLength,
  });
  stream.end(bytes);
}

const PREFIX = '/v1/dispatch/';
/**
 * A routine segment hono would route unchanged: no "%" (hono decodes), no "?" (hono strips
 * the query), not starting with "." (URL parsing resolves "." and ".." segments). Routine
 * names (common/names) always fit; anything else this route gets goes through hono.
 */
const PLAIN_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;

/**
 * The stream-level entry: serves `stream` and returns true when it is a dispatch of the plain
 * shape, else returns false and the listener hands it to the compat layer and hono.
 */
export function dispatchOnStream(dispatch: Dispatch, identities: Pick<IdentityReader, 'ofSession'>): StreamRoute {
  return (stream, headers, answeredEarly) => {
    const path = headers[':path'];
    if (headers[':method'] !== 'POST' || typeof path !== 'string' || !path.startsWith(PREFIX)) return false;
    const routine = path.slice(PREFIX.length);
    // `expect` is answered by the compat layer (100-continue, 417), before any route runs.
    if (!PLAIN_SEGMENT.test(routine) || headers.expect !== undefined || !hostAccepted(headers)) return false;
    // What @hono/node-server does after a response while the body is still coming (a refusal
    // before the body was read, a 413 past the discard limit): two timer turns later, a body
    // still not ended is given up and the stream reset, so the caller stops sending it; the
    // listener then watches for a caller that waits to send it anyway (answeredEarly).
    let bodyEnded = false;
    stream.once('end', () => (bodyEnded = true));
    const exchange: DispatchExchange = { stream, body: stream, headers, path, routine, requestId: requestIdOf(headers['x-request-id']), peer: identities.ofSession(stream.session) };
    void dispatch(exchange).then(() => {
      if (bodyEnded) return;
      answeredEarly(stream, headers);
      setTimeout(() => !bodyEnded && setTimeout(() => stream.destroy()));
    });
    return true;
  };
}

/**
 * Whether @hono/node-server would accept the request's scheme and host (it answers 400
 * otherwise, before any route): the same checks, memoised, since a connection repeats one
 * authority on every request.
 */
function hostAccepted(headers: IncomingHttpHeaders): boolean {
  const scheme = headers[':scheme'];
  const host = headers[':authority'] ?? headers.host;
  if ((scheme !== 'https' && scheme !== 'http') || typeof host !== 'string' || host === '') return false;
  const key = `${scheme}://${host}`;
  let ok = seenHosts.get(key);
  if (ok === undefined) {
    try {
      const { hostname } = new URL(`${key}/`);
      ok = hostname.length === host.length || hostname === host.replace(/:\d+$/, '');
    } catch {
      ok = false;
    }
    if (seenHosts.size >= MAX_SEEN_HOSTS) seenHosts.clear();
    seenHosts.set(key, ok);
  }
  return ok;
}
const seenHosts = new Map<string, boolean>();
const MAX_SEEN_HOSTS = 64;
