/**
 * The CLI explains itself: `skein help CMD` prints that command's usage, docs/cli.md's synopsis
 * is generated from the same texts (and must not drift), shell completion offers the commands
 * and flags those texts name (run in real bash, zsh and fish), and `skein routines` lists what
 * an agent serves with the SHA-256 of the code it loaded.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliDocWithSynopsis } from '../../agent/cli/docs.ts';
import { COMMANDS } from '../../agent/cli/commands.ts';
import { EXAMPLES, ROOT, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

let agent: StartedAgent;
beforeAll(async () => {
  agent = await startAgent();
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

describe('help', () => {
  it('docs/cli.md carries the synopsis generated from every --help (npm run schema regenerates it)', () => {
    const doc = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8');
    expect(cliDocWithSynopsis(doc)).toBe(doc);
  });

  it.each(Object.keys(COMMANDS).filter((c) => c !== 'help'))('skein help %s prints what skein %s --help prints', async (command) => {
    const viaHelp = await runCli(['help', command]);
    const viaFlag = await runCli([command, '--help']);
    expect(viaHelp.code).toBe(0);
    expect(viaFlag.code).toBe(0);
    expect(viaHelp.stdout).toBe(viaFlag.stdout);
    expect(viaHelp.stdout).toMatch(new RegExp(`^Usage: skein ${command}`));
  });

  it('skein help pki issue prints the sub-command usage; unknown names are exit 2 naming them', async () => {
    const issue = await runCli(['help', 'pki', 'issue']);
    expect(issue.stdout).toBe((await runCli(['pki', 'issue', '--help'])).stdout);
    const unknown = await runCli(['help', 'frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/SKEIN_ERR_USAGE.*unknown command "frobnicate"/);
    const sub = await runCli(['help', 'pki', 'nope']);
    expect(sub.code).toBe(2);
    expect(sub.stderr).toMatch(/"skein pki" has no sub-command "nope" \(init, issue\)/);
    expect((await runCli(['help'])).stdout).toMatch(/^ {2}routines +list the routines an agent serves/m);
  });
});

describe('shell completion', () => {
  const script = (shell: string) => {
    const file = join(tempDir(), `skein.${shell}`);
    writeFileSync(file, execFileSync(join(ROOT, 'dist/skein'), ['completion', shell], { encoding: 'utf8' }));
    return file;
  };
  /** What the bash-style function offers for the words typed so far (the last one may be partial). */
  const offered = (shell: 'bash' | 'zsh', words: string[]) => {
    const file = script(shell);
    // zsh runs bash functions through bashcompinit's _bash_complete, which sets ksharrays (0-based arrays).
    const program = `source ${file}; ${shell === 'zsh' ? 'setopt ksharrays; ' : ''}COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _skein; print_it() { printf '%s\\n' "\${COMPREPLY[@]}"; }; print_it`;
    const reply = execFileSync(shell, shell === 'zsh' ? ['-f', '-c', `autoload -U compinit && compinit -u; ${program}`] : ['-c', program], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
    // zsh's compgen emulation leaves prefix matching to compadd, which _bash_complete calls next.
    return shell === 'zsh' ? reply.filter((w) => w.startsWith(words.at(-1)!)) : reply;
  };

  it.each([['bash'], ['zsh']] as const)('%s: commands, sub-commands and the flags of each', (shell) => {
    expect(offered(shell, ['skein', 'rou'])).toEqual(['routines']);
    expect(offered(shell, ['skein', 'dispatch', 'add', '--pr'])).toEqual(['--priority', '--profile']);
    expect(offered(shell, ['skein', 'dispatch', 'add', '--st'])).toEqual(['--stream']);
    expect(offered(shell, ['skein', 'calls', ''])).toEqual(['get', 'wait', 'cancel', 'list']);
    expect(offered(shell, ['skein', 'calls', 'list', '--st'])).toEqual(['--status']);
    expect(offered(shell, ['skein', 'pki', ''])).toEqual(['init', 'issue']);
    expect(offered(shell, ['skein', 'pki', 'issue', '--k'])).toEqual(['--kind']);
    // The value of a flag is a file name: the function offers nothing and the shell's default takes over.
    expect(offered(shell, ['skein', 'dispatch', '--cert', ''])).toEqual([]);
  });

  it('fish: complete -C offers the same', () => {
    const file = script('fish');
    const complete = (line: string) =>
      execFileSync('fish', ['--no-config', '-c', `source ${file}; complete -C '${line}'`], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t')[0]);
    expect(complete('skein rou')).toEqual(['routines']);
    expect(complete('skein dispatch add --pr')).toEqual(['--priority', '--profile']);
    expect(complete('skein calls ')).toEqual(['cancel', 'get', 'list', 'wait']); // fish sorts
    expect(complete('skein calls wait ID --ti')).toEqual(['--timeout']);
    expect(complete('skein pki ')).toEqual(['init', 'issue']);
    expect(complete('skein pki issue --ki')).toEqual(['--kind']);
  });

  it('an unknown shell is exit 2 naming the shells', async () => {
    const r = await runCli(['completion', 'powershell']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/expected one shell: bash, zsh, fish/);
  });
});

describe('skein routines', () => {
  const args = () => ['--peer', `127.0.0.1:${agent.port}`, '--cert', agent.pki.cert, '--key', agent.pki.key, '--ca', agent.pki.ca];
  const sha = createHash('sha256').update(readFileSync(EXAMPLES)).digest('hex');

  it('lists each routine with its function and the SHA-256 of the file it loaded', async () => {
    const r = await runCli(['routines', ...args()]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ROUTINE +FUNCTION +SHA-256 +TIMEOUT$/);
    expect(lines.slice(1).map((l) => l.split(/ +/).slice(0, 3))).toEqual([
      ['add', 'add', sha],
      ['echo', 'echo', sha],
      ['fail', 'fail', sha],
      ['sleep', 'sleep', sha],
    ]);
  });

  it('--json gives the same list as data', async () => {
    const r = await runCli(['routines', '--json', ...args()]);
    const { routines } = JSON.parse(r.stdout) as { routines: Array<{ name: string; sha256: string }> };
    expect(routines.map((x) => x.name).sort()).toEqual(['add', 'echo', 'fail', 'sleep']);
    expect(routines.every((x) => x.sha256 === sha)).toBe(true);
  });
});
