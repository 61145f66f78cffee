/**
 * `skein validate`: loads the config exactly as the agent would, then runs every check the
 * agent runs before it binds a port (runtime/preflight.ts), and prints the result.
 */
import { loadConfig, redactedConfig } from '../config/load.ts';
import { createLogger } from '../log/index.ts';
import { preflight } from '../runtime/preflight.ts';
import { assertStrict } from '../security/strict.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

export const VALIDATE_USAGE = `Usage: skein validate [--config PATH] [--strict] [--config-only]

Checks that the agent would start with this configuration, without starting it: loads and
validates the configuration (extends chain, SKEIN_* environment overrides included), then
runs every check skein agent runs before it binds a port, with the same error codes and
messages — the TLS files, the routines (URL code fetched and pinned), the sandbox canary,
each routine compiled in a throwaway confined worker, the plugins loaded and verified,
discovery's keys and trust store. Prints the effective configuration as JSON (secrets
redacted) with what was checked. Nothing is written outside a temporary folder.

  --config PATH   config file (default: ./agent.config.json, else the embedded default)
  --strict        also report every strict-mode violation (as security.strict does)
  --config-only   check the configuration alone (syntax, keys, cross-field rules, strict
                  mode), not what starting needs

Exit codes: 0 the agent would start, 2 it would not (the message names the key and the file).`;

export async function runValidate(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, { config: { type: 'string' }, strict: { type: 'boolean' }, 'config-only': { type: 'boolean' } });
  if (values.help) {
    io.out(VALIDATE_USAGE);
    return 0;
  }
  const loaded = loadConfig({ path: values.config, flags: { 'security.strict': values.strict ? 'true' : undefined } });
  const { config } = loaded;
  if (config.security.strict) assertStrict(config, loaded.files);
  let checked: Record<string, unknown> = { config: true };
  if (!values['config-only']) {
    // Only what would stop or worry a start reaches stderr; the agent's info lines are its own.
    const log = createLogger({ level: 'warn', format: config.log.format });
    checked = { config: true, ...(await preflight({ config, log, embedded: loaded.source === 'embedded', baseDir: loaded.baseDir })) };
  }
  io.out(JSON.stringify({ source: loaded.source, config: redactedConfig(config), checked }, null, 2));
  return 0;
}
