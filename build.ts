/**
 * Compiles agent/main.ts into the single binary dist/skein (Bun runtime embedded).
 * Run with `bun build.ts` (npm run build).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { CONFIG_SCHEMA } from './agent/config/schema.ts';
import { configJsonSchema } from './agent/config/json-rules.ts';
import { configReference } from './agent/config/reference.ts';
import { pluginApiCopy } from './agent/plugin-host/publish.ts';
import { BUILTIN_PLUGIN_NAMES } from './agent/plugin-host/builtin.ts';
import { cliDocWithSynopsis } from './agent/cli/docs.ts';

// `bun build.ts --schema` regenerates the published JSON Schema and key reference from the
// validator's own description; test/unit/config.test.ts fails when the committed copy drifts.
if (process.argv.includes('--schema')) {
  writeFileSync('docs/config.schema.json', `${JSON.stringify(configJsonSchema(), null, 2)}\n`);
  writeFileSync('docs/config-reference.md', configReference(CONFIG_SCHEMA));
  writeFileSync('plugins/skein-plugin.ts', pluginApiCopy());
  writeFileSync('docs/cli.md', cliDocWithSynopsis(readFileSync('docs/cli.md', 'utf8')));
  console.log('wrote docs/config.schema.json, docs/config-reference.md, plugins/skein-plugin.ts and the synopsis of docs/cli.md');
  process.exit(0);
}

const outfile = process.env.SKEIN_OUTFILE ?? 'dist/skein';

/** The commit the binary is built from (with "-dirty" for uncommitted changes), for --version and skein_build_info. */
function commit(): string {
  const git = (...args: string[]) => Bun.spawnSync(['git', ...args], { stderr: 'ignore' });
  const head = git('rev-parse', '--short=12', 'HEAD');
  if (head.exitCode !== 0) return 'unknown';
  const dirty = git('status', '--porcelain', '--untracked-files=no').stdout.toString().trim() !== '';
  return `${head.stdout.toString().trim()}${dirty ? '-dirty' : ''}`;
}
// SOURCE_DATE_EPOCH (reproducible builds) wins over the clock.
const buildDate = new Date(process.env.SOURCE_DATE_EPOCH ? Number(process.env.SOURCE_DATE_EPOCH) * 1000 : Date.now()).toISOString().replace(/\.\d{3}Z$/, 'Z');
mkdirSync('dist', { recursive: true });
const started = performance.now();
const result = await Bun.build({
  entrypoints: ['agent/main.ts'],
  // A standalone Bun binary otherwise reads bunfig.toml (whose `preload` runs any script),
  // .env (which would set SKEIN_* config variables), tsconfig.json and package.json from the
  // directory it is started in: whoever can write there would configure or run code in the
  // agent. The agent's configuration comes from its config file, its flags and the real
  // environment only (test/e2e/autoload.test.ts).
  compile: { outfile, autoloadBunfig: false, autoloadDotenv: false, autoloadTsconfig: false, autoloadPackageJson: false },
  minify: { syntax: true, whitespace: true },
  sourcemap: 'linked',
  bytecode: true,
  target: 'bun',
  // cbor-x's native add-on decoded wrongly under Bun and would be loaded from the build
  // machine's node_modules at run time; the pure-JS path is correct and fast enough.
  define: {
    'process.env.CBOR_NATIVE_ACCELERATION_DISABLED': '"true"',
    SKEIN_BUILD_COMMIT: JSON.stringify(commit()),
    SKEIN_BUILD_DATE: JSON.stringify(buildDate),
    // The first-party plugins, loaded by name with no file on disk (agent/plugin-host/builtin.ts).
    SKEIN_BUILTIN_PLUGINS: JSON.stringify(Object.fromEntries(BUILTIN_PLUGIN_NAMES.map((n) => [n, readFileSync(`plugins/${n}.ts`, 'utf8')]))),
    // The plugin API's source, which `skein plugin new` and the plugin loader write next to
    // plugins (agent/plugin-host/publish.ts says why it is not a text import).
    SKEIN_PLUGIN_API_SOURCE: JSON.stringify(readFileSync('agent/plugin-host/api.ts', 'utf8')),
  },
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
console.log(`built ${outfile} in ${Math.round(performance.now() - started)} ms`);
