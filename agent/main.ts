/**
 * skein: single-binary edge agent. Entry point of the compiled binary; routes the first
 * argument to a command and turns errors into the documented exit codes:
 * 0 ok, 1 runtime failure, 2 usage or configuration error (dispatch adds 3–6).
 */
import { ERROR_TABLE, SkeinError, toSkeinError } from './errors/index.ts';
import { runAgent } from './cli/agent.ts';
import { runDispatch } from './cli/dispatch.ts';
import { runDoctor } from './cli/doctor.ts';
import { runKey } from './cli/key.ts';
import { runKeygen } from './cli/keygen.ts';
import { runPeers } from './cli/peers.ts';
import { runPlugin } from './cli/plugin.ts';
import { runToken } from './cli/token.ts';
import { processIo, type Io } from './cli/io.ts';
import { runPki } from './cli/pki.ts';
import { runValidate } from './cli/validate.ts';
import { VERSION } from './cli/version.ts';

const USAGE = `skein ${VERSION}: routine dispatch over HTTP/2 + mutual TLS to sandboxed Python workers

Usage: skein COMMAND [options]   (every command takes --help)

Commands:
  agent      run the agent
  dispatch   run a routine on an agent and print its result
  doctor     show the host's sandbox capabilities and what each profile applies
  key        endorse an agent's advertisement key with a fleet root key
  keygen     create an Ed25519 key pair (plugin signing, signed-nonce tokens)
  peers      list the peers the agent discovered (and rejected advertisements)
  plugin     scaffold, sign and verify plugins
  token      create tokens for token plugins (signed nonces)
  pki        create a CA and issue agent/client certificates
  validate   check a config file and print the effective configuration
  version    print the version

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error
(dispatch also: 3 rejected, 4 routine failed, 5 deadline exceeded, 6 TLS/transport failure).`;

const COMMANDS: Record<string, (argv: string[], io: Io) => Promise<number>> = {
  agent: runAgent,
  dispatch: runDispatch,
  doctor: runDoctor,
  key: (argv, io) => runKey(argv, io),
  keygen: runKeygen,
  peers: runPeers,
  plugin: runPlugin,
  token: runToken,
  pki: (argv, io) => runPki(argv, io),
  validate: runValidate,
  version: async (_argv, io) => {
    io.out(`skein ${VERSION}`);
    return 0;
  },
};

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    io.out(USAGE);
    return command ? 0 : 2;
  }
  if (command === '--version') return COMMANDS.version!([], io);
  const run = COMMANDS[command];
  try {
    if (!run) throw new SkeinError('SKEIN_ERR_USAGE', `unknown command "${command}" (commands: ${Object.keys(COMMANDS).join(', ')})`);
    return await run(rest, io);
  } catch (err) {
    const e = toSkeinError(err);
    io.err(`error [${e.code}]: ${e.message}`);
    if (e.code === 'SKEIN_ERR_INTERNAL' && err instanceof Error && err.stack) io.err(err.stack);
    return ERROR_TABLE[e.code].exit;
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
