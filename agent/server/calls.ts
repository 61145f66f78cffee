/**
 * The async call routes (docs/calls.md "Async: submit now, fetch the result later"):
 *
 *   POST   /v1/calls/:routine   admitted exactly like POST /v1/dispatch (admitCall), stored
 *                               durably, then 202 {id, status} + location
 *   GET    /v1/calls/:id        the call; ?waitMs= waits for it to finish (woken by its outcome)
 *   DELETE /v1/calls/:id        cancels it
 *   GET    /v1/calls            the caller's own calls, newest first (?status=, ?limit=)
 *
 * Every route authenticates before it reads anything. A call is visible to its owner (the
 * caller key: certificate identity and token principals) and to another caller only when an
 * authorize hook explicitly allows `call.read` / `call.cancel` for its routine. Anyone else
 * gets 404 SKEIN_ERR_CALL_NOT_FOUND exactly as for an id that does not exist: the same body,
 * and the same steps (the hooks are asked for an unknown id too), so ids cannot be probed.
 *
 * Replies use the request's media type; a GET or DELETE has no body, so `accept:
 * application/cbor` asks for CBOR and anything else gets JSON.
 */
import type { Context, Hono } from 'hono';
import { SkeinError } from '../../common/errors/index.ts';
import type { Audit } from '../audit/index.ts';
import { CALL_ID, CALL_STATUSES, FINISHED, type CallStatus, type CallStore, type StoredCall } from '../calls/store.ts';
import type { CallRunner } from '../calls/runner.ts';
import type { Identity, RequestAction, RequestInfo } from '../plugin-host/api.ts';
import type { AuthPipeline } from '../plugin-host/pipeline.ts';
import type { AppDeps, AppEnv } from './app.ts';
import { abortOnClose, admitCall, readCallBody } from './call-request.ts';
import { acceptedType } from './stream.ts';

export interface AsyncCallDeps {
  store: Pick<CallStore, 'submit' | 'get' | 'list'>;
  runner: Pick<CallRunner, 'submitted' | 'cancel' | 'wait'>;
  /** Asked whether a caller may read or cancel another caller's call. */
  access: Pick<AuthPipeline, 'allowsOthers'>;
  audit?: Audit;
}

/** What the app shares with these routes, so they answer and describe requests as every other route does. */
export interface RouteKit {
  reply(c: Context<AppEnv>, status: number, value: unknown): Response;
  requestInfo(c: Context<AppEnv>, routine: string | undefined, action: RequestAction | undefined): RequestInfo;
}

export const MAX_LIST = 1000;
const DEFAULT_LIST = 100;

export function registerCallRoutes(app: Hono<AppEnv>, deps: AppDeps, calls: AsyncCallDeps, kit: RouteKit): void {
  const { callers, limits } = deps;
  const { store, runner, access, audit } = calls;
  const { reply, requestInfo } = kit;

  app.post('/v1/calls/:routine', async (c) => {
    const name = c.req.param('routine');
    const info = requestInfo(c, name, 'call.submit') as RequestInfo & { routine: string };
    const admitted = await admitCall(deps, info, c.get('peer'), c.get('mediaType'));
    // A stream reset mid-body must store nothing, as it queues nothing for dispatch.
    const closed = abortOnClose(c.env.incoming.stream);
    try {
      const body = await readCallBody(c.env.incoming, c.env.incoming.headers['content-length'], admitted.mediaType, limits.maxBodyBytes, closed.signal);
      if (closed.signal.aborted) throw new SkeinError('SKEIN_ERR_ABORTED', 'the caller reset the stream before the call was stored');
      const { caller: owner, priority } = admitted;
      const requestId = c.get('requestId');
      // Resolves once the call is committed (and fsynced), with the other submissions of this
      // turn (group commit): only then is it accepted. A failed commit answers STORE_WRITE.
      const call = await store.submit({ owner, routine: name, args: body.args, kwargs: body.kwargs, priority, timeoutMs: admitted.timeoutMs, requestId });
      audit?.record('call.submitted', { callId: call.id, requestId, routine: name, shape: 'async', caller: owner, priority });
      runner.submitted();
      c.header('location', `/v1/calls/${call.id}`);
      return reply(c, 202, { id: call.id, status: call.status });
    } finally {
      closed.release();
    }
  });

  app.get('/v1/calls', async (c) => {
    preferAccept(c);
    const identity = await deps.auth.authenticate(requestInfo(c, undefined, 'call.list'), c.get('peer'));
    const status = statusOf(c.req.query('status'));
    const limit = limitOf(c.req.query('limit'));
    const list = store.list(callers.keyOf(identity), { ...(status ? { status } : {}), limit });
    // Results stay out of the list (up to limits.maxResultBytes each): GET the call for its result.
    return reply(c, 200, { calls: list.map((call) => view(call, false)) });
  });

  app.get('/v1/calls/:id', async (c) => {
    preferAccept(c);
    const info = requestInfo(c, undefined, 'call.read');
    const identity = await deps.auth.authenticate(info, c.get('peer'));
    const id = idOf(c.req.param('id'));
    const waitMs = waitOf(c.req.query('waitMs'), limits.maxTimeoutMs);
    let call = await visible(id, identity, info);
    if (waitMs > 0 && !FINISHED.has(call.status)) {
      // Woken by the call's outcome (or the caller going away), never by polling the store.
      const gone = abortOnClose(c.env.incoming.stream);
      try {
        await runner.wait(id, waitMs, gone.signal);
      } finally {
        gone.release();
      }
      call = store.get(id) ?? notFound(id);
    }
    return reply(c, 200, view(call, true));
  });

  app.delete('/v1/calls/:id', async (c) => {
    preferAccept(c);
    const info = requestInfo(c, undefined, 'call.cancel');
    const identity = await deps.auth.authenticate(info, c.get('peer'));
    const id = idOf(c.req.param('id'));
    await visible(id, identity, info);
    const call = (await runner.cancel(id)) ?? notFound(id);
    return reply(c, 200, view(call, true));
  });

  /**
   * The call if this caller may see it, else CALL_NOT_FOUND. The hooks are asked for an
   * unknown id as for another caller's call, so both answers take the same steps.
   */
  async function visible(id: string, identity: Identity, info: RequestInfo): Promise<StoredCall> {
    const call = store.get(id);
    if (call && call.owner === callers.keyOf(identity)) return call;
    const allowed = await access.allowsOthers({ ...info, routine: call?.routine }, identity);
    return call && allowed ? call : notFound(id);
  }
}

