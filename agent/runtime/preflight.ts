/**
 * `skein validate`: every check `skein agent` runs before it binds a port, with the same
 * codes and messages, and none of its lasting effects — so `ExecStartPre=skein validate` is
 * a real gate. It reads the TLS files (or checks that the development PKI's folder can be
 * written), loads the routines (URL code fetched and pinned), runs the sandbox canary,
 * compiles every routine in a throwaway confined worker (one per pool), loads and verifies
 * the plugins, checks discovery's signing key, endorsement and trust store, and opens the async
 * calls' store (calls.store; when it does not exist yet, checks that its folder can be
 * written, without creating it). What a check
 * has to write goes to a private temporary folder, removed afterwards.
 */
import { accessSync, chmodSync, constants, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { nullAudit } from '../audit/index.ts';
import type { AgentConfig } from '../config/schema.ts';
import { planDiscoveryReload } from '../discovery/reload.ts';
import { StartStack } from '../lifecycle/stack.ts';
import type { Logger } from '../log/index.ts';
import { readTls } from '../pki/tls.ts';
import { LivePipeline } from '../plugin-host/live.ts';
import { prepareSandbox } from '../sandbox/prepare.ts';
import { loadRoutines } from '../sources/routines.ts';
import { buildPools, workerLimits } from '../workers/pools.ts';
import { CallStore, sqliteAvailable, storePathOf } from '../calls/store.ts';
import { startupFailure } from './startup-error.ts';

export interface PreflightOptions {
  config: AgentConfig;
  log: Logger;
  /** The embedded default config: routine files may come from the binary. */
  embedded: boolean;
  baseDir: string;
}

/** What was checked, for the operator (validate prints it to stderr). */
export interface PreflightReport {
  tls: 'files' | 'development PKI';
  routines: number;
  workers: number;
  plugins: string[];
  discovery: boolean;
}

export async function preflight({ config, log, embedded, baseDir }: PreflightOptions): Promise<PreflightReport> {
  const scratch = mkdtempSync(join(tmpdir(), 'skein-validate-'));
  // As the state folder is: workers (other uids under the sandbox) pass through to their cwd.
  chmodSync(scratch, 0o711);
  // Plugin copies and worker folders go to the scratch folder, not the state folder.
  const probe: AgentConfig = { ...config, agent: { ...config.agent, stateDir: scratch } };
  const stack = new StartStack({ onError: (part, err) => log.warn('could not stop a part of the check', { part, error: (err as Error)?.message ?? String(err) }) });
  try {
    const { cert, key, ca } = config.tls;
    const tls = cert && key && ca ? readTls({ cert, key, ca }, config) : undefined;
    if (!tls) writable(config.agent.stateDir);
    await checkStore(config);

    const { sources } = await loadRoutines(config, log, embedded, nullAudit);
    // One worker per pool compiles every routine it serves, confined as in production.
    const one: AgentConfig = { ...probe, workers: { ...probe.workers, poolSize: 1 }, routines: Object.fromEntries(Object.entries(config.routines).map(([n, r]) => [n, { ...r, workers: 1 }])) };
    const cwd = join(scratch, 'run', 'empty');
    mkdirSync(cwd, { recursive: true, mode: 0o755 });
    const { started: ready } = await prepareSandbox(config, workerLimits(config), log, (sandbox) => stack.push('workers', buildPools(one, sources, sandbox, cwd, log)).start());

    stack.push('plugins', await LivePipeline.start(probe, { log, baseDir, audit: nullAudit }));
    const enabled = config.plugins.enabled.map((p) => p.name);

    const multicast = config.discovery.enabled && config.discovery.groups.length > 0;
    if (config.discovery.enabled) {
      const trustDomains = tls?.material.trustDomains ?? [config.tls.trustDomain];
      const spiffe = tls?.certificate.spiffeId ?? `spiffe://${config.tls.trustDomain}/agent/${config.agent.name}`;
      planDiscoveryReload(config.discovery, { spiffe, trustDomains, multicast });
    }
    return { tls: tls ? 'files' : 'development PKI', routines: Object.keys(config.routines).length, workers: ready.length, plugins: enabled, discovery: config.discovery.enabled };
  } catch (err) {
    throw startupFailure(err, config);
  } finally {
    await stack.unwind();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The async calls' store opens as the agent would open it; a store not created yet needs a writable folder. */
async function checkStore(config: AgentConfig): Promise<void> {
  const path = storePathOf(config);
  if (!(await sqliteAvailable())) return; // run from source under Node: the agent would start without it too
  if (!existsSync(path)) {
    try {
      return writable(dirname(path));
    } catch (err) {
      // Reported as the agent would fail: opening the store's file (named by calls.store).
      throw Object.assign(err as Error, { syscall: 'open', path });
    }
  }
  const { resultTtlMs, maxStored, maxBytes } = config.calls;
  await (await CallStore.open({ path, resultTtlMs, maxStored, maxBytes })).close();
}

/**
 * The agent creates its development PKI under agent.stateDir: the folder (or the nearest one
 * that exists above it) must be writable. access(W_OK) also says EROFS for a read-only mount.
 */
function writable(stateDir: string): void {
  let dir = resolve(stateDir);
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  // Phrased as the agent's own failure would be: the folder it would create.
  const fail = (code: string, message: string) => Object.assign(new Error(message), { code, syscall: 'mkdir', path: resolve(stateDir) });
  if (!statSync(dir).isDirectory()) throw fail('ENOTDIR', `${dir} is not a folder`);
  try {
    accessSync(dir, constants.W_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw fail(e.code ?? 'EACCES', e.message);
  }
}
