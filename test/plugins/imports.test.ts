/**
 * Plugins are loaded from disk by the compiled binary, where nothing but the plugin's own
 * folder resolves: every file in plugins/ may import './skein-plugin.ts' and nothing else,
 * and may not reach for Node/Bun globals the host does not promise (process, Buffer, require).
 * The last test proves it the hard way: each plugin is imported by Bun from a folder holding
 * only itself and skein-plugin.ts.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { file, requires } from '../helpers/requires.ts';
import { tempDir } from './helpers.ts';

const PLUGINS = resolve(import.meta.dirname, '../../plugins');
const API_COPY = 'skein-plugin.ts';
const files = readdirSync(PLUGINS).filter((f) => /\.(ts|mts|mjs|js)$/.test(f) && f !== API_COPY);

/** Source without comments, so prose mentioning "process" or an example import does not count. */
function code(file: string): string {
  return readFileSync(join(PLUGINS, file), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

describe('plugin files import only ./skein-plugin.ts', () => {
  it('finds the shipped plugins', () => {
    expect(files).toEqual(expect.arrayContaining(['bearer-jwt.ts', 'signed-nonce.ts', 'routine-policy.ts']));
  });

  for (const file of files) {
    it(file, () => {
      const src = code(file);
      const specifiers = [...src.matchAll(/\b(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*['"]([^'"]+)['"]/g)].map((m) => m[1] ?? m[2]);
      expect(specifiers.length).toBeGreaterThan(0);
      expect(new Set(specifiers)).toEqual(new Set(['./skein-plugin.ts']));
      expect(src).not.toMatch(/\bimport\s*\(/); // no dynamic import
      expect(src).not.toMatch(/\b(require|process|Buffer|Bun|Deno)\b/);
    });
  }
});

const BUN = resolve(import.meta.dirname, '../../node_modules/.bin/bun');

describe('plugin files load in Bun from a folder of their own', () => {
  requires(file(BUN, { why: 'npm install puts it there' })).it('each plugin imports with only skein-plugin.ts next to it', () => {
    for (const file of files) {
      const dir = tempDir();
      copyFileSync(join(PLUGINS, API_COPY), join(dir, API_COPY));
      copyFileSync(join(PLUGINS, file), join(dir, file));
      const out = execFileSync(BUN, ['-e', `const m = await import(${JSON.stringify(join(dir, file))}); console.log(m.default.name, typeof m.default.setup)`], {
        cwd: dir,
        encoding: 'utf8',
      });
      expect(out.trim(), file).toBe(`${file.replace(/\.[a-z]+$/, '')} function`);
    }
  });
});
