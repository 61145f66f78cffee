/**
 * Tests that need something the host may lack: network namespaces, bubblewrap, PyJWT,
 * testssl.sh, an unprivileged user to drop to, Bun. The one policy for them, applied here
 * and nowhere else (test/lint.mjs refuses skipIf and ctx.skip outside this file):
 *
 *  - outside CI a missing tool skips the tests, and the skip names the Debian package;
 *  - in CI (env CI set, other than "false" or "0") the same tests FAIL, naming it, so the
 *    suite can never shrink unseen. scripts/test-tools.sh installs every package named here.
 *
 * @example
 *   const bwrap = requires(tool('bwrap', 'bubblewrap'));
 *   bwrap.describe('bubblewrap outer layer', () => { … });
 *   requires(pythonModules(['jwt'], 'python3-jwt')).it('mints with PyJWT', async () => { … });
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it, type TestFunction } from 'vitest';

export interface Need {
  /** What the tests need, e.g. "testssl". */
  what: string;
  ok: boolean;
  /** Why it is missing, when more can be said than "not installed". */
  why?: string;
  /** Debian package(s) providing it; absent for what no package provides (root). */
  debian?: string;
}

/** CI=true (any value but "false" or "0"): a missing tool fails the run. */
export function inCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env.CI?.trim().toLowerCase();
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/** A command on PATH. */
export function tool(command: string, debian: string): Need {
  const ok = spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
  return { what: command, ok, debian };
}

/** A file that must exist (an interpreter, a binary installed by npm). */
export function file(path: string, provider: { debian?: string; why?: string }): Need {
  return { what: path, ok: existsSync(path), ...provider };
}

/** Python modules importable by /usr/bin/python3 (Debian's packages install there). */
export function pythonModules(modules: string[], debian: string, python = '/usr/bin/python3'): Need {
  const r = spawnSync(python, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8' });
  const ok = r.status === 0;
  return { what: `${python} with ${modules.join(', ')}`, ok, debian, ...(ok ? {} : { why: (r.error?.message ?? r.stderr.trim().split('\n').pop() ?? '').trim() }) };
}

/** A condition no package provides, e.g. running as root. */
export function condition(what: string, ok: boolean, why?: string): Need {
  return { what, ok, ...(why ? { why } : {}) };
}

/** "testssl is missing: apt-get install testssl.sh; …", or undefined when nothing is. */
export function missing(needs: Need[]): string | undefined {
  const gone = needs.filter((n) => !n.ok);
  if (gone.length === 0) return undefined;
  return gone.map((n) => `${n.what} is missing${n.why ? ` (${n.why})` : ''}${n.debian ? `: apt-get install ${n.debian}` : ''}`).join('; ');
}

type Describe = (name: string, fn: () => void) => void;
type It = (name: string, fn: TestFunction, timeoutMs?: number) => void;

/** `describe` and `it` that run when every need is met, and otherwise skip (or fail in CI). */
export function requires(...needs: Need[]): { describe: Describe; it: It; missing: string | undefined } {
  const why = missing(needs);
  if (why === undefined) {
    return {
      describe: (name, fn) => describe(name, fn),
      it: (name, fn, timeoutMs) => it(name, fn, timeoutMs),
      missing: undefined,
    };
  }
  if (inCi()) {
    const fail = () => {
      throw new Error(`in CI a test that needs a missing tool fails instead of skipping: ${why}`);
    };
    return {
      describe: (name) => describe(name, () => it(`needs: ${why}`, fail)),
      it: (name) => it(name, fail),
      missing: why,
    };
  }
  const skipped = (name: string) => {
    console.warn(`skipped "${name}": ${why} (in CI this fails)`);
    return `${name} — skipped: ${why}`;
  };
  return {
    describe: (name, fn) => describe.skipIf(true)(skipped(name), fn),
    it: (name, fn, timeoutMs) => it.skipIf(true)(skipped(name), fn, timeoutMs),
    missing: why,
  };
}

/**
 * The same policy for skips a test learns of afterwards (test/sandbox/test_confine.py, run
 * by unittest): throws in CI, warns outside it. `skipped` lists "test: reason" lines.
 */
export function reportSkips(suite: string, skipped: string[]): void {
  if (skipped.length === 0) return;
  const text = `${suite}: ${skipped.length} test(s) skipped:\n  ${skipped.join('\n  ')}`;
  if (inCi()) throw new Error(`in CI a skipped test fails the run: ${text}`);
  console.warn(`${text}\n(in CI this fails)`);
}
