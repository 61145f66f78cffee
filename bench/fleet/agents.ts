/**
 * The real agents under test: `dist/skein agent`, each in its own namespace, with the fleet's
 * root key, its own endorsed signing key and a fleet-CA certificate; logs to a file (a pipe
 * read here would wake this process per line). Their CPU and RSS are read from /proc.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT } from '../lib/skein.ts';
import { FLEET, realAgentFiles, type Fleet } from './material.ts';
import type { FleetNet } from './net.ts';

export const AGENT_PORT = 7443;
export const ADMIN = '127.0.0.1:9464';
const TICKS_PER_SECOND = 100; // getconf CLK_TCK on Linux

export interface RealAgent {
  name: string;
  ns: string;
  address: string;
  endpoint: string;
  proc: ChildProcess;
  pid: number;
  logFile: string;
  /** Unix ms of the spawn. */
  spawnedAt: number;
}

export interface RealAgentOptions {
  name: string;
  routines: string[];
  groups: Array<{ address: string; port: number }>;
  /** Overrides of discovery keys given on the command line (the rest: the agent's defaults). */
  timing: { intervalMs?: number; ttlMs?: number; wireVersion?: 1 | 2; budgetBytesPerSec?: number };
  clientSpiffe: string;
}

export async function startRealAgent(net: FleetNet, fleet: Fleet, cache: string, dir: string, o: RealAgentOptions): Promise<RealAgent> {
  const host = net.hosts.get(o.name);
  if (!host) throw new Error(`no namespace for ${o.name}`);
  const files = await realAgentFiles(cache, fleet, o.name, host.address, dir);
  const endpoint = `${host.address}:${AGENT_PORT}`;
  const config = {
    agent: { name: o.name, listen: endpoint, stateDir: `state-${o.name}` },
    admin: { listen: ADMIN },
    tls: { cert: files.cert, key: files.key, ca: files.ca },
    workers: { poolSize: 1 },
    authorization: { allow: [{ identities: [o.clientSpiffe], routines: ['*'] }] },
    routines: Object.fromEntries(o.routines.map((r) => [r, { file: join(ROOT, 'routines/examples.py') }])),
    discovery: {
      enabled: true,
      fleet: FLEET,
      signingKey: files.signingKey,
      endorsement: files.endorsement,
      rootKeys: [fleet.rootKey],
      groups: o.groups.map((g) => `${g.address}:${g.port}`),
      interface: host.address,
      ...o.timing,
    },
  };
  const configFile = join(dir, `${o.name}.config.json`);
  writeFileSync(configFile, JSON.stringify(config, null, 2), { mode: 0o600 });
  const logFile = join(dir, `${o.name}.log`);
  const fd = openSync(logFile, 'w');
  const spawnedAt = Date.now();
  const proc = net.exec(host.ns, BIN, ['agent', '--config', configFile], {
    cwd: dir,
    stdio: ['ignore', 'ignore', fd],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' },
  });
  closeSync(fd);
  const agent: RealAgent = { name: o.name, ns: host.ns, address: host.address, endpoint, proc, pid: proc.pid!, logFile, spawnedAt };
  return agent;
}

/** Waits (bounded) for the agent to log `msg`; throws with the log's tail when it exits or times out. */
export async function waitForLog(agent: RealAgent, msg: string, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  const needle = `"msg":"${msg}"`;
  for (;;) {
    const text = readFileSync(agent.logFile, 'utf8');
    const line = text.split('\n').find((l) => l.includes(needle));
    if (line) return Date.parse((JSON.parse(line) as { ts: string }).ts);
    if (agent.proc.exitCode !== null || agent.proc.signalCode !== null || Date.now() > end) {
      throw new Error(`${agent.name} did not log "${msg}" (${agent.proc.exitCode !== null ? `exited ${agent.proc.exitCode}` : `${timeoutMs} ms`}):\n${text.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** CPU seconds (user + system) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) in parentheses: utime is 14th, stime 15th.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / TICKS_PER_SECOND;
}

/**
 * Resident memory, bytes (/proc/<pid>/status): all of it (VmRSS), and its two parts: anonymous
 * (RssAnon: the JavaScript heap, malloc'd memory, JIT code, stacks) and file-backed (RssFile:
 * pages of the binary's code and data the process has touched, clean and shared with every
 * process running the same binary, which the kernel may drop and read again).
 */
export function memoryOf(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kB = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : NaN;
  };
  return { rss: kB('VmRSS'), anon: kB('RssAnon'), file: kB('RssFile') };
}
