/**
 * The README's quick start, run as written: the agent on the repository's agent.config.json
 * (127.0.0.1:7443, as the README says), then each `./dist/skein dispatch` line with the result
 * its comment promises, the curl call, and the TypeScript snippet; then the Python examples of
 * docs/clients.md against the same agent. Port 7443 is the README's; nothing else in the suite
 * uses it.
 */
import { execFile, spawn } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BINARY, ROOT, stopAll, tempDir } from '../helpers/agent.ts';

const run = promisify(execFile);
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const CLIENTS = readFileSync(join(ROOT, 'docs/clients.md'), 'utf8');
const blocks = (lang: string, doc = README) => [...doc.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);

let dir: string;
let agent: ReturnType<typeof spawn>;
const sh = (command: string) =>
  run('bash', ['-c', command], { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e) => ({ code: e.code as number, stdout: String(e.stdout), stderr: String(e.stderr) }),
  );

beforeAll(async () => {
  // A checkout as the README's reader has it: the config, the example routines, the binary.
  dir = tempDir();
  cpSync(join(ROOT, 'agent.config.json'), join(dir, 'agent.config.json'));
  cpSync(join(ROOT, 'routines'), join(dir, 'routines'), { recursive: true });
  mkdirSync(join(dir, 'dist'));
  symlinkSync(BINARY, join(dir, 'dist/skein'));
  symlinkSync(join(ROOT, 'clients'), join(dir, 'clients'));
  // `npm start` is `npm run build && ./dist/skein agent --config agent.config.json`.
  expect(README).toContain('npm ci && npm start');
  expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start).toBe('npm run build && ./dist/skein agent --config agent.config.json');
  agent = spawn('./dist/skein', ['agent', '--config', 'agent.config.json'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  agent.stderr!.on('data', (d) => (log += d));
  for (const until = Date.now() + 20_000; !/listening/.test(log); await new Promise((r) => setTimeout(r, 50))) {
    if (agent.exitCode !== null || Date.now() > until) throw new Error(`the quick-start agent did not start:\n${log}`);
  }
});
afterAll(async () => {
  agent?.kill('SIGTERM');
  await new Promise((r) => (agent?.exitCode !== null ? r(undefined) : agent.once('exit', r)));
  await stopAll();
});

describe('README quick start', () => {
  it('each dispatch line does what its comment says', async () => {
    const lines = blocks('sh')
      .flatMap((b) => b.split('\n'))
      .filter((l) => l.startsWith('./dist/skein dispatch'));
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      const [command, comment] = line.split(/\s+# /) as [string, string];
      const r = await sh(command);
      const exit = /^exit (\d+)/.exec(comment);
      if (exit) {
        expect(r.code, `${command}\n${r.stderr}`).toBe(Number(exit[1]));
        expect(r.stderr).toMatch(/ValueError/);
        continue;
      }
      expect(r.code, `${command}\n${r.stderr}`).toBe(0);
      const promised = comment.replace(/^→ /, '');
      if (!promised.startsWith('{')) {
        expect(r.stdout.trim()).toBe(promised);
        continue;
      }
      // JSON with "…" for what varies per call (the request id): same keys, same fixed values.
      const expected = JSON.parse(promised) as Record<string, unknown>;
      const got = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(Object.keys(got).sort()).toEqual(Object.keys(expected).sort());
      for (const [k, v] of Object.entries(expected)) if (v !== '…') expect(got[k]).toEqual(v);
    }
  });

  it('the curl call answers as shown', async () => {
    const block = blocks('sh').find((b) => b.startsWith('curl'))!;
    const [command, answer] = block.split('\n# ') as [string, string];
    const r = await sh(command);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(answer.trim());
  });

  it('the TypeScript snippet runs as written and prints 5', async () => {
    // Its import is relative to the repository root, where the README says to run it.
    const file = join(ROOT, `.readme-example-${process.pid}.ts`);
    writeFileSync(file, blocks('ts')[0]!);
    try {
      const r = await run(join(ROOT, 'node_modules/.bin/bun'), [file], { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CBOR_NATIVE_ACCELERATION_DISABLED: 'true' } });
      expect(r.stdout.trim()).toBe('5');
    } finally {
      rmSync(file, { force: true });
    }
  });
});

describe('docs/clients.md', () => {
  // ```python blocks run as written against the quick-start agent; ```py blocks are fragments.
  const examples = blocks('python', CLIENTS);

  it('the first Python example has five lines', () => {
    expect(examples[0]!.trimEnd().split('\n')).toHaveLength(5);
  });

  it.each(examples.map((code, i) => [i + 1, code]))('Python example %i runs as written and prints what its comments say', async (_i, code) => {
    // The command the doc gives, from the repository root (here: the reader's checkout).
    const command = /`(PYTHONPATH=clients\/python \/usr\/bin\/python3 example\.py)`/.exec(CLIENTS)![1]!;
    writeFileSync(join(dir, 'example.py'), code);
    const promised = [...code.matchAll(/^\s*print\(.*\)\s+# (.*)$/gm)].map((m) => m[1]!);
    expect(promised.length).toBeGreaterThan(0);
    const r = await sh(command);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(promised);
  });
});
