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
import { flushOutput, processIo, type Io } from './cli/io.ts';
import { writeSync } from 'node:fs';
import { runPki } from './cli/pki.ts';
import { runValidate } from './cli/validate.ts';
import { VERSION, VERSION_LINE } from './version/index.ts';

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
    io.out(VERSION_LINE);
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

/**
 * Exits only once stdout and stderr have drained: output reaches a pipe whole, or the
 * command fails. A write error (the reader went away, a full disk) is exit 1 with
 * SKEIN_ERR_OUTPUT on stderr (written synchronously: the stream may be the broken one).
 */
export async function exitAfterOutput(code: number): Promise<never> {
  const failed = await flushOutput();
  if (failed) {
    const e = failed.error as NodeJS.ErrnoException;
    const why = e.code ?? e.message;
    try {
      writeSync(2, `error [SKEIN_ERR_OUTPUT]: cannot write ${failed.stream}: ${why}; the output is incomplete\n`);
    } catch {
      // stderr is gone too: the exit code is all that is left to say it.
    }
    process.exit(code === 0 ? ERROR_TABLE.SKEIN_ERR_OUTPUT.exit : code);
  }
  process.exit(code);
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(exitAfterOutput);
}
