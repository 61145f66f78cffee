/**
 * Assembles a running agent from a validated config: TLS material (the development PKI
 * when none is configured), routine sources, the worker pool, the HTTP/2 listener, and a
 * graceful `stop()` that drains in-flight calls. The CLI owns signals and exit codes.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pkg from '../../package.json' with { type: 'json' };
import { createAudit, type Audit } from '../audit/index.ts';
import { auditedConfig } from '../audit/redact.ts';
import type { AgentConfig } from '../config/schema.ts';
import { parseHostPort } from '../config/load.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { DiscoveryService } from '../discovery/service.ts';
import { startAdmin, type AdminListener } from '../admin/index.ts';
import { AgentMetrics } from '../metrics/index.ts';
import { loadPlugins } from '../plugin-host/loader.ts';
import { AuthPipeline } from '../plugin-host/pipeline.ts';
import { prepareSandbox } from '../sandbox/prepare.ts';
import { createApp } from '../server/app.ts';
import { listen, type Listener } from '../server/listener.ts';
import type { PoolSet } from '../workers/pool-set.ts';
import { buildPools, workerLimits } from '../workers/pools.ts';
import { Reloader, type ReloadResult } from './reload.ts';
import { computePosture, warnPosture, type PluginHooks } from '../security/posture.ts';
import { loadRoutines } from '../sources/routines.ts';
import { logTrustDomains, readTls, tlsFiles } from '../pki/tls.ts';
import { IdentityReader } from '../server/identity.ts';

export interface RunningAgent {
  address: { host: string; port: number };
  pool: PoolSet;
  /** The admin listener's address (metrics, health), when admin.enabled. */
  admin?: { host: string; port: number };
  /** Stops accepting, drains in-flight calls up to limits.drainTimeoutMs, stops workers. Idempotent. */
  stop(): Promise<void>;
  /** SIGHUP: re-reads the config and applies what a running agent can change (runtime/reload.ts). */
  reload(): Promise<ReloadResult>;
}

export interface StartOptions {
  config: AgentConfig;
  log: Logger;
  /** True when running the built-in default config: routine files may come from the binary. */
  embedded?: boolean;
  /** Folder of the config file (plugins' readFile paths resolve against it). */
  baseDir: string;
  /** Where the config came from (its path, or "embedded"), for the audit stream's agent.start. */
  source?: string;
  /** Loads the config again for a reload (same file, environment and flags); throws when invalid. */
  reloadConfig?: () => { config: AgentConfig; source: string; files?: string[] };
}

/**
 * Starts the agent. The audit stream opens first and records agent.start with the effective
 * config (secrets redacted); a start-up that fails is recorded as agent.stop before the error
 * propagates, and the stream is flushed so the lines survive the exit that follows.
 */
export async function startAgent(options: StartOptions): Promise<RunningAgent> {
  const { config, log } = options;
  const metrics = new AgentMetrics();
  const audit = createAudit(config.audit, { log, agent: config.agent.name, onFailure: (lines, reason) => metrics.auditDropped(reason, lines) });
  audit.record('agent.start', { version: pkg.version, pid: process.pid, ...(options.source ? { source: options.source } : {}), config: auditedConfig(config) });
  try {
    return await assemble(options, metrics, audit);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    audit.record('agent.stop', { reason: 'start-failed', code: e.code, error: e.message ?? String(err) });
    await audit.close();
    throw err;
  }
}

