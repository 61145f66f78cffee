/**
 * Codes for routine-source failures (in ERROR_TABLE). The code is also kept in
 * `details.reason`, so callers can match either way.
 */
import { SkeinError } from '../../common/errors/index.ts';

export const SOURCE_REASONS = [
  'SKEIN_ERR_SOURCE_SCHEME',
  'SKEIN_ERR_SOURCE_HOST',
  'SKEIN_ERR_SOURCE_ADDRESS',
  'SKEIN_ERR_SOURCE_REDIRECT',
  'SKEIN_ERR_SOURCE_TOO_LARGE',
  'SKEIN_ERR_SOURCE_TIMEOUT',
  'SKEIN_ERR_SOURCE_HTTP',
  'SKEIN_ERR_SOURCE_PIN_MISMATCH',
  'SKEIN_ERR_SOURCE_PIN_MISSING',
  'SKEIN_ERR_SOURCE_TLS',
  'SKEIN_ERR_SOURCE_ENCODING',
  'SKEIN_ERR_SOURCE_NETWORK',
] as const;

export type SourceReason = (typeof SOURCE_REASONS)[number];

export function sourceError(reason: SourceReason, message: string, details: Record<string, unknown> = {}, cause?: unknown): SkeinError {
  return new SkeinError(reason, message, { ...details, reason }, cause === undefined ? undefined : { cause });
}

/** The reason code of a routine-source failure, or undefined for any other error. */
export function sourceReason(err: unknown): SourceReason | undefined {
  if (!(err instanceof SkeinError)) return undefined;
  const reason = err.details.reason;
  return (SOURCE_REASONS as readonly unknown[]).includes(reason) ? (reason as SourceReason) : undefined;
}
