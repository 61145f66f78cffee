import { SkeinError } from '../../common/errors/index.ts';
import { isTlsFailure } from '../pki/tls-refusal.ts';

/** Classifies a connection failure as TLS (credentials, CA, name: pki/tls-refusal.ts isTlsFailure) or plain transport. */
export function transportError(err: unknown): SkeinError {
  if (err instanceof SkeinError) return err;
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e?.code ?? e?.cause?.code ?? '';
  const message = e?.message ?? String(err);
  const detail = [code, message, e?.cause?.message].filter(Boolean).join(': ');
  return new SkeinError(isTlsFailure(err) ? 'SKEIN_ERR_TLS' : 'SKEIN_ERR_TRANSPORT', detail, { cause: code }, { cause: err });
}
