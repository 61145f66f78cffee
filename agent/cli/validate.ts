/** `skein validate`: loads the config exactly as the agent would and prints the result. */
import { loadConfig, redactedConfig } from '../config/load.ts';
import { AllowRules } from '../plugin-host/allow-rules.ts';
import { assertStrict } from '../security/strict.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

export const VALIDATE_USAGE = `Usage: skein validate [--config PATH] [--strict]

Loads and validates the configuration (extends chain, SKEIN_* environment overrides
included) and prints the effective configuration as JSON, secrets redacted.
With --strict (or security.strict in the config), also reports every strict-mode violation
(exit 2) without starting anything.
Exit codes: 0 valid, 2 invalid (the message names the key and the file).`;

export async function runValidate(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, { config: { type: 'string' }, strict: { type: 'boolean' } });
  if (values.help) {
    io.out(VALIDATE_USAGE);
    return 0;
  }
  const loaded = loadConfig({ path: values.config, flags: { 'security.strict': values.strict ? 'true' : undefined } });
  if (loaded.config.security.strict) assertStrict(loaded.config, loaded.files);
  // The pipeline compiles these at start and on reload; here, so a malformed pattern is named now.
  new AllowRules(loaded.config.authorization.allow);
  io.out(JSON.stringify({ source: loaded.source, config: redactedConfig(loaded.config) }, null, 2));
  return 0;
}
