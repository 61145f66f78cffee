/**
 * A real `dist/skein` agent (or any long-running tool) inside a test network namespace
 * (test/helpers/netns.ts), with its JSON log lines collected so a test can wait for one.
 * Started through `host.exec`, so the network's destroy() stops it by PID if the test does not.
 *
 * @example
 *   const a = await startNsAgent(net.hosts[1]!, config, { ready: (l) => l.msg === 'listening' });
 *   await a.waitForLog((l) => l.msg === 'peer discovered', 5000);
 *   await a.stop();
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BINARY, tempDir } from './agent.ts';
import { stopProcess, type NetHost } from './netns.ts';

export type Line = Record<string, unknown>;

export interface NsProcess {
  proc: ChildProcess;
  /** Parsed JSON lines of stderr (the agent's log), in order. */
  lines: Line[];
  /** Everything else it printed. */
  raw: string[];
  waitForLog(match: (l: Line) => boolean, timeoutMs: number): Promise<Line>;
  /** SIGTERM by PID, SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const exited = (p: ChildProcess) => p.exitCode !== null || p.signalCode !== null;

/** Runs `cmd args` in `host`, collecting JSON lines from its stderr. */
export function nsProcess(host: NetHost, cmd: string, args: string[], cwd?: string): NsProcess {
  const proc = host.exec(cmd, args, { ...(cwd ? { cwd } : {}), stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' } });
  const lines: Line[] = [];
  const raw: string[] = [];
  let buf = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Line);
      } catch {
        raw.push(line);
      }
    }
  });
  proc.stdout?.setEncoding('utf8');
  proc.stdout?.on('data', (d: string) => raw.push(d));
  const waitForLog = async (match: (l: Line) => boolean, timeoutMs: number): Promise<Line> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const found = lines.find(match);
      if (found) return found;
      if (exited(proc)) throw new Error(`process exited (${proc.exitCode ?? proc.signalCode}) before the log line:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n${raw.join('')}`);
      if (Date.now() > end) throw new Error(`no matching log line within ${timeoutMs} ms:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n${raw.join('')}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const stop = (signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> => stopProcess(proc, graceMs, signal);
  return { proc, lines, raw, waitForLog, stop };
}

/** Writes `config` to a fresh directory and starts `skein agent` with it in `host`; resolves once it logs "listening". */
export async function startNsAgent(host: NetHost, config: Record<string, unknown>, timeoutMs = 20_000): Promise<NsProcess & { dir: string }> {
  const dir = tempDir();
  const path = join(dir, 'agent.config.json');
  writeFileSync(path, JSON.stringify(config, null, 2));
  const agent = nsProcess(host, BINARY, ['agent', '--config', path], dir);
  await agent.waitForLog((l) => l.msg === 'listening', timeoutMs);
  return { ...agent, dir };
}
