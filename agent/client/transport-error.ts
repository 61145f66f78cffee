import { SkeinError } from '../../common/errors/index.ts';

const TLS_HINTS = /SSL|TLS|CERT|certificate|handshake|self[- ]signed|UNABLE_TO_|ALERT|HOSTNAME|altname/i;

/** Classifies a connection failure as TLS (credentials, CA, name) or plain transport. */
export function transportError(err: unknown): SkeinError {
  if (err instanceof SkeinError) return err;
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e?.code ?? e?.cause?.code ?? '';
  const message = e?.message ?? String(err);
  const detail = [code, message, e?.cause?.message].filter(Boolean).join(': ');
  if (TLS_HINTS.test(code) || TLS_HINTS.test(message)) return new SkeinError('SKEIN_ERR_TLS', detail, { cause: code }, { cause: err });
  return new SkeinError('SKEIN_ERR_TRANSPORT', detail, { cause: code }, { cause: err });
}
