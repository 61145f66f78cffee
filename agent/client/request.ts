/**
 * What every call shape sends (sync, stream, async submit): the body `{args, kwargs}` in CBOR
 * or JSON and the call's headers (deadline, priority, request id, token). Mistakes the agent
 * would refuse, or worse accept changed, fail here before anything is sent.
 */
import type http2 from 'node:http2';
import { SkeinError } from '../../common/errors/index.ts';
import { encodeBody, type MediaType } from '../codec/index.ts';
import { PRIORITIES, type Priority } from '../workers/call.ts';

export interface DispatchOptions {
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  /** Server-side deadline; the client gives up 2 s after it if no answer arrived. */
  timeoutMs?: number;
  /** Queue priority when the routine's workers are busy (x-skein-priority); the agent's default is "normal". */
  priority?: Priority;
  signal?: AbortSignal;
  encoding?: 'cbor' | 'json';
  requestId?: string;
  headers?: Record<string, string>;
  /** Token for this call; replaces the client's token and any authorization header. */
  token?: string;
}

/**
 * The body of a call. JSON has no bytes: JSON.stringify would send a Uint8Array as an object of
 * numbered keys, and the routine would get a dict instead of bytes, so it is refused here.
 */
export function callBody(mediaType: MediaType, options: DispatchOptions): Uint8Array {
  const body = { args: options.args ?? [], kwargs: options.kwargs ?? {} };
  if (mediaType === 'application/json') {
    const path = bytesPath(body.args, 'args', 0) ?? bytesPath(body.kwargs, 'kwargs', 0);
    if (path)
      throw new SkeinError(
        'SKEIN_ERR_USAGE',
        `${path.at} is binary data (${path.type}), which JSON cannot carry: send the call with encoding "cbor" (the default), where it travels as a CBOR byte string`,
        { path: path.at },
      );
  }
  return encodeBody(mediaType, body);
}

/** Where the first binary value (Uint8Array, Buffer, ArrayBuffer, other views) is; bounded by depth. */
function bytesPath(value: unknown, at: string, depth: number): { at: string; type: string } | undefined {
  if (typeof value !== 'object' || value === null || depth > 64) return undefined;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return { at, type: value.constructor.name };
  const entries: Array<[string, unknown]> = Array.isArray(value) ? value.map((v, i) => [`${at}[${i}]`, v]) : Object.entries(value).map(([k, v]) => [`${at}.${k}`, v]);
  for (const [p, v] of entries) {
    const hit = bytesPath(v, p, depth + 1);
    if (hit) return hit;
  }
  return undefined;
}

/** Throws SKEIN_ERR_USAGE naming the levels unless `priority` is one (undefined: the agent's default). */
export function checkPriority(priority: unknown): Priority | undefined {
  if (priority === undefined || (PRIORITIES as readonly unknown[]).includes(priority)) return priority as Priority | undefined;
  throw new SkeinError('SKEIN_ERR_USAGE', `priority must be one of ${PRIORITIES.join(', ')}, got ${JSON.stringify(priority)}`);
}

/**
 * The headers of a call on top of the client's own (`base`). Most specific wins: call token >
 * call headers > client token > client headers.
 */
export function callHeaders(base: http2.OutgoingHttpHeaders, options: DispatchOptions, authorization: (token: string) => string): http2.OutgoingHttpHeaders {
  const headers: http2.OutgoingHttpHeaders = { ...base };
  if (options.headers) {
    for (const [name, value] of Object.entries(options.headers)) {
      if (name.toLowerCase() === 'authorization') setAuthorization(headers, value);
      else headers[name] = value;
    }
  }
  if (options.token !== undefined) setAuthorization(headers, authorization(options.token));
  if (options.timeoutMs !== undefined) headers['x-skein-timeout-ms'] = String(options.timeoutMs);
  const priority = checkPriority(options.priority);
  if (priority !== undefined) headers['x-skein-priority'] = priority;
  if (options.requestId) headers['x-request-id'] = options.requestId;
  return headers;
}

/** Sets authorization, dropping any differently-cased copy so exactly one is sent. */
export function setAuthorization(headers: http2.OutgoingHttpHeaders, value: string): void {
  for (const name of Object.keys(headers)) if (name.toLowerCase() === 'authorization') delete headers[name];
  headers.authorization = value;
}

/**
 * The authorization header value for a token: verbatim when it contains a space (it names
 * its own scheme, e.g. "SkeinNonce …" or "Bearer …"), else "Bearer <token>". Throws
 * SKEIN_ERR_USAGE for an empty token or one with control characters (they cannot travel in
 * a header). The token itself never appears in the message.
 *
 * @example
 *   authorizationHeader('eyJhbGciOi…') // 'Bearer eyJhbGciOi…'
 *   authorizationHeader('SkeinNonce bot.1736160000.c2ln') // unchanged
 */
export function authorizationHeader(token: string): string {
  if (typeof token !== 'string' || token.trim() === '') throw new SkeinError('SKEIN_ERR_USAGE', 'token must be a non-empty string');
  if (/[\x00-\x1f\x7f]/.test(token)) throw new SkeinError('SKEIN_ERR_USAGE', 'token contains a control character (a newline?); it cannot be sent in a header');
  return token.includes(' ') ? token : `Bearer ${token}`;
}
