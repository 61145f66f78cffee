/** `skein validate`: loads the config exactly as the agent would and prints the result. */
import { loadConfig, redactedConfig } from '../config/load.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

export const VALIDATE_USAGE = `Usage: skein validate [--config PATH]

Loads and validates the configuration (extends chain, SKEIN_* environment overrides
included) and prints the effective configuration as JSON, secrets redacted.
Exit codes: 0 valid, 2 invalid (the message names the key and the file).`;

export async function runValidate(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, { config: { type: 'string' } });
  if (values.help) {
    io.out(VALIDATE_USAGE);
    return 0;
  }
  const loaded = loadConfig({ path: values.config });
  io.out(JSON.stringify({ source: loaded.source, config: redactedConfig(loaded.config) }, null, 2));
  return 0;
}
