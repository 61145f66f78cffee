// Lint for skein (npm run lint, run by npm test): typescript-eslint's recommended rules plus
// skein's boundaries (eslint/skein-rules.mjs). Formatting is Prettier's (.prettierrc.json).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import skein from './eslint/skein-rules.mjs';

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'clients/python/**', 'test/fixtures/plugins/**', '**/*.py'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.{ts,mts,mjs,js}'],
    languageOptions: {
      globals: {
        process: 'readonly',
        Buffer: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        queueMicrotask: 'readonly',
        URL: 'readonly',
        TextDecoder: 'readonly',
        TextEncoder: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        fetch: 'readonly',
        performance: 'readonly',
        Bun: 'readonly',
        structuredClone: 'readonly',
        NodeJS: 'readonly',
      },
    },
    plugins: { skein },
    rules: {
      // Control characters are what several validators look for on purpose (names, headers, log text).
      'no-control-regex': 'off',
      // "_name": deliberately unused (a destructured field left out, a parameter kept for its position).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // Bun's text imports of .ts templates are default imports TypeScript cannot type; each says why.
      '@typescript-eslint/ban-ts-comment': ['error', { 'ts-ignore': 'allow-with-description', 'ts-expect-error': 'allow-with-description' }],
      // A `let` read by closures before its one assignment (start-up wiring) stays a `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      'skein/layers': 'error',
      'skein/plugin-imports': 'error',
      'no-restricted-imports': ['error', { paths: [{ name: 'undici', message: "Under Bun a bare 'undici' resolves to Bun's stand-in, which ignores TLS options: import 'undici/index.js'." }] }],
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.type='MemberExpression'][callee.object.name=/^(it|test|describe)$/][callee.property.name=/^(only|skip)$/]",
          message: 'focused or skipped tests silently shrink the suite (a missing tool: requires() from test/helpers/requires.ts)',
        },
      ],
    },
  },
  {
    // A test that needs a tool the host may lack goes through requires(): outside CI it skips
    // naming the Debian package, in CI it fails. No other conditional skips.
    files: ['test/**'],
    ignores: ['test/helpers/requires.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.type='MemberExpression'][callee.object.name=/^(it|test|describe)$/][callee.property.name=/^(only|skip)$/]",
          message: 'focused or skipped tests silently shrink the suite (a missing tool: requires() from test/helpers/requires.ts)',
        },
        { selector: "CallExpression[callee.type='MemberExpression'][callee.property.name=/^(skipIf|runIf)$/]", message: 'conditional skip: use requires() from test/helpers/requires.ts' },
        {
          selector: "CallExpression[callee.type='MemberExpression'][callee.object.name=/^(ctx|context|t)$/][callee.property.name='skip']",
          message: 'conditional skip: use requires() from test/helpers/requires.ts',
        },
      ],
    },
  },
  {
    // Tests poke at untyped wire data (raw frames, decoded bodies) on purpose.
    files: ['test/**', 'bench/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
