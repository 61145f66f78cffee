/**
 * Compiles agent/main.ts into the single binary dist/skein (Bun runtime embedded).
 * Run with `bun build.ts` (npm run build).
 */
import { mkdirSync } from 'node:fs';

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
  define: { 'process.env.CBOR_NATIVE_ACCELERATION_DISABLED': '"true"' },
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
console.log(`built ${outfile} in ${Math.round(performance.now() - started)} ms`);
