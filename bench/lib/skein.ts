/**
 * Starting what the benches measure: the compiled agent (mTLS with the development PKI, the
 * strict sandbox profile and the audit stream on, as shipped: both are defaults the config
 * below leaves alone) and the raw baseline (bench/baseline-server.ts) with the agent's own
 * certificate, so both are reached by the same client over the same kind of connection.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SkeinClient, type ClientOptions } from '../../agent/client/index.ts';
import { PAYLOAD, type Call } from './workload.ts';
import type { Procs, Started } from './procs.ts';
import { BENCH_PYTHON } from './machine.ts';

export const ROOT = resolve(import.meta.dir, '../..');
export const BIN = join(ROOT, 'dist/skein');
const LISTENING = /"msg":"listening","address":"[^"]*:(\d+)"/;

export interface AgentHandle {
  name: string;
  started: Started;
  port: number;
  creds: Pick<ClientOptions, 'cert' | 'key' | 'ca'>;
  pkiDir: string;
}

/** The agent config the benches use; `extra` is merged at the top level (plugins, routines, workers). */
export function agentConfig(name: string, extra: Record<string, unknown> = {}, listen = '127.0.0.1:0'): Record<string, unknown> {
  return {
    agent: { name, listen, stateDir: `state-${name}` },
    workers: { python: BENCH_PYTHON },
    log: { level: 'warn', format: 'json' },
    // Authorization denies by default: the development client may run the bench routines.
    authorization: { allow: [{ identities: ['spiffe://skein.local/client/dev-client'], routines: ['echo', 'stamp'] }] },
    routines: { echo: { file: join(ROOT, 'routines/examples.py') } },
    ...extra,
  };
}

export async function startAgent(procs: Procs, config: Record<string, unknown>, opts: { bin?: string[]; env?: Record<string, string>; pollMs?: number } = {}): Promise<AgentHandle> {
  const name = (config.agent as { name: string }).name;
  const file = join(procs.dir, `${name}.config.json`);
  writeFileSync(file, JSON.stringify(config));
  const [cmd, ...pre] = opts.bin ?? [BIN];
  const started = await procs.start(cmd!, [...pre, 'agent', '--config', file, '--log-level', 'info'], LISTENING, { stream: 'stderr', env: opts.env, pollMs: opts.pollMs });
  const pkiDir = join(procs.dir, `state-${name}`, 'pki');
  return { name, started, port: Number(started.match[1]), creds: devClientCreds(pkiDir), pkiDir };
}

export function devClientCreds(pkiDir: string): Pick<ClientOptions, 'cert' | 'key' | 'ca'> {
  return { cert: readFileSync(join(pkiDir, 'client-dev-client.crt')), key: readFileSync(join(pkiDir, 'client-dev-client.key')), ca: readFileSync(join(pkiDir, 'ca.crt')) };
}

/** The raw baseline with the agent's certificate (its SAN is 127.0.0.1 too). */
export async function startBaseline(procs: Procs, agent: AgentHandle, opts: { oneWay?: boolean } = {}): Promise<number> {
  return (await startBaselineProc(procs, agent, opts)).port;
}

/** The baseline's process too, for benches that stop and start it (fresh-start rounds). */
export async function startBaselineProc(procs: Procs, agent: Pick<AgentHandle, 'name' | 'pkiDir'>, opts: { oneWay?: boolean } = {}): Promise<{ port: number; started: Started }> {
  const p = agent.pkiDir;
  const args = [join(ROOT, 'bench/baseline-server.ts'), join(p, `agent-${agent.name}.crt`), join(p, `agent-${agent.name}.key`), join(p, 'ca.crt'), ...(opts.oneWay ? ['--one-way'] : [])];
  const started = await procs.start(process.execPath, args, /^(\d+)\n/, { stream: 'stdout' });
  started.proc.stdout?.resume();
  return { port: Number(started.match[1]), started };
}

export function client(port: number, creds: AgentHandle['creds'], extra: Partial<ClientOptions> = {}): SkeinClient {
  return new SkeinClient({ peer: `127.0.0.1:${port}`, ...creds, ...extra });
}

/** One `echo` of the bench payload through a client. */
export const echoCall =
  (c: SkeinClient): Call =>
  () =>
    c.dispatch('echo', { args: [PAYLOAD] });
