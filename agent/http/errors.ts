/**
 * Codes of outbound-request failures (rows of ERROR_TABLE). A caller that reports in its own
 * vocabulary (routine sources' SKEIN_ERR_SOURCE_*) maps these one to one; the code is also
 * kept in `details.reason` so either can be matched.
 */
import { SkeinError } from '../../common/errors/index.ts';

export const HTTP_REASONS = [
  'SKEIN_ERR_HTTP_URL',
  'SKEIN_ERR_HTTP_OPTIONS',
  'SKEIN_ERR_HTTP_HOST',
  'SKEIN_ERR_HTTP_ADDRESS',
  'SKEIN_ERR_HTTP_REDIRECT',
  'SKEIN_ERR_HTTP_TOO_LARGE',
  'SKEIN_ERR_HTTP_TIMEOUT',
  'SKEIN_ERR_HTTP_STATUS',
  'SKEIN_ERR_HTTP_TLS',
  'SKEIN_ERR_HTTP_NETWORK',
  'SKEIN_ERR_HTTP_BODY',
] as const;

export type HttpReason = (typeof HTTP_REASONS)[number];

export function httpError(reason: HttpReason, message: string, details: Record<string, unknown> = {}, cause?: unknown): SkeinError {
  return new SkeinError(reason, message, { ...details, reason }, cause === undefined ? undefined : { cause });
}

/** The reason code of an outbound-request failure, or undefined for any other error. */
export function httpReason(err: unknown): HttpReason | undefined {
  if (!(err instanceof SkeinError)) return undefined;
  return (HTTP_REASONS as readonly string[]).includes(err.code) ? (err.code as HttpReason) : undefined;
}
