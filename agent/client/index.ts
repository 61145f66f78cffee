/**
 * Typed skein client: one shared HTTP/2 connection per peer (undici `Client`, which
 * multiplexes every call as a stream on one TLS session), client certificates, per-call
 * deadline and AbortSignal cancellation. Every failure is a SkeinError whose code says
 * which of the four kinds it is: rejected by the server (its code), routine raised,
 * deadline exceeded, or TLS/transport failure.
 *
 * @example
 *   const client = new SkeinClient({ peer: '127.0.0.1:7443', cert, key, ca });
 *   const sum = await client.dispatch<number>('add', { args: [2, 3] });
 *   await client.close();
 */
// Not the bare 'undici' specifier: under Bun that resolves to Bun's stand-in, which ignores
// the TLS options (see BRIEF.md). test/lint.mjs refuses the bare import.
import { Client } from 'undici/index.js';
import { decodeBody, encodeBody, mediaTypeOf, type MediaType } from '../codec/index.ts';
import { isErrorCode, SkeinError, type ErrorCode } from '../errors/index.ts';

export interface ClientOptions {
  /** HOST:PORT (IPv6 as [addr]:port) or an https:// origin. */
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
}

export interface DispatchOptions {
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  /** Server-side deadline; the client gives up 2 s after it if no answer arrived. */
  timeoutMs?: number;
  signal?: AbortSignal;
  encoding?: 'cbor' | 'json';
  requestId?: string;
  headers?: Record<string, string>;
}

export interface DispatchResult<T> {
  result: T;
  requestId: string;
}

const CLIENT_GRACE_MS = 2000;

export class SkeinClient {
  #client: Client;
  #origin: string;
  #opts: ClientOptions;
  #closed = false;

