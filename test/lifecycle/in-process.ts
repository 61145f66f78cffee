/**
 * Runs the agent inside the test process (agent/runtime startAgent, real workers, real
 * sockets) so a test can call its API directly and account for what it leaves behind: the
 * child processes of this process (/proc) and every timer, socket, watcher and child handle
 * created while it ran (async_hooks sees unref'd timers too, which the event loop does not
 * count).
 */
import { createHook } from 'node:async_hooks';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../agent/config/load.ts';
import { createLogger } from '../../agent/log/index.ts';
import { startAgent, type RunningAgent } from '../../agent/runtime/index.ts';
import { baseConfig, tempDir } from '../helpers/agent.ts';

export interface InProcess {
  lines: Array<Record<string, unknown>>;
  start(): Promise<RunningAgent>;
}

/** An agent configured like test/helpers/agent.ts's baseConfig (+ overrides), audit off, logs captured. */
export function inProcessAgent(overrides: Record<string, unknown> = {}, dir = tempDir()): InProcess {
  const path = join(dir, 'agent.config.json');
  writeFileSync(path, JSON.stringify(baseConfig({ audit: { sink: 'off' }, ...overrides })), { mode: 0o600 });
  const loaded = loadConfig({ path, env: {} });
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { lines, start: () => startAgent({ config: loaded.config, log, baseDir: loaded.baseDir, source: loaded.source, reloadConfig: () => loadConfig({ path, env: {} }) }) };
}

/** PIDs whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry));
    } catch {
      // raced with an exit
    }
  }
  return out;
}

/** Resource types that outlive a call unless someone releases them. */
const TRACKED = new Set(['Timeout', 'FSEVENTWRAP', 'TCPSERVERWRAP', 'TCPWRAP', 'UDPWRAP', 'PROCESSWRAP', 'PIPEWRAP', 'PIPESERVERWRAP', 'STATWATCHER', 'SIGNALWRAP', 'HTTP2SESSION']);

/**
 * Records the tracked resources created from now on and not yet destroyed. Timers count
 * until they fire or are cleared: an interval nobody clears stays in the list.
 */
export function trackResources(): { live(): string[]; stop(): void } {
  const live = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (TRACKED.has(type)) live.set(id, type);
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  return { live: () => [...live.values()].sort(), stop: () => hook.disable() };
}
