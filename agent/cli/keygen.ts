/** `skein keygen`: creates an Ed25519 key pair: plugin signing, discovery (agent or fleet root key), signed-nonce tokens. */
import { formatPublicKey, isSigningError, SigningError, writeKeyPair, type KeyPair } from '../../signing/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

export const KEYGEN_USAGE = `Usage: skein keygen --out PATH [--force]

Creates an Ed25519 key pair:
  PATH      the private key (PKCS#8 PEM, mode 0600)
  PATH.pub  the public key, one line "ed25519:<base64url>"

One kind of key, four uses — make a separate key for each:
  plugin signing   sign plugins with skein plugin sign FILE --key PATH; agents trust
                   PATH.pub in plugins.trustedKeys. Keep the private key off the agents.
  discovery        an agent's advertisement key: discovery.signingKey = PATH on that agent
                   (it stays there); its PATH.pub goes into the other agents'
                   discovery.trustedKeys, or is endorsed by a fleet root key.
  fleet root       endorses agent keys (skein key endorse --root PATH); agents trust
                   PATH.pub in discovery.rootKeys. Keep the private key offline.
  signed nonces    callers mint tokens with skein token sign-nonce --key PATH; the
                   signed-nonce plugin trusts PATH.pub.

  --out PATH  where to write the private key
  --force     replace an existing key pair (what it signed stops verifying once its
              public key leaves the trust list that named it)`;

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
      'next, depending on what the key is for (skein keygen --help):',
      `  plugin signing  add the public key to plugins.trustedKeys, then: skein plugin sign FILE --key ${out}`,
      `  discovery       set discovery.signingKey to ${out} on this agent; add the public key to the fleet's discovery.trustedKeys (or endorse it: skein key endorse --agent-pub ${out}.pub …)`,
      `  fleet root      add the public key to discovery.rootKeys; endorse agent keys with: skein key endorse --root ${out} …`,
      `  signed nonces   give the public key to the signed-nonce plugin; mint tokens with: skein token sign-nonce --key ${out} …`,
    ].join('\n'),
  );
  return 0;
}
