import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  plugins: [
    {
      // Mirrors Bun's text import of .py files so unit tests can import agent modules.
      name: 'python-as-text',
      enforce: 'pre',
      load(id) {
        if (id.endsWith('.py')) return `export default ${JSON.stringify(readFileSync(id, 'utf8'))};`;
        return undefined;
      },
    },
    {
      // Bun's text imports (`import X from './f' with { type: 'text' }`: the plugin
      // templates) become string constants, as in the compiled binary.
      name: 'text-imports',
      enforce: 'pre',
      transform(code, id) {
        if (!id.includes('/agent/') || !code.includes("type: 'text'")) return undefined;
        return code.replace(
          /import (\w+) from '([^']+)' with \{ type: 'text' \};/g,
          (_m, name: string, path: string) => `const ${name} = ${JSON.stringify(readFileSync(resolve(dirname(id), path), 'utf8'))};`,
        );
      },
    },
  ],
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['./test/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // End-to-end suites start binaries and workers; two cores do not gain from more.
    maxWorkers: 2,
    env: { CBOR_NATIVE_ACCELERATION_DISABLED: 'true' },
  },
});
