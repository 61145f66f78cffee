/** `skein keygen`: creates the Ed25519 key pair that signs plugins (skein plugin sign). */
import { formatPublicKey, isSigningError, SigningError, writeKeyPair, type KeyPair } from '../../signing/index.ts';
import { SkeinError } from '../errors/index.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

export const KEYGEN_USAGE = `Usage: skein keygen --out PATH [--force]

Creates an Ed25519 key pair for signing plugins:
  PATH      the private key (PKCS#8 PEM, mode 0600): keep it off the agents' hosts
  PATH.pub  the public key, one line "ed25519:<base64url>": put it in plugins.trustedKeys

  --out PATH  where to write the private key
  --force     replace an existing key pair (plugins signed with the old key stop
              verifying once its public key leaves plugins.trustedKeys)

Next: skein plugin sign FILE --key PATH`;

/**
 * @example
 *   await runKeygen(['--out', 'release.key'], processIo); // release.key (0600) + release.key.pub
 */
export async function runKeygen(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, {
    out: { type: 'string' },
    force: { type: 'boolean' },
  });
  if (values.help) {
    io.out(KEYGEN_USAGE);
    return 0;
  }
  const out = values.out;
  if (out === undefined) throw new SkeinError('SKEIN_ERR_USAGE', '--out PATH is required (see --help)');
  if (out === '') throw new SkeinError('SKEIN_ERR_USAGE', '--out must not be empty');
  let pair: KeyPair;
  try {
    pair = writeKeyPair(out, { force: values.force ?? false });
  } catch (err) {
    // Same code (exit 2), with the flag's name in the fix.
    if (isSigningError(err, 'SKEIN_ERR_SIG_KEY_EXISTS')) {
      throw new SigningError('SKEIN_ERR_SIG_KEY_EXISTS', `refusing to overwrite the existing key ${out}: pass --force to replace it (plugins signed with it must then be signed again)`, { path: out });
    }
    throw err;
  }
  io.out(
    [
      `created Ed25519 key ${pair.keyId}`,
      `  private  ${out} (mode 0600)`,
      `  public   ${out}.pub`,
      `key id     ${pair.keyId}`,
      `public key ${formatPublicKey(pair.publicKey)}`,
      `next: add the public key to plugins.trustedKeys, then: skein plugin sign FILE --key ${out}`,
    ].join('\n'),
  );
  return 0;
}
