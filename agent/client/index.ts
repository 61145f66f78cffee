/**
 * Typed skein client: one shared HTTP/2 session per peer (every call is a stream on one TLS
 * connection), client certificates, per-call deadline and AbortSignal cancellation. Every
 * failure is a SkeinError whose code says which kind it is: rejected by the server (its
 * code), routine raised, deadline exceeded, or TLS/transport failure.
 *
 * Built on node:http2 rather than undici: measured on these machines under Bun against the
 * same bare HTTP/2 server (docs/benchmarks.md), node:http2 gave 0.08 ms p50 and 9.3k calls/s
 * at 64 concurrent streams, undici 0.20 ms and 4.0k/s (undici's HTTP/2 path runs on top of
 * node:http2, so it can only add cost).
 *
 * Every call shape of docs/calls.md: sync (dispatch), streamed (stream: an async iterator of
 * the items a generator yields) and async (submit, then call / wait / cancel / calls). Bytes
 * travel as Uint8Array both ways in CBOR (the default encoding); JSON cannot carry them.
 *
 * @example
 *   const client = new SkeinClient({ peer: '127.0.0.1:7443', cert, key, ca });
 *   const sum = await client.dispatch<number>('add', { args: [2, 3], priority: 'high' });
 *   const thumb = await client.dispatch<Uint8Array>('resize', { args: [readFileSync('photo.jpg')] });
 *   for await (const n of client.stream<number>('countdown', { args: [5] })) console.log(n); // 5 4 3 2 1
 *   const { id } = await client.submit('report', { args: ['2026-01'], priority: 'low' });
 *   const done = await client.wait(id, { timeoutMs: 60_000 }); // {status: 'succeeded', result, ...}
 *   await client.close();
 *   // One-way TLS with a token plugin (tls.clientCerts: "optional"): no client certificate.
 *   const viaToken = new SkeinClient({ peer: '127.0.0.1:7443', ca, token: jwt }); // sends "Bearer <jwt>"
 *   // h2c behind a TLS-terminating proxy (tls.plaintext): only when asked for.
 *   const plain = new SkeinClient({ peer: 'http://127.0.0.1:7443', plaintext: true, token: jwt });
 */
import http2 from 'node:http2';
import type { Pin } from '../pki/pin.ts';
import type { MediaType } from '../codec/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { decodeResponse, responseError, type RawResponse } from './answer.ts';
import { transportError } from './transport-error.ts';
import { alertRefusal, silentRefusal, unusableCertificate } from './tls-refusal.ts';
import { authorizationHeader, callBody, callHeaders, setAuthorization, type DispatchOptions } from './request.ts';
import { ItemStream, type OpenedStream } from './stream.ts';
import { originOf, pinCheck } from './session.ts';
import { callPath, callsQuery, checkCallId, FINAL_STATUSES, type CallRecord, type CallsQuery, type Submitted } from './calls.ts';

export { authorizationHeader, transportError };
export type { DispatchOptions } from './request.ts';
export type { CallRecord, CallStatus, CallsQuery, Submitted } from './calls.ts';
export { CALL_STATUSES } from './calls.ts';
export type { ItemStream } from './stream.ts';

export interface ClientOptions {
  /** HOST:PORT (IPv6 as [addr]:port), an https:// origin, or (with plaintext) an http:// one. */
  peer: string;
  cert?: string | Buffer;
  key?: string | Buffer;
  ca?: string | Buffer;
  /** TLS server name to verify; defaults to the peer host. */
  servername?: string;
  /** Default encoding of request bodies. */
  encoding?: 'cbor' | 'json';
  connectTimeoutMs?: number;
  /** Extra headers on every call (e.g. authorization for token plugins). */
  headers?: Record<string, string>;
  /**
   * Identity the server must present (a discovered peer's advertised certificate): checked
   * after the handshake and before any request is sent; a mismatch fails every call with
   * SKEIN_ERR_PEER_IDENTITY.
   */
  pin?: Pin;
  /**
   * Token for the agent's token plugins, sent on every call as the authorization header:
   * "Bearer <token>", or verbatim when it contains a space (e.g. "SkeinNonce …").
   */
  token?: string;
  /**
   * Speak plaintext HTTP/2 (h2c, prior knowledge) to an agent with tls.plaintext, e.g. on
   * the far side of a TLS-terminating proxy. Nothing is encrypted, tokens included, so it is
   * never inferred: an http:// peer without it is refused, and it cannot be pinned.
   */
  plaintext?: boolean;
  /**
   * Largest frame of a streamed call (one item with its envelope) and largest error body the
   * client holds; past it the stream is reset and fails with SKEIN_ERR_BAD_RESPONSE. Default
   * 64 MiB (four times the agent's default limits.maxResultBytes).
   */
  maxFrameBytes?: number;
}

