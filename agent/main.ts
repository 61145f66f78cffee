/**
 * skein: single-binary edge agent. Entry point of the compiled binary; routes the first
 * argument to a command and turns errors into the documented exit codes:
 * 0 ok, 1 runtime failure, 2 usage or configuration error (dispatch adds 3–6).
 */
import { ERROR_TABLE, SkeinError, toSkeinError } from '../common/errors/index.ts';
import { COMMANDS, usage } from './cli/commands.ts';
import { flushOutput, processIo, type Io } from './cli/io.ts';
import { writeSync } from 'node:fs';

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') {
    io.out(usage());
    return command ? 0 : 2;
  }
  const run = COMMANDS[command === '--version' ? 'version' : command]?.run;
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
