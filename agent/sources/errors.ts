/**
 * Codes for routine-source failures: every SKEIN_ERR_SOURCE_* row of the errors table
 * (common/errors), derived from it so a new row is a new reason without a second list. The
 * code is also kept in `details.reason`, so callers can match either way.
 */
import { ERROR_TABLE, SkeinError, type ErrorCode } from '../../common/errors/index.ts';

const PREFIX = 'SKEIN_ERR_SOURCE_';

export type SourceReason = Extract<ErrorCode, `${typeof PREFIX}${string}`>;

const isSourceReason = (code: unknown): code is SourceReason => typeof code === 'string' && code.startsWith(PREFIX) && Object.hasOwn(ERROR_TABLE, code);

export const SOURCE_REASONS: readonly SourceReason[] = Object.keys(ERROR_TABLE).filter(isSourceReason);

export function sourceError(reason: SourceReason, message: string, details: Record<string, unknown> = {}, cause?: unknown): SkeinError {
  return new SkeinError(reason, message, { ...details, reason }, cause === undefined ? undefined : { cause });
}

/** The reason code of a routine-source failure, or undefined for any other error. */
export function sourceReason(err: unknown): SourceReason | undefined {
  if (!(err instanceof SkeinError)) return undefined;
  const reason = err.details.reason;
  return isSourceReason(reason) ? reason : undefined;
}
