/**
 * Compiles agent/main.ts into the single binary dist/skein (Bun runtime embedded).
 * Run with `bun build.ts` (npm run build).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { CONFIG_SCHEMA } from './agent/config/schema.ts';
import { toJsonSchema } from './agent/config/schema-dsl.ts';
import { configReference } from './agent/config/reference.ts';
import { pluginApiCopy } from './agent/plugin-host/publish.ts';

// `bun build.ts --schema` regenerates the published JSON Schema and key reference from the
// validator's own description; test/unit/config.test.ts fails when the committed copy drifts.
if (process.argv.includes('--schema')) {
  const schema = { $schema: 'https://json-schema.org/draft/2020-12/schema', title: 'skein agent configuration', ...toJsonSchema(CONFIG_SCHEMA) };
  writeFileSync('docs/config.schema.json', `${JSON.stringify(schema, null, 2)}\n`);
  writeFileSync('docs/config-reference.md', configReference(CONFIG_SCHEMA));
  writeFileSync('plugins/skein-plugin.ts', pluginApiCopy());
  console.log('wrote docs/config.schema.json, docs/config-reference.md and plugins/skein-plugin.ts');
  process.exit(0);
}

const outfile = process.env.SKEIN_OUTFILE ?? 'dist/skein';
mkdirSync('dist', { recursive: true });
const started = performance.now();
const result = await Bun.build({
  entrypoints: ['agent/main.ts'],
  compile: { outfile },
  minify: { syntax: true, whitespace: true },
  sourcemap: 'linked',
  bytecode: true,
  target: 'bun',
  // cbor-x's native add-on decoded wrongly under Bun and would be loaded from the build
  // machine's node_modules at run time; the pure-JS path is correct and fast enough.
  // The plugin API's source, which `skein plugin new` and the plugin loader write next to
  // plugins (agent/plugin-host/publish.ts says why it is not a text import).
  define: {
    'process.env.CBOR_NATIVE_ACCELERATION_DISABLED': '"true"',
    SKEIN_PLUGIN_API_SOURCE: JSON.stringify(readFileSync('agent/plugin-host/api.ts', 'utf8')),
  },
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
console.log(`built ${outfile} in ${Math.round(performance.now() - started)} ms`);
