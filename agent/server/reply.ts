/**
 * How every route names a request and answers a failure: the request id (the caller's
 * `x-request-id` when it is well-formed, else a fresh UUID), the error body, its status and
 * Retry-After, and the log line. The hono routes (app.ts) and the dispatch route served on
 * the HTTP/2 stream (dispatch.ts) both answer through these, so a failure reads the same
 * whichever path served it.
 */
import { randomUUID } from 'node:crypto';
import { SkeinError, toSkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's `x-request-id` when it is 1–128 of A-Z a-z 0-9 . _ : -, else a new UUID. */
export function requestIdOf(given: string | string[] | undefined): string {
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** The body of an error response (and of a stream's error frame): code, message, request id, details. */
export function errorBody(e: SkeinError, requestId: string, peer: string): Record<string, unknown> {
  const { trace: _trace, retryAfterSeconds: _r, ...details } = e.details;
  return { code: e.code, message: e.message, requestId, meta: { peer, ...details } };
}

export interface FailureReply {
  status: number;
  /** Retry-After for the refusals a caller should retry (overload, drain, open circuit, full store). */
  retryAfter?: string;
  body: Record<string, unknown>;
}

const RETRYABLE = new Set(['SKEIN_ERR_OVERLOADED', 'SKEIN_ERR_SHUTTING_DOWN', 'SKEIN_ERR_CIRCUIT_OPEN', 'SKEIN_ERR_STORE_FULL']);

/** Logs a request's failure at the level its code deserves and says how to answer it. */
export function failureReply(err: unknown, requestId: string, peer: string, path: string, log: Logger): FailureReply {
  const e = toSkeinError(err);
  const fields = { requestId, peer, code: e.code, path };
  if (e.code === 'SKEIN_ERR_INTERNAL') log.error('internal error', { ...fields, error: e.message, stack: (e.cause as Error | undefined)?.stack });
  else if (e.code === 'SKEIN_ERR_ROUTINE_RAISED') log.info('routine raised', { ...fields, exception: e.details.exception, trace: e.details.trace });
  // A caller that went away is not an operational problem, and a reset flood must not
  // become a log flood.
  else if (e.code === 'SKEIN_ERR_ABORTED') log.debug('request aborted by the caller', fields);
  else log.warn('request failed', { ...fields, message: e.message });
  return {
    status: e.status || 500,
    ...(RETRYABLE.has(e.code) ? { retryAfter: String(e.details.retryAfterSeconds ?? 1) } : {}),
    body: errorBody(e, requestId, peer),
  };
}
