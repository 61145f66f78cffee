/**
 * Flag parsing on node:util parseArgs (strict: unknown flags are errors), turning its
 * TypeErrors into SKEIN_ERR_USAGE so the CLI exits 2 with a message naming the flag.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SkeinError } from '../../common/errors/index.ts';

export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals });
  } catch (err) {
    throw new SkeinError('SKEIN_ERR_USAGE', `${(err as Error).message} (see --help)`);
  }
}

export function parseIntFlag(value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new SkeinError('SKEIN_ERR_USAGE', `--${flag} must be an integer between ${min} and ${max}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}
