/** `skein routines`: what an agent serves — each routine's name, Python function and code SHA-256. */
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';
import { table } from './table.ts';
import { clientFor, resolveTarget, TARGET_FLAGS, TARGET_HELP } from './target.ts';

export const ROUTINES_USAGE = `Usage: skein routines [--peer HOST[:PORT]] [--cert PATH --key PATH --ca PATH] [--token T | --token-file F]
                      [--profile NAME] [--json] [--config PATH]

Lists the routines an agent serves: name, Python function, the SHA-256 of the code it
loaded (compare it with sha256sum of the file you reviewed) and its deadline when set.
Defaults as for skein dispatch: the agent of the local config, with its development client
certificate.

${TARGET_HELP}
  --json             print the answer as JSON`;

export async function runRoutines(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, { ...TARGET_FLAGS, json: { type: 'boolean' } });
  if (values.help) {
    io.out(ROUTINES_USAGE);
    return 0;
  }
  const target = resolveTarget(values);
  const client = clientFor(target);
  try {
    const routines = await client.routines();
    if (values.json) {
      io.out(JSON.stringify({ routines }));
      return 0;
    }
    const rows = [...routines].sort((a, b) => a.name.localeCompare(b.name)).map((r) => [r.name, r.function, r.sha256, r.timeoutMs ? `${r.timeoutMs} ms` : '-']);
    io.out(table(['ROUTINE', 'FUNCTION', 'SHA-256', 'TIMEOUT'], rows));
    return 0;
  } finally {
    await client.destroy();
  }
}
