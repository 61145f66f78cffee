/**
 * Output reaches its reader whole, pipes included, or the command fails: `skein dispatch`
 * piped into a slow reader delivers every byte of a large result, and a write error (the
 * reader gone, a full disk) is exit 1 with SKEIN_ERR_OUTPUT, never a silent exit 0.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, BINARY, FIXTURES, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';

let agent: StartedAgent;

beforeAll(async () => {
  agent = await startAgent({ config: baseConfig({ routines: { big: { file: join(FIXTURES, 'routines.py') } } }) });
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

const dispatchArgs = (n: number) => ['dispatch', 'big', '--args', JSON.stringify([n]), '--peer', `127.0.0.1:${agent.port}`, '--cert', agent.pki.cert, '--key', agent.pki.key, '--ca', agent.pki.ca];

/**
 * `skein dispatch big N | (sleep; wc -c)` in a shell, as the user who found the truncation ran
 * it: the reader starts late, so the binary exits while most of its output is still unread.
 * `pipefail` carries the binary's exit code out of the pipeline.
 */
function slowReader(n: number, delaySec: number): Promise<{ code: number | null; bytes: number; stderr: string }> {
  const quoted = [BINARY, ...dispatchArgs(n)].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
  return new Promise((resolve) => {
    execFile('bash', ['-o', 'pipefail', '-c', `${quoted} | (sleep ${delaySec}; wc -c)`], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, bytes: Number(stdout.trim()), stderr });
    });
  });
}

/** Runs `skein dispatch big N` with stdout on a given file descriptor. */
function toFd(n: number, fd: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(BINARY, dispatchArgs(n), { stdio: ['ignore', fd, 'pipe'] });
    const killer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    let stderr = '';
    proc.stderr!.on('data', (d) => (stderr += d));
    proc.on('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stderr });
    });
  });
}

describe('skein dispatch into a pipe', () => {
  // The printed result is the string plus a newline.
  it.each([[100_000], [4_000_000]])('a %d-byte result reaches a reader that starts late, whole, and exits 0', async (n) => {
    const r = await slowReader(n, 0.7);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.bytes).toBe(n + 1);
  });

  it('a full disk (/dev/full) is exit 1 with SKEIN_ERR_OUTPUT naming ENOSPC', async () => {
    const fd = openSync('/dev/full', 'w');
    try {
      const r = await toFd(100_000, fd);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/error \[SKEIN_ERR_OUTPUT\]: cannot write standard output: ENOSPC; the output is incomplete/);
    } finally {
      closeSync(fd);
    }
  });

  it('a reader that goes away (EPIPE) is exit 1 with SKEIN_ERR_OUTPUT, and the agent keeps serving', async () => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const proc = spawn(BINARY, dispatchArgs(1_000_000), { stdio: ['ignore', 'pipe', 'pipe'] });
      const killer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      let stderr = '';
      proc.stderr!.on('data', (d) => (stderr += d));
      // Read the first chunk, then close our end: the rest of the write meets EPIPE.
      proc.stdout!.once('data', () => proc.stdout!.destroy());
      proc.on('exit', (code) => {
        clearTimeout(killer);
        resolve({ code, stderr });
      });
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error \[SKEIN_ERR_OUTPUT\]: cannot write standard output: EPIPE/);
    expect(await agent.client().dispatch('big', { args: [3] })).toBe('xxx');
  });
});
