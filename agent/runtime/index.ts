/**
 * Assembles a running agent from a validated config: TLS material (the development PKI
 * when none is configured), routine sources, the worker pools, the plugins, the HTTP/2
 * listener, discovery, the TLS watch and reloader, the admin listener. Every part follows
 * one lifecycle (agent/lifecycle): it is recorded on a start-up stack as it starts, and a
 * failure at any step destroys exactly what had started, last first. The CLI owns signals
 * and exit codes.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pkg from '../../package.json' with { type: 'json' };
import { createAudit, type Audit } from '../audit/index.ts';
import { auditedConfig } from '../audit/redact.ts';
import type { AgentConfig } from '../config/schema.ts';
import { parseHostPort } from '../config/load.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { liveLogLevel, type Logger } from '../log/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import type { Reloadable } from '../lifecycle/reloadable.ts';
import { StartStack } from '../lifecycle/stack.ts';
import type { DiscoveryService } from '../discovery/service.ts';
import { DISCOVERY_RELOAD_KEYS } from '../discovery/reload.ts';
import { startAdmin, type AdminListener } from '../admin/index.ts';
import { AgentMetrics } from '../metrics/index.ts';
import { LivePipeline } from '../plugin-host/live.ts';
import { prepareSandbox } from '../sandbox/prepare.ts';
import { createApp } from '../server/app.ts';
import { CallService } from '../calls/service.ts';
import { CallerWeights, callerKey, parsePriority } from '../calls/weights.ts';
import { AsyncCalls } from '../calls/async-calls.ts';
import { listen, type Listener } from '../server/listener.ts';
import { TlsReload } from '../server/tls-reload.ts';
import type { PoolSet } from '../workers/pool-set.ts';
import { buildPools, workerLimits } from '../workers/pools.ts';
import { Reloader, type ReloadResult } from './reload.ts';
import { computePosture, warnPosture } from '../security/posture.ts';
import { liveStrictMode } from '../security/strict.ts';
import { loadRoutines } from '../sources/routines.ts';
import { logTrustDomains, readTls, tlsFiles } from '../pki/tls.ts';
import { IdentityReader } from '../server/identity.ts';

/**
 * A running agent, itself a component: close() is the graceful stop (SIGTERM) — stop
 * accepting, drain in-flight calls up to limits.drainTimeoutMs, stop workers; destroy()
 * stops everything at once. Both idempotent and concurrent-safe.
 */
