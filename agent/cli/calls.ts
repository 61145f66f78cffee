/**
 * `skein calls get|wait|cancel|list`: async calls submitted with `skein dispatch --async`
 * (docs/calls.md, "Async"). Only the caller that submitted a call sees it: the same client
 * certificate and token as the submission.
 */
import { isErrorCode, SkeinError } from '../../common/errors/index.ts';
import { CALL_STATUSES, type CallRecord, type CallStatus } from '../client/index.ts';
import { parseFlags, parseIntFlag } from './args.ts';
import { reportFailure } from './dispatch.ts';
import type { Io } from './io.ts';
import { table } from './table.ts';
import { clientFor, resolveTarget, TARGET_FLAGS, TARGET_HELP } from './target.ts';
import { jsonText, resultText } from './values.ts';

/** The first paragraph of a sub-command's usage: its own flags, then those of every client command. */
function synopsis(sub: string, flags: string): string {
  const pad = ' '.repeat(`Usage: skein calls ${sub} `.length);
  return `Usage: skein calls ${sub} ${flags}[--peer HOST[:PORT]]
${pad}[--cert PATH --key PATH --ca PATH] [--token T | --token-file F]
${pad}[--profile NAME] [--json] [--config PATH]`;
}
/** How long `calls wait` waits without --timeout (the agent's default limits.maxTimeoutMs). */
const DEFAULT_WAIT_MS = 300_000;

export const CALLS_USAGE = `Usage: skein calls get|wait|cancel|list [options]

Async calls: submit one with skein dispatch ROUTINE --async (it prints the call id), then

Commands:
  get ID      print the call: status, and its result or error once it finished
  wait ID     wait until the call finished; print its result (exit codes as skein dispatch)
  cancel ID   cancel the call (a running call's worker is stopped)
  list        list your calls, newest first

Run "skein calls COMMAND --help" for the options of each command.`;

export const CALLS_GET_USAGE = `${synopsis('get', 'ID [--wait MS] ')}

Prints the call as the agent keeps it (JSON): id, routine, status (queued, running,
succeeded, failed, cancelled, interrupted), priority, times, and result or error.

  --wait MS          wait up to MS for the call to finish before answering (long poll)
${TARGET_HELP}
  --json             print the call on one line`;

export const CALLS_WAIT_USAGE = `${synopsis('wait', 'ID [--timeout MS] ')}

Waits until the call finished and prints its result as skein dispatch would. Exit codes as
for skein dispatch: 0 succeeded, the error's code when it failed, 3 when it was cancelled
(SKEIN_ERR_CALL_CANCELLED), 4 when it was interrupted (SKEIN_ERR_CALL_INTERRUPTED), 5 when
it is still running after the timeout (SKEIN_ERR_CLIENT_TIMEOUT).

  --timeout MS       give up after MS (default ${DEFAULT_WAIT_MS})
${TARGET_HELP}
  --json             print the whole call on one line (exit code as above)`;

export const CALLS_CANCEL_USAGE = `${synopsis('cancel', 'ID ')}

Cancels the call: a queued call never runs, a running call's worker is stopped. Prints the
call (status cancelled, or its final status if it had already ended).

${TARGET_HELP}
  --json             print the call on one line`;

export const CALLS_LIST_USAGE = `${synopsis('list', '[--status S] [--limit N] ')}

Lists your calls, newest first.

  --status S         only calls with this status: ${CALL_STATUSES.join(', ')}
  --limit N          at most N calls (1 to 1000)
${TARGET_HELP}
  --json             print {"calls": [...]}`;

const USAGES: Record<string, string> = { get: CALLS_GET_USAGE, wait: CALLS_WAIT_USAGE, cancel: CALLS_CANCEL_USAGE, list: CALLS_LIST_USAGE };

