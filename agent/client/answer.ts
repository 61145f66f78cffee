/** Reading a buffered answer: its body decoded by content-type, and a non-success body as the SkeinError it names. */
import type http2 from 'node:http2';
import { decodeBody, mediaTypeOf } from '../codec/index.ts';
import { isErrorCode, SkeinError, type ErrorCode } from '../../common/errors/index.ts';

export interface RawResponse {
  status: number;
  value: unknown;
  requestId: string;
}

export function decodeResponse(status: number, headers: http2.IncomingHttpHeaders, bytes: Buffer, sent: http2.OutgoingHttpHeaders): RawResponse {
  const type = mediaTypeOf(headers['content-type']);
  const requestId = String(headers['x-request-id'] ?? sent['x-request-id'] ?? '');
  if (!type) throw new SkeinError('SKEIN_ERR_BAD_RESPONSE', `HTTP ${status} with content-type ${String(headers['content-type'])} is not a skein response`, { status });
  try {
    return { status, value: bytes.length ? decodeBody(type, bytes) : undefined, requestId };
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_BAD_RESPONSE', `HTTP ${status}: undecodable ${type} body (${(err as Error).message})`, { status });
  }
}

export function responseError(status: number, value: unknown, requestId: string): SkeinError {
  const v = (value ?? {}) as { code?: unknown; message?: unknown; meta?: Record<string, unknown> };
  if (isErrorCode(v.code)) {
    return new SkeinError(v.code as ErrorCode, String(v.message ?? v.code), { status, requestId, ...v.meta });
  }
  return new SkeinError('SKEIN_ERR_BAD_RESPONSE', `unexpected HTTP ${status} response`, { status, requestId });
}
