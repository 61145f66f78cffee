import { readFileSync } from 'node:fs';
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
  ],
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // End-to-end suites start binaries and workers; two cores do not gain from more.
    maxWorkers: 2,
    env: { CBOR_NATIVE_ACCELERATION_DISABLED: 'true' },
  },
});
