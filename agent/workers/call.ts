/**
 * The call as the worker pool sees it: what to run, for whom, how urgently, and a handler
 * that receives the outcome (think undici's dispatch(opts, handler)). Everything above the
 * pool (the HTTP routes, the async runner, the CLI through them) builds a CallRequest and a
 * CallHandler; nothing above it speaks the worker protocol.
 *
 * Exactly one of onComplete / onError is called, once. A generator routine called with
 * `stream: true` delivers its items through onItem before onComplete(undefined); without it
 * the pool collects them into a list bounded by limits.maxResultBytes and completes with it.
 */
import type { SkeinError } from '../../common/errors/index.ts';

/** Priority levels, highest first. A saturated pool serves a higher level first, FIFO within a level, with aging. */
export const PRIORITIES = ['high', 'normal', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];
export const DEFAULT_PRIORITY: Priority = 'normal';

export interface CallRequest {
  routine: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  /** Deadline from now, queue time included. */
  timeoutMs: number;
  /** Aborting cancels the call: dequeued, or its worker stopped (a generator gets GeneratorExit first). */
  signal?: AbortSignal;
  /** Correlation id of the request that made the call, carried onto worker log lines. */
  requestId?: string;
  /** The call's own id (async calls: the stored id), for audit lines. */
  callId?: string;
  /** Default DEFAULT_PRIORITY. */
  priority?: Priority;
  /** Who the call is for: calls are shared fairly between callers within a priority level. */
  caller?: string;
  /** The caller's fair-share weight (calls.weights; default 1). */
  weight?: number;
  /** Deliver a generator's items one at a time through onItem, with back-pressure. */
  stream?: boolean;
  /** How the caller takes the call (audit lines and metrics); default "sync". */
  shape?: CallShape;
}

export type CallShape = 'sync' | 'stream' | 'async';

/** Handed to onStart: lets a streaming consumer pause and resume the generator. */
export interface CallControl {
  /** The consumer can take more items again (after onItem returned false). */
  resume(): void;
}

export interface CallHandler {
  /** The call left the queue: a worker runs it now. */
  onStart?(control: CallControl): void;
  /**
   * One item of a streaming call. Returning false says the consumer's buffer is full: the
   * worker is granted no more credit (the generator pauses at its next yield) until resume().
   */
  onItem?(value: unknown): boolean;
  /** The call ended well: the routine's result, the collected items, or undefined after a stream. */
  onComplete(value: unknown): void;
  onError(error: SkeinError): void;
}

/** The pool side: anything that runs calls (a WorkerPool, the PoolSet routing to them). */
export interface CallDispatcher {
  call(req: CallRequest, handler: CallHandler): void;
}