export interface StreamOptions extends DispatchOptions {
  /** Frames as CBOR sequence (the default, and the only way to receive bytes) or NDJSON. */
  encoding?: 'cbor' | 'json';
}

export interface CallOptions {
  /** Wait up to this long for the call to finish before answering (long poll, ?waitMs=). */
  waitMs?: number;
  signal?: AbortSignal;
}

export interface WaitOptions {
  /** Give up after this long (SKEIN_ERR_CLIENT_TIMEOUT, with the call's last status). */
  timeoutMs: number;
  /** Longest single long poll; the agent caps each at limits.maxTimeoutMs. Default 30 s. */
  sliceMs?: number;
  signal?: AbortSignal;
}

export interface DispatchResult<T> {
  result: T;
  requestId: string;
}

const CLIENT_GRACE_MS = 2000;
const MAX_FRAME_BYTES = 64 * 1024 * 1024;
const WAIT_SLICE_MS = 30_000;

export class SkeinClient {
  #origin: string;
  #opts: ClientOptions;
  #session: http2.ClientHttp2Session | undefined;
  /** Why the current session failed, so its pending streams report the real cause. */
  #sessionError: SkeinError | undefined;
  #closed = false;
  #inFlight = 0;
  /** Settles once the current session's server identity was checked against `pin`. */
  #verified: Promise<void> | undefined;
  /** The client-wide authorization value, checked once (a bad token fails construction). */
  #authorization: string | undefined;
  /** Per session: TLS handshake done, server SETTINGS seen (tells a refused certificate from a dead link). */
  #life = new WeakMap<http2.ClientHttp2Session, { handshake: boolean; settings: boolean }>();

  constructor(opts: ClientOptions) {
    this.#opts = opts;
    this.#origin = originOf(opts);
    this.#authorization = opts.token === undefined ? undefined : authorizationHeader(opts.token);
  }

