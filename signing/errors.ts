/**
 * Errors raised by signing/. Every rejection carries a stable `code` so the discovery plane
 * and the plugin loader can count and report each kind separately (a forged advertisement
 * must never look like a corrupt one, nor a tampered plugin like an unsigned one).
 *
 * The codes live in the central table (common/errors/index.ts), below both signing/ and
 * agent/: signing/ imports nothing of agent/.
 *
 * @example
 *   try { open(bytes, opts) } catch (err) {
 *     if (isSigningError(err, 'SKEIN_ERR_SIG_UNKNOWN_KEY')) metrics.unknownKey++;
 *   }
 */
import { SkeinError, type ErrorCode } from '../common/errors/index.ts';

/** The signing codes of the central table (common/errors/index.ts). */
export type SigningErrorCode = Extract<ErrorCode, `SKEIN_ERR_SIG_${string}`>;

export class SigningError extends SkeinError {
  override readonly name: string = 'SigningError';
  declare readonly code: SigningErrorCode;

  constructor(code: SigningErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(code, message, details, options);
  }
}

/** True when `err` is a SigningError (with the given code, when one is passed). */
export function isSigningError(err: unknown, code?: SigningErrorCode): err is SigningError {
  return err instanceof SigningError && (code === undefined || err.code === code);
}
