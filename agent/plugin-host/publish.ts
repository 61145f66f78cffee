/**
 * The copy of the plugin API that sits next to plugins (plugins/skein-plugin.ts, and what
 * `skein plugin new` writes): plugins loaded from disk cannot import from the binary, so they
 * import this file. Generated from api.ts; a test fails when the committed copy drifts.
 */
// @ts-expect-error TypeScript resolves api.ts as a module; Bun's text attribute yields its source.
import API from './api.ts' with { type: 'text' };

export const PLUGIN_API_FILE = 'skein-plugin.ts';

export function pluginApiCopy(): string {
  return `// Generated from skein's agent/plugin-host/api.ts (skein plugin new writes it); do not edit.\n${API as string}`;
}