export async function runCalls(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    io.out(CALLS_USAGE);
    return 0;
  }
  if (sub === undefined || !(sub in USAGES)) {
    const known = Object.keys(USAGES).join(', ');
    throw new SkeinError('SKEIN_ERR_USAGE', sub === undefined ? `missing calls command: ${known} (see skein calls --help)` : `unknown calls command "${sub}": ${known} (see skein calls --help)`);
  }
  const { values, positionals } = parseFlags(
    rest,
    {
      ...TARGET_FLAGS,
      json: { type: 'boolean' },
      ...(sub === 'get' ? { wait: { type: 'string' } } : {}),
      ...(sub === 'wait' ? { timeout: { type: 'string' } } : {}),
      ...(sub === 'list' ? { status: { type: 'string' }, limit: { type: 'string' } } : {}),
    },
    sub !== 'list',
  );
  if (values.help) {
    io.out(USAGES[sub]!);
    return 0;
  }
  const id = positionals[0];
  if (sub !== 'list' && (id === undefined || positionals.length > 1)) throw new SkeinError('SKEIN_ERR_USAGE', `expected exactly one call ID (see skein calls ${sub} --help)`);
  const json = values.json === true;
  const flag = (name: string) => (values as Record<string, string | boolean | undefined>)[name] as string | undefined;
  const waitMs = parseIntFlag(flag('wait'), 'wait', 0, 86_400_000);
  const timeoutMs = parseIntFlag(flag('timeout'), 'timeout', 1, 86_400_000) ?? DEFAULT_WAIT_MS;
  const limit = parseIntFlag(flag('limit'), 'limit', 1, 1000);
  const status = flag('status');
  if (status !== undefined && !(CALL_STATUSES as readonly string[]).includes(status))
    throw new SkeinError('SKEIN_ERR_USAGE', `--status must be one of ${CALL_STATUSES.join(', ')}, got ${JSON.stringify(status)}`);

  const client = clientFor(resolveTarget(values));
  try {
    switch (sub) {
      case 'get':
        return printRecord(await client.call(id!, waitMs === undefined ? {} : { waitMs }), io, json);
      case 'cancel':
        return printRecord(await client.cancel(id!), io, json);
      case 'wait':
        return printOutcome(await client.wait(id!, { timeoutMs }), io, json);
      default: {
        const calls = await client.calls({ ...(status ? { status: status as CallStatus } : {}), ...(limit ? { limit } : {}) });
        if (json) io.out(jsonText({ calls }));
        else
          io.out(
            table(
              ['ID', 'ROUTINE', 'STATUS', 'PRIORITY', 'SUBMITTED'],
              calls.map((c) => [c.id, c.routine, c.status, String(c.priority ?? '-'), String(c.submittedAt ?? '-')]),
            ),
          );
        return 0;
      }
    }
  } catch (err) {
    return reportFailure(err, io, json);
  } finally {
    await client.destroy();
  }
}

function printRecord(record: CallRecord, io: Io, json: boolean): number {
  io.out(jsonText(record, json ? undefined : 2));
  return 0;
}

/** `calls wait`: the result as skein dispatch prints it, or the failure with its exit code. */
function printOutcome(record: CallRecord, io: Io, json: boolean): number {
  if (json) io.out(jsonText(record));
  if (record.status === 'succeeded') {
    if (!json) io.out(resultText(record.result));
    return 0;
  }
  // reportFailure prints the error object itself with --json; the record was printed already.
  return reportFailure(outcomeError(record), json ? { ...io, out: () => {} } : io, false);
}

/** Why a finished call has no result: its stored error, or what its status says. */
function outcomeError(record: CallRecord): SkeinError {
  const e = record.error;
  if (e && isErrorCode(e.code)) return new SkeinError(e.code, String(e.message), { ...e.meta, ...(e.requestId ? { requestId: e.requestId } : {}), call: record.id });
  if (record.status === 'cancelled') return new SkeinError('SKEIN_ERR_CALL_CANCELLED', `call ${record.id} (${record.routine}) was cancelled`, { call: record.id });
  if (record.status === 'interrupted') {
    return new SkeinError('SKEIN_ERR_CALL_INTERRUPTED', `call ${record.id} (${record.routine}) was interrupted: the agent stopped while it ran, and ${record.routine} is not declared idempotent`, {
      call: record.id,
    });
  }
  return new SkeinError('SKEIN_ERR_BAD_RESPONSE', `call ${record.id} ended ${record.status} with an error this client does not know: ${JSON.stringify(e ?? null).slice(0, 200)}`, { call: record.id });
}
