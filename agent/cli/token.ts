/** `skein token sign-nonce`: prints a signed nonce token for the signed-nonce plugin. */
import { SkeinError } from '../../common/errors/index.ts';
import { NAME_HINT, NAME_PATTERN } from '../../common/names/index.ts';
import { readPrivateKey, signNonceToken } from '../../signing/index.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

export const TOKEN_USAGE = `Usage: skein token sign-nonce --key PATH --routine NAME

Mints caller tokens for an agent's token plugins.

Commands:
  sign-nonce  print a single-use SkeinNonce token for one routine (signed-nonce plugin)

Run "skein token COMMAND --help" for the options of each command.`;

export const TOKEN_SIGN_NONCE_USAGE = `Usage: skein token sign-nonce --key PATH --routine NAME

Prints "SkeinNonce <payload>.<signature>", the whole authorization header value, signed with
an Ed25519 private key. The agent's signed-nonce plugin accepts it once, for ROUTINE only,
within its freshness window (windowSec, default 60 s) of now; configure the key's public half
(PATH.pub) under the plugin's "keys". Mint a fresh token for every call.

  --key PATH      Ed25519 private key (PKCS#8 PEM, mode 0600; skein keygen writes one)
  --routine NAME  routine the token may call`;

export async function runToken(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    io.out(TOKEN_USAGE);
    return 0;
  }
  if (sub === 'sign-nonce') return runSignNonce(rest, io);
  throw new SkeinError('SKEIN_ERR_USAGE', sub === undefined ? 'missing token command: sign-nonce (see skein token --help)' : `unknown token command "${sub}": sign-nonce (see skein token --help)`);
}

async function runSignNonce(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, {
    key: { type: 'string' },
    routine: { type: 'string' },
  });
  if (values.help) {
    io.out(TOKEN_SIGN_NONCE_USAGE);
    return 0;
  }
  if (values.key === undefined || values.key === '') throw new SkeinError('SKEIN_ERR_USAGE', '--key is required: the Ed25519 private key to sign with (see --help)');
  if (values.routine === undefined) throw new SkeinError('SKEIN_ERR_USAGE', '--routine is required: the routine the token may call (see --help)');
  if (!NAME_PATTERN.test(values.routine)) {
    throw new SkeinError('SKEIN_ERR_USAGE', `--routine ${JSON.stringify(values.routine)} is not a routine name: ${NAME_HINT}`);
  }
  // readPrivateKey refuses keys that group or others can read (SKEIN_ERR_SIG_KEY_PERMISSIONS).
  const key = readPrivateKey(values.key);
  io.out(signNonceToken(key, values.routine));
  return 0;
}
