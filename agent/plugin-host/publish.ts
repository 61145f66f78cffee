/**
 * The copy of the plugin API that sits next to plugins (plugins/skein-plugin.ts, and what
 * `skein plugin new` writes): plugins loaded from disk cannot import from the binary, so they
 * import this file. Generated from api.ts; a test fails when the committed copy drifts.
 */
import { readFileSync } from 'node:fs';

/**
 * api.ts's source, inlined into the binary by build.ts (a `define`). It cannot be a text
 * import: the agent also imports api.ts as code (the pattern matcher of authorization.allow),
 * and Bun's bundler keys modules by path, so one file cannot be both. Run from the source tree
 * (tests, `npm run schema`) nothing is defined and the file is read next to this one.
 */
declare const SKEIN_PLUGIN_API_SOURCE: string | undefined;

export const PLUGIN_API_FILE = 'skein-plugin.ts';

export function pluginApiCopy(): string {
  const api = typeof SKEIN_PLUGIN_API_SOURCE === 'string' ? SKEIN_PLUGIN_API_SOURCE : readFileSync(new URL('./api.ts', import.meta.url), 'utf8');
  return `// Generated from skein's agent/plugin-host/api.ts (skein plugin new writes it); do not edit.\n${api}`;
}
