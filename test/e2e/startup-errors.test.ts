/**
 * A start-up that fails on the file system is a typed configuration error naming the path
 * and the config key (exit 2), never an internal error with a stack trace — the systemd case
 * first: a read-only /etc with agent.stateDir left pointing into it.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BINARY, EXAMPLES, runCli, stopAll, tempDir } from '../helpers/agent.ts';

afterAll(stopAll);

const config = (stateDir: string, extra: Record<string, unknown> = {}) => ({
  agent: { name: 't', listen: '127.0.0.1:0', stateDir },
  log: { format: 'json' },
  workers: { poolSize: 1 },
  routines: { echo: { file: EXAMPLES } },
  ...extra,
});

/** Runs `skein agent` in a private mount namespace (root and util-linux's unshare, as in CI) where `ro` is bind-mounted read-only. */
function agentWithReadOnly(ro: string, configPath: string, command: 'agent' | 'validate' = 'agent'): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const script = `mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" "$4" --config "$3"`;
    const proc = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ro, BINARY, configPath, command], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe('start-up failures on the file system', () => {
  it('agent.stateDir under a read-only folder (the systemd ProtectSystem case): exit 2 naming the key, no stack trace', async () => {
    const etc = tempDir();
    // A fleet set-up: TLS files given, so the first write is the state folder itself.
    const pki = join(etc, 'pki');
    for (const args of [
      ['pki', 'init', '--dir', pki],
      ['pki', 'issue', '--dir', pki, '--name', 't', '--kind', 'agent'],
    ])
      expect((await runCli(args)).code).toBe(0);
    const path = join(etc, 'agent.config.json');
    writeFileSync(path, JSON.stringify(config(join(etc, '.skein'), { tls: { cert: join(pki, 'agent-t.crt'), key: join(pki, 'agent-t.key'), ca: join(pki, 'ca.crt') } })));
    const r = await agentWithReadOnly(etc, path);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      new RegExp(
        `error \\[SKEIN_ERR_CONFIG\\]: cannot create the folder ${etc}/\\.skein\\S* \\(agent\\.stateDir is "${etc}/\\.skein"\\): read-only file system \\(EROFS\\): set agent\\.stateDir to a writable folder \\(under systemd, StateDirectory=skein provides /var/lib/skein\\)`,
      ),
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it.each([['agent'], ['validate']] as const)('the same with the development PKI: skein %s exits 2 naming agent.stateDir', async (command) => {
    const etc = tempDir();
    const path = join(etc, 'agent.config.json');
    writeFileSync(path, JSON.stringify(config(join(etc, '.skein'))));
    const r = await agentWithReadOnly(etc, path, command);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/error \[SKEIN_ERR_CONFIG\]: cannot create the folder .*\(agent\.stateDir is ".*\/\.skein"\): read-only file system \(EROFS\)/);
  });

  it('agent.stateDir through a regular file: exit 2 naming the key', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'file'), 'x');
    const path = join(dir, 'agent.config.json');
    writeFileSync(path, JSON.stringify(config(join(dir, 'file', 'state'))));
    const r = await runCli(['agent', '--config', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/error \[SKEIN_ERR_CONFIG\]: cannot create the folder .*file\/state\S* \(agent\.stateDir is ".*\/file\/state"\): a component of the path is not a folder \(ENOTDIR\)/);
  });
});
