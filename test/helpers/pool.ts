/**
 * Real worker pools inside the test (or bench) process: the agent's own wiring
 * (agent/workers/pools.ts buildPools, the sandbox as configured), without the HTTP server,
 * so a test can drive the pool API (call/dispatch) directly with real Python workers.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nullAudit } from '../../agent/audit/index.ts';
import { loadConfig } from '../../agent/config/load.ts';
import { createLogger, type Logger } from '../../agent/log/index.ts';
import { prepareSandbox } from '../../agent/sandbox/prepare.ts';
import { loadRoutines } from '../../agent/sources/routines.ts';
import type { PoolSet } from '../../agent/workers/pool-set.ts';
import { buildPools, workerLimits } from '../../agent/workers/pools.ts';
import { baseConfig, tempDir } from './agent.ts';

export interface TestPools {
  pools: PoolSet;
  /** Log records written so far (level debug). */
  lines: Array<Record<string, unknown>>;
}

/** Starts the pools an agent with baseConfig(overrides) would run; stop them with pools.destroy(). */
export async function startPools(overrides: Record<string, unknown> = {}, dir = tempDir()): Promise<TestPools> {
  const path = join(dir, 'agent.config.json');
  writeFileSync(path, JSON.stringify(baseConfig(overrides)), { mode: 0o600 });
  const config = loadConfig({ path, env: {} }).config;
  const lines: Array<Record<string, unknown>> = [];
  const log: Logger = createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  const { sources } = await loadRoutines(config, log, false, nullAudit);
  const { sandbox } = await prepareSandbox(config, workerLimits(config), log, async () => undefined);
  const cwd = join(dir, 'empty');
  mkdirSync(cwd, { recursive: true });
  const pools = buildPools(config, sources, sandbox, cwd, log);
  await pools.start();
  return { pools, lines };
}