  /** Headers every request carries: the client's extra headers and its token. */
  #baseHeaders(): http2.OutgoingHttpHeaders {
    const headers: http2.OutgoingHttpHeaders = { ...this.#opts.headers };
    if (this.#authorization !== undefined) setAuthorization(headers, this.#authorization);
    return headers;
  }

  /** Runs a routine and returns its result; throws SkeinError on any failure. */
  async dispatch<T = unknown>(routine: string, options: DispatchOptions = {}): Promise<T> {
    return (await this.dispatchDetailed<T>(routine, options)).result;
  }

  /** Like dispatch, also returning the request id for correlation with agent logs. */
  async dispatchDetailed<T = unknown>(routine: string, options: DispatchOptions = {}): Promise<DispatchResult<T>> {
    const mediaType = this.#mediaType(options);
    const body = callBody(mediaType, options);
    const headers = { ...this.#callHeaders(options), ':method': 'POST', ':path': `/v1/dispatch/${encodeURIComponent(routine)}`, 'content-type': mediaType };
    const { status, value, requestId } = await this.#request(headers, body, options);
    if (status !== 200 || typeof value !== 'object' || value === null || !('result' in value)) throw responseError(status, value, requestId);
    return { result: (value as { result: T }).result, requestId };
  }

  /**
   * Runs a routine as a stream: iterate the result for the items its generator yields, as they
   * are produced (a routine that is not a generator yields its return value once). The request
   * is sent at the first next(); leaving the loop early stops the generator on the agent.
   *
   * @example
   *   for await (const n of client.stream<number>('countdown', { args: [5] })) console.log(n);
   */
  stream<T = unknown>(routine: string, options: StreamOptions = {}): ItemStream<T> {
    const mediaType = this.#mediaType(options);
    const body = callBody(mediaType, options);
    const type = mediaType === 'application/cbor' ? 'application/cbor-seq' : 'application/x-ndjson';
    const headers = { ...this.#callHeaders(options), ':method': 'POST', ':path': `/v1/dispatch/${encodeURIComponent(routine)}`, 'content-type': mediaType, accept: type };
    const maxFrameBytes = this.#opts.maxFrameBytes ?? MAX_FRAME_BYTES;
    const open = async (): Promise<OpenedStream> => {
      const { stream, session, release } = await this.#open(headers, body);
      return { stream, release, explain: (err) => this.#sessionError ?? this.#explain(session, err) };
    };
    return new ItemStream<T>(open, {
      type,
      maxFrameBytes,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.timeoutMs !== undefined ? { deadlineMs: options.timeoutMs + CLIENT_GRACE_MS } : {}),
    });
  }

  /** Submits an async call (POST /v1/calls/:routine): stored by the agent before it answers; fetch it with call() or wait(). */
  async submit(routine: string, options: DispatchOptions = {}): Promise<Submitted> {
    const mediaType = this.#mediaType(options);
    const body = callBody(mediaType, options);
    const headers = { ...this.#callHeaders(options), ':method': 'POST', ':path': `/v1/calls/${encodeURIComponent(routine)}`, 'content-type': mediaType };
    const { status, value, requestId } = await this.#request(headers, body, options);
    const v = value as Partial<Submitted> | undefined;
    if (status !== 202 || typeof v?.id !== 'string' || typeof v.status !== 'string') throw responseError(status, value, requestId);
    return v as Submitted;
  }

  /** An async call as the agent holds it now; with waitMs, once it finished or waitMs passed. */
  async call<T = unknown>(id: string, options: CallOptions = {}): Promise<CallRecord<T>> {
    return this.#callRequest<T>('GET', callPath(checkCallId(id), options.waitMs), options, options.waitMs);
  }

  /** Long-polls until the call has a final status (succeeded, failed, cancelled, interrupted); a failed call is returned, not thrown. */
  async wait<T = unknown>(id: string, options: WaitOptions): Promise<CallRecord<T>> {
    checkCallId(id);
    const until = Date.now() + options.timeoutMs;
    const slice = options.sliceMs ?? WAIT_SLICE_MS;
    let record: CallRecord<T> | undefined;
    // Bounded: every turn waits up to a slice, and the loop ends at the timeout.
    for (let left = options.timeoutMs; ; left = until - Date.now()) {
      record = await this.call<T>(id, { waitMs: Math.max(0, Math.min(slice, left)), ...(options.signal ? { signal: options.signal } : {}) });
      if (FINAL_STATUSES.has(record.status)) return record;
      if (until - Date.now() <= 0) break;
    }
    throw new SkeinError('SKEIN_ERR_CLIENT_TIMEOUT', `call ${id} is still ${record.status} after ${options.timeoutMs} ms`, { id, status: record.status });
  }

  /** Cancels an async call (DELETE /v1/calls/<id>): the call as it ended, cancelled or already final. */
  async cancel<T = unknown>(id: string, options: { signal?: AbortSignal } = {}): Promise<CallRecord<T>> {
    return this.#callRequest<T>('DELETE', callPath(checkCallId(id)), options);
  }

  /** The caller's own async calls, newest first. */
  async calls(query: CallsQuery = {}): Promise<CallRecord[]> {
    const { status, value, requestId } = await this.#request({ ...this.#baseHeaders(), ':method': 'GET', ':path': `/v1/calls${callsQuery(query)}` }, undefined, {});
    const calls = (value as { calls?: unknown } | undefined)?.calls;
    if (status !== 200 || !Array.isArray(calls)) throw responseError(status, value, requestId);
    return calls as CallRecord[];
  }

  async #callRequest<T>(method: string, path: string, options: { signal?: AbortSignal }, waitMs?: number): Promise<CallRecord<T>> {
    // A long poll answers after up to waitMs: the client waits that long plus the grace period.
    const timeoutMs = (waitMs ?? 0) + (this.#opts.connectTimeoutMs ?? 10_000);
    const { status, value, requestId } = await this.#request({ ...this.#baseHeaders(), ':method': method, ':path': path }, undefined, { ...options, clientTimeoutMs: timeoutMs });
    const v = value as Partial<CallRecord<T>> | undefined;
    if (status !== 200 || typeof v?.id !== 'string' || typeof v.status !== 'string') throw responseError(status, value, requestId);
    return v as CallRecord<T>;
  }

  #mediaType(options: { encoding?: 'cbor' | 'json' }): MediaType {
    return (options.encoding ?? this.#opts.encoding ?? 'cbor') === 'cbor' ? 'application/cbor' : 'application/json';
  }

  #callHeaders(options: DispatchOptions): http2.OutgoingHttpHeaders {
    return callHeaders(this.#baseHeaders(), options, authorizationHeader);
  }

  async routines(): Promise<Array<{ name: string; function: string; sha256: string; timeoutMs?: number }>> {
    const { status, value, requestId } = await this.#request({ ...this.#baseHeaders(), ':method': 'GET', ':path': '/v1/routines' }, undefined, {});
    if (status !== 200) throw responseError(status, value, requestId);
    return (value as { routines: Array<{ name: string; function: string; sha256: string }> }).routines;
  }

  /** The agent's verified peers (GET /v1/peers). */
  async peers(): Promise<{ enabled: boolean; peers: Array<Record<string, unknown>>; rejected?: Record<string, number>; idempotent?: string[] }> {
    const { status, value, requestId } = await this.#request({ ...this.#baseHeaders(), ':method': 'GET', ':path': '/v1/peers' }, undefined, {});
    if (status !== 200) throw responseError(status, value, requestId);
    return value as { enabled: boolean; peers: Array<Record<string, unknown>>; rejected?: Record<string, number>; idempotent?: string[] };
  }

  async health(): Promise<Record<string, unknown>> {
    const { status, value, requestId } = await this.#request({ ...this.#baseHeaders(), ':method': 'GET', ':path': '/healthz' }, undefined, {});
    if (status !== 200 && status !== 503) throw responseError(status, value, requestId);
    return value as Record<string, unknown>;
  }

  /** Lets in-flight calls finish, then closes the connection. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const session = this.#session;
    this.#session = undefined;
    if (session && !session.closed) await new Promise<void>((resolve) => session.close(resolve));
  }

  /** Aborts in-flight calls and closes the connection. Idempotent. */
  async destroy(): Promise<void> {
    this.#closed = true;
    this.#session?.destroy();
    this.#session = undefined;
  }

  #connect(): http2.ClientHttp2Session {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return this.#session;
    const url = new URL(this.#origin);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    let session: http2.ClientHttp2Session;
    try {
      session = this.#opts.plaintext
        ? http2.connect(this.#origin)
        : http2.connect(this.#origin, {
            cert: this.#opts.cert,
            key: this.#opts.key,
            ca: this.#opts.ca,
            // An IP literal cannot be an SNI name; verification still checks the IP SAN.
            servername: this.#opts.servername ?? (/^[\d.]+$|:/.test(host) ? undefined : host),
            ALPNProtocols: ['h2'],
            // A pinned peer: the chain is still verified against the CA, and the host-name
            // check gives way to the stricter pin (this exact certificate and SPIFFE ID, checked
            // before any request) — as the agent's own identity check does. A peer found by DNS
            // or advertised is dialled at an address its certificate need not name (a pod IP).
            ...(this.#opts.pin ? { checkServerIdentity: () => undefined } : {}),
          });
    } catch (err) {
      // Bun's TLS library refuses some certificates before connecting (a key usage that
      // forbids TLS client authentication): nothing was sent.
      throw unusableCertificate(err);
    }
    this.#sessionError = undefined;
    const life = { handshake: false, settings: false };
    this.#life.set(session, life);
    const timer = setTimeout(
      () => session.destroy(new SkeinError('SKEIN_ERR_TRANSPORT', `no connection to ${this.#opts.peer} within ${this.#opts.connectTimeoutMs ?? 10_000} ms`)),
      this.#opts.connectTimeoutMs ?? 10_000,
    );
    session.once('connect', () => {
      clearTimeout(timer);
      life.handshake = true;
    });
    session.once('remoteSettings', () => (life.settings = true));
    session.on('error', (err) => {
      clearTimeout(timer);
      this.#sessionError = this.#explain(session, err);
    });
    if (this.#opts.pin) this.#verified = pinCheck(session, this.#opts.pin, this.#opts.peer, (err) => this.#explain(session, err));
    session.once('close', () => {
      clearTimeout(timer);
      if (this.#session === session) this.#session = undefined;
    });
    // Calls in flight keep the process alive; an idle connection must not.
    session.unref?.();
    this.#session = session;
    return session;
  }

  /**
   * Why a call on `session` got no answer: a TLS alert refusing the client certificate, a
   * connection the agent closed after the handshake and before its first HTTP/2 frame (how
   * an agent under Bun refuses a certificate: tls-refusal.ts), or a plain transport failure.
   */
  #explain(session: http2.ClientHttp2Session, err: unknown): SkeinError {
    if (err instanceof SkeinError) return err;
    if (this.#opts.plaintext) return transportError(err);
    const creds = { cert: this.#opts.cert, ca: this.#opts.ca };
    const alert = alertRefusal(err, creds);
    if (alert) return alert;
    const life = this.#life.get(session);
    if (life?.handshake && !life.settings) return silentRefusal(creds, err);
    return transportError(err);
  }

  /**
   * Opens one request stream on the shared session (connecting, and checking a pinned identity,
   * first). `release` must be called once when the stream is done with: while any stream is in
   * flight the session keeps the process alive.
   */
  async #open(headers: http2.OutgoingHttpHeaders, body: Uint8Array | undefined): Promise<{ stream: http2.ClientHttp2Stream; session: http2.ClientHttp2Session; release: () => void }> {
    if (this.#closed) throw new SkeinError('SKEIN_ERR_TRANSPORT', 'the client is closed', { sent: false });
    const session = this.#connect();
    // A pinned peer proves its identity before it sees a single request.
    if (this.#verified) await this.#verified;
    const stream = session.request(headers, { endStream: body === undefined });
    if (this.#inFlight++ === 0) session.ref?.();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--this.#inFlight === 0 && !session.destroyed) session.unref?.();
    };
    if (body !== undefined) stream.end(body);
    return { stream, session, release };
  }

  /** One request with a buffered answer. `clientTimeoutMs` overrides the deadline-derived client timeout. */
  async #request(headers: http2.OutgoingHttpHeaders, body: Uint8Array | undefined, options: { signal?: AbortSignal; timeoutMs?: number; clientTimeoutMs?: number }): Promise<RawResponse> {
    if (options.signal?.aborted) throw new SkeinError('SKEIN_ERR_ABORTED', 'the call was aborted by the caller', { sent: false });
    const { stream, session, release } = await this.#open(headers, body);
    return new Promise<RawResponse>((resolve, reject) => {
      let settled = false;
      let status = 0;
      let responseHeaders: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];

      const finish = (err: SkeinError | undefined, value?: RawResponse) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        release();
        if (err) reject(err);
        else resolve(value!);
      };
      const deadline = options.clientTimeoutMs ?? (options.timeoutMs !== undefined ? options.timeoutMs + CLIENT_GRACE_MS : undefined);
      const timer =
        deadline !== undefined
          ? setTimeout(() => {
              stream.close(http2.constants.NGHTTP2_CANCEL);
              finish(new SkeinError('SKEIN_ERR_CLIENT_TIMEOUT', `no response within ${deadline} ms`));
            }, deadline)
          : undefined;
      const onAbort = () => {
        // RST_STREAM(CANCEL): the agent kills the worker running this call.
        stream.close(http2.constants.NGHTTP2_CANCEL);
        finish(new SkeinError('SKEIN_ERR_ABORTED', 'the call was aborted by the caller'));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });

      stream.on('response', (h) => {
        responseHeaders = h;
        status = Number(h[':status']);
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        // The stream can end without response headers when the connection dies mid-call:
        // that is a transport failure (the call may have run), not a malformed response.
        if (!status) return finish(this.#sessionError ?? this.#explain(session, new Error('the connection closed before a response arrived')));
        try {
          finish(undefined, decodeResponse(status, responseHeaders, Buffer.concat(chunks), headers));
        } catch (err) {
          finish(err as SkeinError);
        }
      });
      stream.on('error', (err) => finish(this.#sessionError ?? this.#explain(session, err)));
      stream.on('close', () => {
        if (!settled) finish(this.#sessionError ?? this.#explain(session, new Error(`stream closed before a response (code ${stream.rstCode})`)));
      });
    });
  }
}
