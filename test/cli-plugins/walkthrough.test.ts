/**
 * docs/plugins.md's business-hours walkthrough, run as a reader would: scaffold with the CLI,
 * paste the hook and the test cases from the page, run `skein plugin test`, sign, and load it
 * into an agent.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, stopAll, tempDir } from '../helpers/agent.ts';

const run = promisify(execFile);
afterAll(stopAll);

/** The fenced blocks of one language in the walkthrough section, in order. */
function walkthroughBlocks(lang: string): string[] {
  const doc = readFileSync(join(ROOT, 'docs/plugins.md'), 'utf8');
  const start = doc.indexOf('## Walkthrough: a business-hours decision hook');
  const section = doc.slice(start, doc.indexOf('\n## ', start + 1));
  return [...section.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}

describe('docs/plugins.md walkthrough', () => {
  it('scaffold, paste the hook and its tests, skein plugin test passes, and it signs', async () => {
    const dir = tempDir();
    const commands = walkthroughBlocks('sh').map((b) => b.trim());
    expect(commands[0]).toBe('skein plugin new office-hours --kind authz --dir plugins');
    expect((await runCli(commands[0]!.split(' ').slice(1), { cwd: dir })).code).toBe(0);

    const [hook, cases] = walkthroughBlocks('ts');
    writeFileSync(join(dir, 'plugins/office-hours.ts'), hook!);
    // "keep its imports": the scaffolded test's import lines, then the page's cases.
    const scaffolded = readFileSync(join(dir, 'plugins/office-hours.test.ts'), 'utf8');
    const imports = scaffolded
      .split('\n')
      .filter((l) => l.startsWith('import '))
      .join('\n');
    writeFileSync(join(dir, 'plugins/office-hours.test.ts'), `${imports}\n\n${cases}`);

    expect(commands[1]).toBe('skein plugin test --dir plugins office-hours');
    const tested = await run(join(ROOT, 'dist/skein'), commands[1]!.split(' ').slice(1), { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, NO_COLOR: '1' } }).catch((e) => e);
    const output = `${tested.stdout ?? ''}${tested.stderr ?? ''}`;
    expect(tested.code ?? 0, output).toBe(0);
    expect(output).toMatch(/\b3 pass\b/);
    expect(output).toMatch(/\b0 fail\b/);

    expect((await runCli(['keygen', '--out', 'release.key'], { cwd: dir })).code).toBe(0);
    const signed = await runCli(['plugin', 'sign', 'plugins/office-hours.ts', '--key', 'release.key'], { cwd: dir });
    expect(signed.stdout).toMatch(/as plugin "office-hours" version 1\.0\.0/);
  }, 60_000);
});
