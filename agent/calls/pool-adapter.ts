/**
 * A CallDispatcher over today's `Dispatcher.dispatch(req): Promise<CallOutcome>`, until the
 * pools implement `call(req, handler)` themselves (issue #11); then this file goes.
 * `onStart` is reported when the call is handed to the pool: the pool does not yet say when
 * a worker takes it, so time spent in the pool's own queue counts as running.
 */
import type { CallDispatcher, CallHandler, CallRequest } from '../workers/call.ts';
import type { Dispatcher } from '../workers/pool-set.ts';

export function dispatcherAdapter(pool: Pick<Dispatcher, 'dispatch'>): CallDispatcher {
  return {
    call(req: CallRequest, handler: CallHandler): void {
      handler.onStart?.({ resume: () => {} });
      pool.dispatch(req).then((o) => (o.ok ? handler.onComplete(o.value) : handler.onError(o.error)));
    },
  };
}
