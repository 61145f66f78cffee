/**
 * Running under systemd: the shipped unit (deploy/systemd/skein.service) passes
 * `systemd-analyze verify` and rates "OK" or better in `systemd-analyze security`, and the
 * agent speaks sd_notify on $NOTIFY_SOCKET — READY=1 once it serves, RELOADING=1/READY=1
 * around a SIGHUP, STOPPING=1 when it drains — read by a real AF_UNIX datagram socket.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { BINARY, ROOT, startAgent, stopAll, tempDir } from '../helpers/agent.ts';

const run = promisify(execFile);
const UNIT = join(ROOT, 'deploy/systemd/skein.service');
const listeners: ChildProcess[] = [];
afterAll(async () => {
  for (const l of listeners) l.kill('SIGKILL');
  await stopAll();
});

describe('the shipped unit file', () => {
  it('passes systemd-analyze verify (the binary at the path the unit names)', async () => {
    // verify checks that ExecStart's binary exists: point a copy at this build.
    const dir = tempDir();
    const unit = join(dir, 'skein.service');
    writeFileSync(unit, readFileSync(UNIT, 'utf8').replaceAll('/usr/local/bin/skein', BINARY));
    const r = await run('systemd-analyze', ['verify', unit]).catch((e) => e);
    expect(`${r.stdout ?? ''}${r.stderr ?? ''}`).toBe('');
    expect(r.code ?? 0).toBe(0);
  });

  it('rates OK or better in systemd-analyze security', async () => {
    const r = await run('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT]).catch((e) => e);
    const level = /Overall exposure level for skein\.service: ([\d.]+) (\w+)/.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`);
    expect(level, r.stdout).not.toBeNull();
    expect(Number(level![1])).toBeLessThan(5);
    expect(['SAFE', 'OK']).toContain(level![2]);
  });

  it('is Type=notify with the validate gate, and its ExecStart config is the one docs/operations.md shows', () => {
    const unit = readFileSync(UNIT, 'utf8');
    expect(unit).toMatch(/^Type=notify$/m);
    expect(unit).toMatch(/^ExecStartPre=\/usr\/local\/bin\/skein validate --config \/etc\/skein\/host\.json$/m);
    expect(unit).toMatch(/^StateDirectory=skein$/m);
    const doc = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
    expect(doc).toContain('// /etc/skein/host.json');
    expect(doc).toContain('"stateDir": "/var/lib/skein"');
  });
});

/** A datagram socket at `path` (or "@abstract"), collecting what is sent to it. */
async function notifySocket(path: string): Promise<{ messages: string[]; next: (pred: (m: string) => boolean) => Promise<string> }> {
  const script = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
p = sys.argv[1]
s.bind("\\0" + p[1:] if p.startswith("@") else p)
print("bound", flush=True)
while True:
    data = s.recv(4096)
    print(data.decode().replace("\\n", "|"), flush=True)
`;
  const proc = spawn('/usr/bin/python3', ['-u', '-c', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  listeners.push(proc);
  const messages: string[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      messages.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    for (const w of waiters) w();
  });
  const next = (pred: (m: string) => boolean) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching notification; got: ${messages.join(' / ')}`)), 15_000);
      const check = () => {
        const hit = messages.find(pred);
        if (hit !== undefined) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(hit);
        }
      };
      waiters.add(check);
      check();
    });
  await next((m) => m === 'bound');
  return { messages, next };
}

describe('sd_notify', () => {
  it.each([
    ['a socket path', false],
    ['an abstract socket', true],
  ])('over %s: READY=1 with MAINPID once serving, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM', async (_name, abstract) => {
    const path = abstract ? `@skein-test-${process.pid}-${Date.now()}` : join(tempDir(), 'notify.sock');
    const sock = await notifySocket(path);
    const agent = await startAgent({ env: { NOTIFY_SOCKET: path } });
    const ready = await sock.next((m) => m.includes('READY=1'));
    expect(ready).toBe(`READY=1|MAINPID=${agent.pid}|STATUS=serving on 127.0.0.1:${agent.port}`);
    // Not before the listener: the "listening" line came first.
    expect(agent.logs.some((l) => l.msg === 'listening')).toBe(true);

    agent.proc.kill('SIGHUP');
    await sock.next((m) => m.startsWith('RELOADING=1'));
    await agent.waitForLog((l) => l.msg === 'config reloaded' || l.msg === 'config reload refused');
    await sock.next((m) => m.includes('READY=1') && sock.messages.indexOf(m) > sock.messages.findIndex((x) => x.startsWith('RELOADING=1')));

    expect(await agent.stop('SIGTERM')).toBe(0);
    expect(await sock.next((m) => m.startsWith('STOPPING=1'))).toBe('STOPPING=1|STATUS=draining after SIGTERM');
  });

  it('no NOTIFY_SOCKET: nothing is attempted, the agent serves', async () => {
    const agent = await startAgent();
    expect(await agent.client().dispatch('add', { args: [1, 2] })).toBe(3);
    expect(agent.logs.filter((l) => String(l.msg).includes('systemd'))).toEqual([]);
    await agent.stop();
  });
});
