/**
 * Async calls as the client sees them (docs/calls.md, "Async"): the record the agent keeps
 * for a submitted call, its statuses, and the paths and queries of /v1/calls.
 */
import { SkeinError } from '../../common/errors/index.ts';
import type { Priority } from '../workers/call.ts';

export const CALL_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'] as const;
export type CallStatus = (typeof CALL_STATUSES)[number];
/** A call in one of these will not change again. */
export const FINAL_STATUSES: ReadonlySet<string> = new Set<CallStatus>(['succeeded', 'failed', 'cancelled', 'interrupted']);
/** The most calls GET /v1/calls lists. */
export const MAX_LIST = 1000;

/** The 202 answer to a submission. */
export interface Submitted {
  id: string;
  status: CallStatus;
}

export interface CallRecord<T = unknown> {
  id: string;
  routine: string;
  status: CallStatus;
  priority: Priority;
  submittedAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** With status succeeded. */
  result?: T;
  /** With status failed: what a sync call would have answered. */
  error?: { code: string; message: string; requestId?: string; meta?: Record<string, unknown> };
}

export interface CallsQuery {
  status?: CallStatus;
  /** 1 to MAX_LIST. */
  limit?: number;
}

/** Refuses an id that could not name a call (empty, or one that would change the path). */
export function checkCallId(id: string): string {
  if (typeof id !== 'string' || !/^[A-Za-z0-9._~-]{1,128}$/.test(id)) throw new SkeinError('SKEIN_ERR_USAGE', `a call id is 1 to 128 letters, digits, ".", "_", "~" or "-", got ${JSON.stringify(id)}`);
  return id;
}

export function callPath(id: string, waitMs?: number): string {
  if (waitMs === undefined) return `/v1/calls/${id}`;
  if (!Number.isInteger(waitMs) || waitMs < 0) throw new SkeinError('SKEIN_ERR_USAGE', `waitMs must be a non-negative integer of milliseconds, got ${waitMs}`);
  return `/v1/calls/${id}?waitMs=${waitMs}`;
}

export function callsQuery(query: CallsQuery): string {
  const params = new URLSearchParams();
  if (query.status !== undefined) {
    if (!(CALL_STATUSES as readonly string[]).includes(query.status)) throw new SkeinError('SKEIN_ERR_USAGE', `status must be one of ${CALL_STATUSES.join(', ')}, got ${JSON.stringify(query.status)}`);
    params.set('status', query.status);
  }
  if (query.limit !== undefined) {
    if (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > MAX_LIST) throw new SkeinError('SKEIN_ERR_USAGE', `limit must be an integer from 1 to ${MAX_LIST}, got ${query.limit}`);
    params.set('limit', String(query.limit));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}
