/**
 * The first-party plugins (plugins/bearer-jwt.ts, routine-policy.ts, signed-nonce.ts) built
 * into the binary: enabled by name with no file to copy, trusted as part of the binary (no
 * signature needed, as the binary itself is what the operator installed), and loaded through
 * the same path as plugins on disk — so the audit start lines name them with the SHA-256 of
 * the source that runs.
 *
 * build.ts inlines their sources (a `define`); agent/ never imports plugins/ as code. Run from
 * the source tree (tests), nothing is defined and the files are read from plugins/.
 */
import { readFileSync } from 'node:fs';

declare const SKEIN_BUILTIN_PLUGINS: Record<string, string> | undefined;

export const BUILTIN_PLUGIN_NAMES = ['bearer-jwt', 'routine-policy', 'signed-nonce'] as const;
/** The built-in plugins that authenticate tokens (strict mode asks for one with one-way TLS or h2c). */
export const TOKEN_PLUGIN_NAMES = ['bearer-jwt', 'signed-nonce'] as const;

let sources: Record<string, string> | undefined;

/** The built-in plugin's source, or undefined for a name that is not built in. */
export function builtinPluginSource(name: string): string | undefined {
  if (!(BUILTIN_PLUGIN_NAMES as readonly string[]).includes(name)) return undefined;
  sources ??=
    typeof SKEIN_BUILTIN_PLUGINS === 'object'
      ? SKEIN_BUILTIN_PLUGINS
      : Object.fromEntries(BUILTIN_PLUGIN_NAMES.map((n) => [n, readFileSync(new URL(`../../plugins/${n}.ts`, import.meta.url), 'utf8')]));
  return sources[name];
}
