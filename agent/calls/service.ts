/**
 * The call seam every shape goes through: the HTTP routes (sync and streaming dispatch) and
 * the async runner hand it a CallRequest and a CallHandler, and it runs the call on the
 * worker pools with the bookkeeping every call owes whatever its shape — `call.submitted`,
 * `call.started` and `call.completed` audit lines with the call id, and the dispatch metrics.
 * Authentication and authorization happened before a request reaches it.
 */
import { randomUUID } from 'node:crypto';
import type { SkeinError } from '../../common/errors/index.ts';
import type { Audit } from '../audit/index.ts';
import { UNKNOWN_ROUTINE, type DispatchRecorder } from '../metrics/index.ts';
import { DEFAULT_PRIORITY, type CallDispatcher, type CallHandler, type CallRequest } from '../workers/call.ts';

export interface CallServiceDeps {
  pool: CallDispatcher;
  audit?: Audit;
  metrics?: DispatchRecorder;
  /** Whether a routine is configured: a name that is not counts as "_unknown" so callers cannot grow the label set. */
  isRoutine: (name: string) => boolean;
}

export class CallService implements CallDispatcher {
  #deps: CallServiceDeps;

  constructor(deps: CallServiceDeps) {
    this.#deps = deps;
  }

  /**
   * Runs the call. `call.submitted` is recorded here for sync and streaming calls; an async
   * call was recorded when the store accepted it (its id is the stored one).
   */
  call(req: CallRequest, handler: CallHandler): void {
    const { audit, metrics, pool } = this.#deps;
    const callId = (req.callId ??= randomUUID());
    const shape = req.shape ?? 'sync';
    const { requestId, routine } = req;
    const started = performance.now();
    // Each line's fields are written out in one literal (the order docs/audit.md shows): no
    // shared base object spread three times per call.
    if (audit && shape !== 'async') audit.record('call.submitted', { callId, requestId, routine, shape, caller: req.caller, priority: req.priority ?? DEFAULT_PRIORITY });
    let items = 0;
    const end = (outcome: string) => {
      const seconds = (performance.now() - started) / 1000;
      metrics?.dispatch(outcome === 'ok' || this.#deps.isRoutine(routine) ? routine : UNKNOWN_ROUTINE, outcome, seconds);
      if (!audit) return;
      const durationMs = Math.round(seconds * 1e6) / 1e3;
      audit.record('call.completed', req.stream ? { callId, requestId, routine, shape, outcome, durationMs, items } : { callId, requestId, routine, shape, outcome, durationMs });
    };
    pool.call(req, {
      onStart: (control) => {
        if (audit) audit.record('call.started', { callId, requestId, routine, shape, queuedMs: Math.round((performance.now() - started) * 1e3) / 1e3 });
        handler.onStart?.(control);
      },
      onItem: (value) => {
        items++;
        return handler.onItem ? handler.onItem(value) : true;
      },
      onComplete: (value) => {
        end('ok');
        handler.onComplete(value);
      },
      onError: (error: SkeinError) => {
        end(error.code);
        handler.onError(error);
      },
    });
  }
}
