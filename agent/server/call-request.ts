/**
 * What every call route does before a call exists: authenticate (before saying whether a
 * routine exists), find the routine, authorize (before any body is read), check the media
 * type, and read the deadline, priority and body. Sync, streaming and async submission share
 * it, so a call is admitted the same way whatever its shape.
 */
import type { Http2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import { decodeBody, parseCallBody, type CallBody, type MediaType } from '../codec/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Identity, RequestInfo } from '../plugin-host/api.ts';
import type { Priority } from '../workers/call.ts';
import type { AuthPipeline } from '../plugin-host/pipeline.ts';
import type { RoutineInfo } from '../sources/routines.ts';
import type { PeerIdentity } from './identity.ts';

export const TIMEOUT_HEADER = 'x-skein-timeout-ms';
export const PRIORITY_HEADER = 'x-skein-priority';

export interface CallLimits {
  maxBodyBytes: number;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
}

/** How callers are told apart and weighed in the fair queues (agent/calls/weights.ts). */
export interface CallerPolicy {
  /** The x-skein-priority header's level; throws SKEIN_ERR_BAD_REQUEST for an unknown one. */
  priorityOf(header: string | undefined): Priority;
  /** The fairness and ownership key of an identity. */
  keyOf(identity: Identity): string;
  weightOf(identity: Identity): number;
}

export interface Admitted {
  routine: RoutineInfo;
  identity: Identity;
  mediaType: MediaType;
  timeoutMs: number;
  priority: Priority;
  /** The caller key (callers.keyOf): the fair-queue lane and the owner of an async call. */
  caller: string;
}

export interface AdmitDeps {
  routines: Map<string, RoutineInfo>;
  limits: CallLimits;
  auth: Pick<AuthPipeline, 'authenticate' | 'authorize'>;
  callers: CallerPolicy;
}

/** Authenticates and authorizes a call of `info.routine`, and reads its headers; throws SkeinErrors. */
export async function admitCall(deps: AdmitDeps, info: RequestInfo & { routine: string }, peer: PeerIdentity, mediaType: MediaType | undefined): Promise<Admitted> {
  const identity = await deps.auth.authenticate(info, peer);
  const name = info.routine;
  const routine = deps.routines.get(name);
  if (!routine) throw new SkeinError('SKEIN_ERR_UNKNOWN_ROUTINE', `no routine named "${name}" (GET /v1/routines lists them)`, { routine: name });
  await deps.auth.authorize(info, identity);
  if (!mediaType)
    throw new SkeinError('SKEIN_ERR_UNSUPPORTED_MEDIA_TYPE', `content-type must be application/cbor or application/json, got ${JSON.stringify(info.headers['content-type'] ?? '(none)')}`);
  const timeoutMs = deadlineOf(info.headers[TIMEOUT_HEADER], routine.timeoutMs ?? deps.limits.defaultTimeoutMs, deps.limits.maxTimeoutMs);
  const priority = deps.callers.priorityOf(info.headers[PRIORITY_HEADER]);
  return { routine, identity, mediaType, timeoutMs, priority, caller: deps.callers.keyOf(identity) };
}

/**
 * An AbortSignal that fires when the request's stream closes (the caller reset it or the
 * connection went): listened for before the body is read, so a stream reset mid-body never
 * queues or stores work. `release()` stops listening.
 */
export function abortOnClose(stream: Http2Stream | undefined): { signal: AbortSignal; release(): void } {
  const abort = new AbortController();
  const onClose = () => abort.abort();
  stream?.once('close', onClose);
  return { signal: abort.signal, release: () => void stream?.off('close', onClose) };
}

/**
 * Reads and validates `{args, kwargs}`; an empty body is no arguments. `body` is the request
 * body as a Readable: the HTTP/2 stream itself, or the compat request reading it (hono routes).
 * `declaredLength` is its content-length header, which lets a body known to be too large be
 * refused without keeping any of it.
 */
export async function readCallBody(body: Readable, declaredLength: string | undefined, mediaType: MediaType, max: number, signal: AbortSignal): Promise<CallBody> {
  const bytes = await readBody(body, declaredLength, max, signal);
  return parseCallBody(bytes.length === 0 ? {} : decodeBody(mediaType, bytes));
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
 * Reads the request body, refusing (413) one over `max` bytes, and giving up when `signal`
 * aborts (the stream was reset: it may never end).
 *
 * The rest of a body over the limit is read and dropped before the 413 is sent, up to
 * DISCARD_LIMIT_BYTES more (past that, the 413 goes at once and the stream is reset after it,
 * by dispatch.ts on the stream path and by @hono/node-server for hono's routes):
 * a client that writes its whole body before it reads the response (Python's httpx) would
 * otherwise wait for flow-control credit that never comes, and ignores the reset that ends
 * the stream under it. Past that limit such a client cannot get the 413; the listener closes
 * its connection once it goes quiet, so it fails instead of hanging (listener.ts answeredEarly).
 */
function readBody(incoming: Readable, declaredLength: string | undefined, max: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = Number(declaredLength) > max;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (!over && size > max) {
        over = true;
        chunks.length = 0;
      }
      if (!over) return void chunks.push(chunk);
      if (size > max + DISCARD_LIMIT_BYTES) {
        cleanup();
        reject(tooLarge(max));
      }
    };
    const onEnd = () => {
      cleanup();
      if (over) reject(tooLarge(max));
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
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

/** How much of a body over the limit is read and dropped before the 413. */
const DISCARD_LIMIT_BYTES = 16 * 1024 * 1024;

function tooLarge(max: number): SkeinError {
  return new SkeinError('SKEIN_ERR_BODY_TOO_LARGE', `request body exceeds limits.maxBodyBytes (${max} bytes)`, { limit: max });
}