function notFound(id: string): never {
  throw new SkeinError('SKEIN_ERR_CALL_NOT_FOUND', `no async call ${id} is visible to you: unknown, expired (calls.resultTtlMs), or another caller's`, { callId: id });
}

/** A body-less request asks for CBOR with `accept`; the reply and any error then use it. */
function preferAccept(c: Context<AppEnv>): void {
  if (c.get('mediaType')) return;
  if (acceptedType(c.env.incoming.headers.accept, ['application/cbor'])) c.set('mediaType', 'application/cbor');
}

/** The call as the API shows it: times as ISO 8601 UTC, result or error when it has one. */
function view(call: StoredCall, withResult: boolean): Record<string, unknown> {
  return {
    id: call.id,
    routine: call.routine,
    status: call.status,
    priority: call.priority,
    timeoutMs: call.timeoutMs,
    submittedAt: new Date(call.submittedAt).toISOString(),
    ...(call.startedAt !== undefined ? { startedAt: new Date(call.startedAt).toISOString() } : {}),
    ...(call.finishedAt !== undefined ? { finishedAt: new Date(call.finishedAt).toISOString() } : {}),
    ...(withResult && call.status === 'succeeded' ? { result: call.result } : {}),
    ...(call.error ? { error: call.error } : {}),
  };
}

function idOf(raw: string): string {
  if (!CALL_ID.test(raw))
    throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `call id ${JSON.stringify(raw.slice(0, 64))} is malformed: an id is 24 characters of A-Z a-z 0-9 - _, as POST /v1/calls/<routine> returned it`);
  return raw;
}

/** ?waitMs: 0 up to limits.maxTimeoutMs; more is refused, not shortened without a word. */
function waitOf(raw: string | undefined, max: number): number {
  if (raw === undefined) return 0;
  if (!/^\d{1,10}$/.test(raw)) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `waitMs must be a whole number of milliseconds from 0 to ${max}, got ${JSON.stringify(raw.slice(0, 64))}`, { limit: max });
  const ms = Number(raw);
  if (ms > max) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `waitMs ${ms} exceeds the maximum of ${max} ms (limits.maxTimeoutMs)`, { limit: max });
  return ms;
}

function statusOf(raw: string | undefined): CallStatus | undefined {
  if (raw === undefined) return undefined;
  if (!(CALL_STATUSES as readonly string[]).includes(raw)) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `status must be one of ${CALL_STATUSES.join(', ')}, got ${JSON.stringify(raw.slice(0, 64))}`);
  return raw as CallStatus;
}

function limitOf(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_LIST;
  const n = /^\d{1,7}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1 && n <= MAX_LIST)) throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `limit must be a whole number from 1 to ${MAX_LIST}, got ${JSON.stringify(raw.slice(0, 64))}`, { limit: MAX_LIST });
  return n;
}