/** The parts of a running agent, in start-up order; each failure undoes what was started. */
async function assemble({ config, log, embedded = false, baseDir, reloadConfig }: StartOptions, metrics: AgentMetrics, audit: Audit): Promise<RunningAgent> {
  const { host, port } = parseHostPort(config.agent.listen);
  const loadedTls = readTls(await tlsFiles(config, host, log), config);
  const tls = loadedTls.material;
  if (!config.tls.plaintext) logTrustDomains(loadedTls, config, log);
  const identities = new IdentityReader(tls.trustDomains);
  const { sources, infos } = await loadRoutines(config, log, embedded, audit);
  const cwd = join(config.agent.stateDir, 'run', 'empty');
  mkdirSync(cwd, { recursive: true, mode: 0o755 });
  const sandbox = prepareSandbox(config, workerLimits(config), log);

  const pool = buildPools(config, sources, sandbox, cwd, log, metrics, audit);
  try {
    const ready = await pool.start();
    log.info('workers ready', { count: ready.length, python: sandbox.python.executable, version: ready[0]?.python, layers: ready[0]?.layers ?? [] });
  } catch (err) {
    await pool.close(0);
    throw err;
  }

  // A holder, so a config reload can swap the pipeline between requests.
  const auth: { current: AuthPipeline } = { current: undefined as unknown as AuthPipeline };
  // What the loaded plugins can do, for the posture; a holder, like auth, so a reload can update it.
  const hooks: PluginHooks = { authenticate: false, authorize: false };
  try {
    auth.current = await startPlugins(config, baseDir, log, metrics, audit, hooks);
  } catch (err) {
    await pool.close(0);
    throw err;
  }

  let draining = false;
  let discovery: DiscoveryService | undefined;
  const idempotent = Object.entries(config.routines).filter(([, r]) => r.idempotent).map(([name]) => name);
  const app = createApp({
    pool,
    routines: infos,
    limits: config.limits,
    log,
    isDraining: () => draining,
    auth: { authenticate: (info, peer) => auth.current.authenticate(info, peer), authorize: (info, identity) => auth.current.authorize(info, identity) },
    metrics,
    identities,
    // idempotent: routines the (fleet) config declares safe to run twice, for callers' failover.
    peers: () => (discovery ? { enabled: true, peers: discovery.peers(), rejected: discovery.counters(), idempotent } : { enabled: false, peers: [] }),
  });
  let listener: Listener;
  try {
    listener = await listen(app, tls, host, port, log, config.http2, { plaintext: config.tls.plaintext, identities, tlsFailures: metrics });
  } catch (err) {
    await pool.close(0);
    const e = err as NodeJS.ErrnoException;
    throw new SkeinError('SKEIN_ERR_CONFIG', `cannot listen on ${config.agent.listen} (agent.listen): ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`, { key: 'agent.listen' });
  }
  const address = listener.address;
  const hostPort = `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
  log.info('listening', { address: hostPort, routines: [...infos.keys()] });
  const posture = () => computePosture(config, hooks);
  const stopPostureWarnings = warnPosture(posture, log);

  if (config.discovery.enabled) {
    const cert = loadedTls.certificate;
    try {
      discovery = await DiscoveryService.start({
        tls: { cert: tls.cert, key: tls.key, ca: tls.ca },
        config: config.discovery,
        trustDomains: tls.trustDomains,
        log,
        audit,
        self: {
          agent: config.agent.name,
          spiffe: cert.spiffeId ?? `spiffe://${config.tls.trustDomain}/agent/${config.agent.name}`,
          tlsFingerprint: cert.sha256,
          endpoints: config.discovery.advertise.length ? config.discovery.advertise : [hostPort],
          routines: [...infos.keys()],
          capacity: pool.stats.workers,
          load: () => pool.stats.inFlight,
        },
      });
    } catch (err) {
      stopPostureWarnings();
      listener.destroy();
      await pool.close(0);
      throw err;
    }
  }

  let certificate = loadedTls.certificate;
  const reloader = new Reloader({
    config,
    load: reloadConfig ?? (() => ({ config, source: 'embedded' })),
    tls: loadedTls,
    listener,
    discovery: () => discovery,
    auth,
    // Reloaded plugins get the same checks as at start; their hooks feed the posture once applied.
    loadPipeline: async (next) => {
      const h: PluginHooks = { authenticate: false, authorize: false };
      const pipeline = await startPlugins(next, baseDir, log, metrics, audit, h);
      return { pipeline, commit: () => Object.assign(hooks, h) };
    },
    log,
    setLogLevel: (level) => log.setLevel?.(level),
    audit,
    metrics,
    onTls: (next) => {
      certificate = next.certificate;
    },
  });
  metrics.bind({
    stats: () => pool.stats,
    canary: () => sandbox.canary,
    adverts: () => discovery?.counters(),
    peers: () => (discovery ? discovery.peers().length : undefined),
    certificateNotAfter: () => certificate.notAfter,
  });
  let admin: AdminListener | undefined;
  if (config.admin.enabled) {
    const a = parseHostPort(config.admin.listen);
    try {
      admin = await startAdmin({ host: a.host, port: a.port, token: config.admin.token, metrics, stats: () => pool.stats, isDraining: () => draining, posture, log });
    } catch (err) {
      reloader.close();
      stopPostureWarnings();
      await discovery?.stop();
      listener.destroy();
      await pool.close(0);
      const e = err as NodeJS.ErrnoException;
      throw new SkeinError('SKEIN_ERR_CONFIG', `cannot listen on ${config.admin.listen} (admin.listen): ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`, { key: 'admin.listen' });
    }
    const h = admin.address.host;
    log.info('admin listening', { address: `${h.includes(':') ? `[${h}]` : h}:${admin.address.port}`, auth: config.admin.token !== undefined ? 'bearer' : 'none (loopback)' });
  }

  let stopping: Promise<void> | undefined;
  return {
    address,
    pool,
    ...(admin ? { admin: admin.address } : {}),
    reload: () => reloader.reload(),
    stop() {
      stopping ??= (async () => {
        draining = true;
        reloader.close();
        stopPostureWarnings();
        // Goodbye first, so peers stop sending work while in-flight calls drain.
        await discovery?.stop();
        const grace = config.limits.drainTimeoutMs;
        log.info('draining', { inFlight: pool.stats.inFlight, graceMs: grace });
        listener.stopAccepting();
        await pool.close(grace);
        await listener.idle(Math.min(grace, 2000));
        listener.destroy();
        await auth.current.close();
        // Last: /readyz answers 503 "draining" while calls drain.
        await admin?.close();
        log.info('stopped');
        // Last of all, so the stream holds everything up to the end; close() flushes it.
        audit.record('agent.stop', { reason: 'shutdown' });
        await audit.close();
      })();
      return stopping;
    },
  };
}

async function startPlugins(config: AgentConfig, baseDir: string, log: Logger, metrics: AgentMetrics, audit: Audit, hooks: PluginHooks): Promise<AuthPipeline> {
  const plugins = await loadPlugins(config.plugins, { log, baseDir, runDir: join(config.agent.stateDir, 'run', 'plugins'), audit, strict: config.security.strict });
  hooks.authenticate = plugins.some((p) => p.hooks.authenticate);
  hooks.authorize = plugins.some((p) => p.hooks.authorize);
  if (config.authorization.default === 'allow') {
    // Strict mode refuses this off loopback (security/strict.ts); everywhere else it stays loud.
    log.warn('authorization.default is "allow": every authenticated caller may run every routine that no plugin denies; list what callers may run in authorization.allow and keep the default "deny"', { key: 'authorization.default' });
  }
  if (config.tls.clientCerts === 'optional' && !plugins.some((p) => p.hooks.authenticate)) {
    log.warn('tls.clientCerts is "optional" but no enabled plugin authenticates tokens: every caller without a client certificate will be refused');
  }
  return new AuthPipeline(plugins, { hookTimeoutMs: config.plugins.hookTimeoutMs, requireToken: config.plugins.requireToken, log, metrics, audit, authorization: config.authorization });
}