export interface RunningAgent extends Component {
  address: { host: string; port: number };
  pool: PoolSet;
  /** The admin listener's address (metrics, health), when admin.enabled. */
  admin?: { host: string; port: number };
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
 * config (secrets redacted). A start-up that fails destroys what had started (logged as
 * "start-up failed; stopped what had started", naming the parts), is recorded as agent.stop,
 * and the stream is flushed so the lines survive the exit that follows.
 */
export async function startAgent(options: StartOptions): Promise<RunningAgent> {
  const { config, log } = options;
  const metrics = new AgentMetrics();
  const audit = createAudit(config.audit, { log, agent: config.agent.name, onFailure: (lines, reason) => metrics.auditDropped(reason, lines) });
  audit.record('agent.start', { version: pkg.version, pid: process.pid, ...(options.source ? { source: options.source } : {}), config: auditedConfig(config) });
  const stack = new StartStack({ onError: (part, err) => log.warn('could not stop a part of the agent', { part, error: (err as Error)?.message ?? String(err) }) });
  try {
    return await assemble(options, metrics, audit, stack);
  } catch (err) {
    const stopped = await stack.unwind(err instanceof Error ? err : undefined);
    log.info('start-up failed; stopped what had started', { stopped });
    const e = err as { code?: string; message?: string };
    audit.record('agent.stop', { reason: 'start-failed', code: e.code, error: e.message ?? String(err) });
    await audit.close();
    throw err;
  }
}

/** A port that cannot be listened on, as the configuration error naming its key. */
function cannotListen(err: unknown, key: 'agent.listen' | 'admin.listen', value: string): SkeinError {
  const e = err as NodeJS.ErrnoException;
  return new SkeinError('SKEIN_ERR_CONFIG', `cannot listen on ${value} (${key}): ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`, { key }, { cause: err });
}

/** The parts of a running agent, in start-up order; each is pushed on `stack` as it starts. */
async function assemble({ config, log, embedded = false, baseDir, reloadConfig }: StartOptions, metrics: AgentMetrics, audit: Audit, stack: StartStack): Promise<RunningAgent> {
  const { host, port } = parseHostPort(config.agent.listen);
  const loadedTls = readTls(await tlsFiles(config, host, log), config);
  const tls = loadedTls.material;
  if (!config.tls.plaintext) logTrustDomains(loadedTls, config, log);
  const identities = new IdentityReader(tls.trustDomains);
  // Before any worker starts: a malformed calls.weights pattern fails the start (SKEIN_ERR_CONFIG).
  const weights = new CallerWeights(config.calls.weights);
  const { sources, infos } = await loadRoutines(config, log, embedded, audit);
  const cwd = join(config.agent.stateDir, 'run', 'empty');
  mkdirSync(cwd, { recursive: true, mode: 0o755 });
  // Recorded before it starts: workers that came up before another failed (or before the
  // sandbox canary refused the start) are stopped too.
  let pool!: PoolSet;
  const { sandbox, started: ready } = await prepareSandbox(config, workerLimits(config), log, (prepared) => {
    pool = stack.push('workers', buildPools(config, sources, prepared, cwd, log, metrics, audit));
    return pool.start();
  });
  log.info('workers ready', { count: ready.length, python: sandbox.python.executable, version: ready[0]?.python, layers: ready[0]?.layers ?? [] });

  // A reload may swap the pipeline behind it between requests.
  const auth = stack.push('plugins', await LivePipeline.start(config, { log, baseDir, metrics, audit }));

  let draining = false;
  let discovery: DiscoveryService | undefined;
  const idempotent = Object.entries(config.routines)
    .filter(([, r]) => r.idempotent)
    .map(([name]) => name);
  const calls = new CallService({
    pool,
    audit,
    metrics,
    isRoutine: (name) => infos.has(name),
  });
  // Async calls: the durable store, and the runner feeding its queued calls to the pools
  // through the call service (started once the listener is up; see below).
  const asyncCalls = stack.push('async calls', await AsyncCalls.open({ config, pool: calls, workers: pool.stats.workers, isRoutine: (name) => infos.has(name), log, audit }));
  const { store, runner } = asyncCalls;
  const app = createApp({
    calls,
    stats: () => pool.stats,
    callers: { priorityOf: parsePriority, keyOf: callerKey, weightOf: (identity) => weights.weightOf(identity) },
    routines: infos,
    limits: config.limits,
    log,
    isDraining: () => draining,
    auth,
    metrics,
    identities,
    ...(store && runner ? { asyncCalls: { store, runner, access: auth, audit } } : {}),
    // idempotent: routines the (fleet) config declares safe to run twice, for callers' failover.
    peers: () => (discovery ? { enabled: true, peers: discovery.peers(), rejected: discovery.counters(), idempotent } : { enabled: false, peers: [] }),
  });
  let listener: Listener;
  try {
    listener = await listen(app, tls, host, port, log, config.http2, { plaintext: config.tls.plaintext, identities, tlsFailures: metrics, closeWaitMs: Math.min(config.limits.drainTimeoutMs, 2000) });
  } catch (err) {
    throw cannotListen(err, 'agent.listen', config.agent.listen);
  }
  stack.push('listener', listener);
  // Calls left by the last run (queued, or cut off mid-run) run now that results can be fetched.
  asyncCalls.start();
  const address = listener.address;
  const hostPort = `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
  log.info('listening', { address: hostPort, routines: [...infos.keys()] });
  // The running configuration, as the reloader keeps it (the start-up one until it exists):
  // the posture follows a reload (plugins, authorization.default); so does the TLS watch below.
  let reloader: Reloader | undefined;
  const posture = () => computePosture(reloader?.config ?? config, auth.hooks);
  const postureWarnings = stack.push('posture warnings', warnPosture(posture, log));

  if (config.discovery.enabled) {
    const cert = loadedTls.certificate;
    // Loaded only when enabled (off by default): the service and its DNS source's client are
    // code a default start never runs.
    const { DiscoveryService } = await import('../discovery/service.ts');
    discovery = stack.push(
      'discovery',
      await DiscoveryService.start({
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
      }),
    );
  }

  let certificate = loadedTls.certificate;
  const tlsReload = stack.push(
    'tls watch',
    new TlsReload({
      tls: loadedTls,
      config: () => reloader?.config ?? config,
      apply: (next) => listener.setTls(next.material),
      onApplied: (next) => {
        certificate = next.certificate;
        discovery?.setTls({ cert: next.material.cert, key: next.material.key, ca: next.material.ca }, next.certificate.sha256);
      },
      log,
      audit,
      metrics,
    }),
  );
  // Discovery switched off still owns its keys: they are accepted and change nothing (turning it on takes a restart).
  const discoveryOff: Reloadable<AgentConfig> = { name: 'discovery', reloadKeys: DISCOVERY_RELOAD_KEYS, stage: () => undefined };
  reloader = stack.push(
    'reloader',
    new Reloader({
      config,
      load: reloadConfig ?? (() => ({ config, source: 'embedded' })),
      // Staged in this order (plugins load before TLS files are swapped; undone in reverse).
      components: [auth, tlsReload, discovery ?? discoveryOff, weights, liveLogLevel(log), liveStrictMode],
      log,
      audit,
      metrics,
    }),
  );
  metrics.bind({
    stats: () => pool.stats,
    queueDepth: () => pool.queueDepth(),
    asyncCalls: () => (store ? { byStatus: store.countByStatus(), bytes: store.stats.bytes } : undefined),
    canary: () => sandbox.canary,
    adverts: () => discovery?.counters(),
    peers: () => (discovery ? discovery.peers().length : undefined),
    dns: () => discovery?.dnsStats(),
    certificateNotAfter: () => certificate.notAfter,
  });
  let admin: AdminListener | undefined;
  if (config.admin.enabled) {
    const a = parseHostPort(config.admin.listen);
    try {
      admin = await startAdmin({ host: a.host, port: a.port, token: config.admin.token, metrics, stats: () => pool.stats, isDraining: () => draining, posture, log });
    } catch (err) {
      throw cannotListen(err, 'admin.listen', config.admin.listen);
    }
    stack.push('admin', admin);
    const h = admin.address.host;
    log.info('admin listening', { address: `${h.includes(':') ? `[${h}]` : h}:${admin.address.port}`, auth: config.admin.token !== undefined ? 'bearer' : 'none (loopback)' });
  }

  const running = reloader;
  const life = new Lifecycle({
    /**
     * The drain order, not the reverse of the start order: reloads and timers stop, peers
     * get the goodbye first so they stop sending work, new connections are dropped while
     * in-flight calls finish, then their streams close; the admin listener goes last so
     * /readyz answers "draining" throughout. The stack then closes anything not named here.
     */
    drain: async () => {
      draining = true;
      await running.close();
      await tlsReload.close();
      await postureWarnings.close();
      await discovery?.close();
      log.info('draining', { inFlight: pool.stats.inFlight, graceMs: config.limits.drainTimeoutMs });
      listener.stopAccepting();
      // The runner takes no more calls from the store (queued ones wait for the next start);
      // the calls it has with the pools end within the pools' drain.
      const asyncClosed = asyncCalls.close();
      await pool.close();
      await asyncClosed;
      await listener.close();
      await auth.close();
      await admin?.close();
      await stack.close();
      log.info('stopped');
      // Last of all, so the stream holds everything up to the end; close() flushes it.
      audit.record('agent.stop', { reason: 'shutdown' });
      await audit.close();
    },
    abort: async (reason) => {
      draining = true;
      await stack.unwind(reason);
      log.info('stopped at once', { reason: reason?.message });
      audit.record('agent.stop', { reason: 'destroyed', ...(reason ? { error: reason.message } : {}) });
      await audit.close();
    },
  });
  return {
    address,
    pool,
    ...(admin ? { admin: admin.address } : {}),
    // A reload that changed the posture says so (and warns) at once, not at the next hourly turn.
    reload: () => running.reload().finally(() => postureWarnings.recheck()),
    close: () => life.close(),
    destroy: (reason) => life.destroy(reason),
  };
}