  constructor(opts: ClientOptions) {
    this.#opts = opts;
    this.#origin = opts.peer.startsWith('https://') ? opts.peer : `https://${opts.peer}`;
    const host = new URL(this.#origin).hostname.replace(/^\[|\]$/g, '');
    this.#client = new Client(this.#origin, {
      allowH2: true,
      // Many concurrent streams on the one connection instead of one connection per call.
      pipelining: 256,
      connect: {
        cert: opts.cert,
        key: opts.key,
        ca: opts.ca,
        // An IP literal cannot be an SNI name; verification still checks the IP SAN.
        servername: opts.servername ?? (/^[\d.]+$|:/.test(host) ? undefined : host),
        ALPNProtocols: ['h2'],
        timeout: opts.connectTimeoutMs ?? 10_000,
      },
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  }

  /** Runs a routine and returns its result; throws SkeinError on any failure. */
  async dispatch<T = unknown>(routine: string, options: DispatchOptions = {}): Promise<T> {
    return (await this.dispatchDetailed<T>(routine, options)).result;
  }

  /** Like dispatch, also returning the request id for correlation with agent logs. */
  async dispatchDetailed<T = unknown>(routine: string, options: DispatchOptions = {}): Promise<DispatchResult<T>> {
    const mediaType: MediaType = (options.encoding ?? this.#opts.encoding ?? 'cbor') === 'cbor' ? 'application/cbor' : 'application/json';
    const body = encodeBody(mediaType, { args: options.args ?? [], kwargs: options.kwargs ?? {} });
    const headers: Record<string, string> = { 'content-type': mediaType, accept: mediaType, ...this.#opts.headers, ...options.headers };
    if (options.timeoutMs !== undefined) headers['x-skein-timeout-ms'] = String(options.timeoutMs);
    if (options.requestId) headers['x-request-id'] = options.requestId;
    const { status, value, requestId } = await this.#request('POST', `/v1/dispatch/${encodeURIComponent(routine)}`, headers, body, options);
    if (status !== 200 || typeof value !== 'object' || value === null || !('result' in value)) throw responseError(status, value, requestId);
    return { result: (value as { result: T }).result, requestId };
  }

  async routines(): Promise<Array<{ name: string; function: string; sha256: string; timeoutMs?: number }>> {
    const { status, value, requestId } = await this.#request('GET', '/v1/routines', { accept: 'application/json' }, undefined, {});
    if (status !== 200) throw responseError(status, value, requestId);
    return (value as { routines: Array<{ name: string; function: string; sha256: string }> }).routines;
  }

  async health(): Promise<Record<string, unknown>> {
    const { status, value, requestId } = await this.#request('GET', '/healthz', { accept: 'application/json' }, undefined, {});
    if (status !== 200 && status !== 503) throw responseError(status, value, requestId);
    return value as Record<string, unknown>;
  }

  /** Waits for in-flight calls, then closes the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#client.close();
  }

  /** Aborts in-flight calls and closes the connection. Idempotent. */
  async destroy(): Promise<void> {
    this.#closed = true;
    await this.#client.destroy();
  }

  async #request(method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: Uint8Array | undefined, options: DispatchOptions) {
    if (this.#closed) throw new SkeinError('SKEIN_ERR_TRANSPORT', 'the client is closed');
    const deadline = options.timeoutMs !== undefined ? options.timeoutMs + CLIENT_GRACE_MS : undefined;
    const timeoutSignal = deadline !== undefined ? AbortSignal.timeout(deadline) : undefined;
    const signal = timeoutSignal && options.signal ? AbortSignal.any([timeoutSignal, options.signal]) : (timeoutSignal ?? options.signal);
    try {
      const res = await this.#client.request({ method, path, headers, body, signal });
      const chunks: Buffer[] = [];
      for await (const chunk of res.body) chunks.push(chunk as Buffer);
      const bytes = Buffer.concat(chunks);
      const type = mediaTypeOf(res.headers['content-type'] as string | undefined);
      const requestId = String(res.headers['x-request-id'] ?? headers['x-request-id'] ?? '');
      if (!type) throw new SkeinError('SKEIN_ERR_BAD_RESPONSE', `HTTP ${res.statusCode} with content-type ${String(res.headers['content-type'])} is not a skein response`, { status: res.statusCode });
      let value: unknown;
      try {
        value = bytes.length ? decodeBody(type, bytes) : undefined;
      } catch {
        throw new SkeinError('SKEIN_ERR_BAD_RESPONSE', `HTTP ${res.statusCode}: undecodable ${type} body`, { status: res.statusCode });
      }
      return { status: res.statusCode, value, requestId };
    } catch (err) {
      if (err instanceof SkeinError) throw err;
      if (timeoutSignal?.aborted) throw new SkeinError('SKEIN_ERR_CLIENT_TIMEOUT', `no response within ${deadline} ms`, {}, { cause: err });
      if (options.signal?.aborted) throw new SkeinError('SKEIN_ERR_ABORTED', 'the call was aborted by the caller', {}, { cause: err });
      throw transportError(err);
    }
  }
}

function responseError(status: number, value: unknown, requestId: string): SkeinError {
  const v = (value ?? {}) as { code?: unknown; message?: unknown; meta?: Record<string, unknown> };
  if (isErrorCode(v.code)) {
    return new SkeinError(v.code as ErrorCode, String(v.message ?? v.code), { status, requestId, ...v.meta });
  }
  return new SkeinError('SKEIN_ERR_BAD_RESPONSE', `unexpected HTTP ${status} response`, { status, requestId });
}

const TLS_HINTS = /SSL|TLS|CERT|certificate|handshake|self[- ]signed|UNABLE_TO_|ALERT|HOSTNAME|altname/i;

/** Classifies a connection failure as TLS (credentials, CA, name) or plain transport. */
export function transportError(err: unknown): SkeinError {
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e?.code ?? e?.cause?.code ?? '';
  const message = e?.message ?? String(err);
  const detail = [code, message, e?.cause?.message].filter(Boolean).join(': ');
  if (TLS_HINTS.test(code) || TLS_HINTS.test(message)) return new SkeinError('SKEIN_ERR_TLS', `TLS failure: ${detail}`, { cause: code }, { cause: err });
  return new SkeinError('SKEIN_ERR_TRANSPORT', `transport failure: ${detail}`, { cause: code }, { cause: err });
}
