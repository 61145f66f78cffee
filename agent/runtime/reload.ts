/**
 * Reloading without a restart (docs/operations.md, "Rotation and reload").
 *
 * - TLS files are watched: any change in a folder holding tls.cert, tls.key or tls.ca
 *   re-reads all three (a Kubernetes-style symlink swap or an editor's rename is a change
 *   too); when the bytes differ, new handshakes use the new material and open sessions keep
 *   theirs. A broken file is refused with an error naming it, and the old material serves on.
 * - SIGHUP re-reads the config file (same flags and environment) and applies what can change
 *   in a running agent: TLS files and version, the discovery trust store, signing key,
 *   endorsement and static peers, the plugins and authorization rules, the log level. An invalid config is refused
 *   as a whole and the running one stays. Keys that only a restart can change (listeners,
 *   workers, routines, sandbox, limits…) are reported, not applied.
 *
 * In-flight calls are never touched: workers, pools and open HTTP/2 sessions stay as they are.
 */
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { Audit } from '../audit/index.ts';
import { assertStrict } from '../security/strict.ts';
import type { AgentConfig } from '../config/schema.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import type { DiscoveryService } from '../discovery/service.ts';
import type { AuthPipeline } from '../plugin-host/pipeline.ts';
import type { AgentMetrics } from '../metrics/index.ts';
import type { Listener } from '../server/listener.ts';
import { readTls, type LoadedTls, type TlsFiles } from '../pki/tls.ts';

/** Top-level keys (or dotted prefixes) a running agent applies on reload. */
const RELOADABLE = ['tls.cert', 'tls.key', 'tls.ca', 'tls.minVersion', 'tls.trustDomains', 'discovery.trustedKeys', 'discovery.rootKeys', 'discovery.signingKey', 'discovery.endorsement', 'discovery.static', 'plugins', 'authorization', 'log.level', 'security.strict'];

export type ReloadTrigger = 'sighup' | 'watch';

export interface ReloadResult {
  ok: boolean;
  /** Keys whose new values now apply. */
  applied: string[];
  /** Keys that changed in the file but need a restart; they do not apply. */
  pending: string[];
  error?: string;
}

export interface ReloaderDeps {
  config: AgentConfig;
  /** Loads the config again from where it came from (file, env, flags); throws when invalid. */
  load: () => { config: AgentConfig; source: string; files?: string[] };
  tls: LoadedTls;
  listener: Listener;
  discovery: () => DiscoveryService | undefined;
  auth: { current: AuthPipeline };
  /** Loads and checks the plugins of a new config; `commit()` once the reload applies. */
  loadPipeline: (config: AgentConfig) => Promise<{ pipeline: AuthPipeline; commit(): void }>;
  log: Logger;
  /** Changes the level of the agent's logger, when it supports that. */
  setLogLevel?: (level: AgentConfig['log']['level']) => void;
  audit: Audit;
  metrics: AgentMetrics;
  onTls: (tls: LoadedTls) => void;
  /** Debounce of file events (editors and cert tools write in several steps). */
  debounceMs?: number;
}

export class Reloader {
  #d: ReloaderDeps;
  #config: AgentConfig;
  #tls: LoadedTls;
  #watchers: FSWatcher[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #busy: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(deps: ReloaderDeps) {
    this.#d = deps;
    this.#config = deps.config;
    this.#tls = deps.tls;
    this.#watch();
  }

  get tls(): LoadedTls {
    return this.#tls;
  }

  /** SIGHUP: the audit file is reopened (logrotate) and the config re-read. Serialised. */
  reload(): Promise<ReloadResult> {
    const run = this.#busy.then(() => this.#reloadConfig());
    this.#busy = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
  }

  // ── TLS files ────────────────────────────────────────────────────────────────────────

  #watch(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    const dirs = new Set(Object.values(this.#tls.files).map((f) => dirname(f)));
    for (const dir of dirs) {
      try {
        const w = watch(dir, { persistent: false }, () => this.#schedule());
        w.on('error', (err) => this.#d.log.warn('TLS file watch failed; SIGHUP still reloads', { dir, error: err.message }));
        this.#watchers.push(w);
      } catch (err) {
        this.#d.log.warn('cannot watch TLS files; SIGHUP still reloads them', { dir, error: (err as Error).message });
      }
    }
  }

  /**
   * One re-read debounceMs after the first event of a burst (tools write cert and key in
   * steps). Not reset by later events: a folder that never goes quiet (say, a log file kept
   * next to the certificates) must not postpone a rotation forever.
   */
  #schedule(): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#busy = this.#busy.then(() => this.#reloadTls('watch', this.#tls.files, this.#config)).catch(() => undefined);
    }, this.#d.debounceMs ?? 250);
    this.#timer.unref?.();
  }

  /** Re-reads the TLS files; applies them when they changed. Returns false when refused. */
  #reloadTls(trigger: ReloadTrigger, files: TlsFiles, config: AgentConfig, force = false): boolean {
    const { log, audit } = this.#d;
    let next: LoadedTls;
    try {
      next = readTls(files, config);
    } catch (err) {
      const e = err as Error & { details?: { key?: string; path?: string } };
      log.error('TLS reload refused; the old certificate keeps serving', { trigger, error: e.message });
      audit.record('tls.reload_refused', { trigger, error: e.message, key: e.details?.key, path: e.details?.path });
      this.#d.metrics.reload('tls', 'refused');
      return false;
    }
    if (!force && next.digest === this.#tls.digest && next.material.minVersion === this.#tls.material.minVersion) return true;
    try {
      this.#d.listener.setTls(next.material);
    } catch (err) {
      log.error('TLS reload refused; the old certificate keeps serving', { trigger, error: (err as Error).message });
      audit.record('tls.reload_refused', { trigger, error: (err as Error).message });
      this.#d.metrics.reload('tls', 'refused');
      return false;
    }
    const previous = this.#tls;
    this.#tls = next;
    this.#d.onTls(next);
    this.#d.discovery()?.setTls({ cert: next.material.cert, key: next.material.key, ca: next.material.ca }, next.certificate.sha256);
    const fields = { trigger, sha256: next.certificate.sha256, previousSha256: previous.certificate.sha256, spiffe: next.certificate.spiffeId, notAfter: next.certificate.notAfter.toISOString(), minVersion: next.material.minVersion, trustDomains: next.material.trustDomains };
    log.info('TLS material reloaded', fields);
    audit.record('tls.reloaded', fields);
    this.#d.metrics.reload('tls', 'applied');
    return true;
  }

  // ── config ───────────────────────────────────────────────────────────────────────────

  async #reloadConfig(): Promise<ReloadResult> {
    const { log, audit } = this.#d;
    audit.reopen();
    let next: AgentConfig;
    try {
      const loaded = this.#d.load();
      next = loaded.config;
      if (next.security.strict) assertStrict(next, loaded.files ?? loaded.source);
    } catch (err) {
      return this.#refused(err);
    }

    // Paths, not dotted strings: routine names may contain ".".
    const changed = changedPaths(this.#config, next);
    const applied = changed.map((p) => p.join('.')).filter(isReloadable);
    const pendingPaths = changed.filter((p) => !isReloadable(p.join('.')));
    const pending = pendingPaths.map((p) => p.join('.'));
    const old = this.#config;
    const tlsChanged = applied.some((k) => k.startsWith('tls.'));

    // Everything that can fail is prepared before anything changes.
    let plugins: AuthPipeline | undefined;
    let commitPlugins: (() => void) | undefined;
    // The authorization keys live in the pipeline too: a change to either rebuilds it.
    if (applied.some((k) => k.startsWith('plugins') || k.startsWith('authorization'))) {
      try {
        ({ pipeline: plugins, commit: commitPlugins } = await this.#d.loadPipeline(next));
      } catch (err) {
        return this.#refused(err);
      }
    }
    // A configured TLS path that changed must load; the development PKI's paths never change.
    const files: TlsFiles = next.tls.cert && next.tls.key && next.tls.ca ? { cert: next.tls.cert, key: next.tls.key, ca: next.tls.ca } : this.#tls.files;
    const oldTls = this.#tls;
    // SIGHUP also re-reads unchanged TLS files (the documented way to rotate without watching).
    if (!this.#reloadTls('sighup', files, next, tlsChanged)) {
      await plugins?.close();
      return this.#refused(new Error(`TLS material refused (see "TLS reload refused")`), { key: 'tls' });
    }
    const discoveryChanged = applied.some((k) => k.startsWith('discovery.'));
    const discovery = this.#d.discovery();
    if (discoveryChanged && discovery) {
      try {
        const r = discovery.reload(next.discovery);
        if (r.rotated) audit.record('discovery.key_rotated', { from: r.rotated.from, to: r.rotated.to });
      } catch (err) {
        if (this.#tls !== oldTls) this.#restoreTls(oldTls);
        await plugins?.close();
        return this.#refused(err);
      }
    }

    // Commit.
    if (plugins) {
      const retired = this.#d.auth.current;
      this.#d.auth.current = plugins;
      commitPlugins?.();
      // Calls that already passed their hooks do not use the pipeline again; give hooks in
      // progress their whole budget before the old plugins' close hooks run.
      setTimeout(() => void retired.close(), old.plugins.hookTimeoutMs + 1000).unref?.();
    }
    if (next.log.level !== old.log.level) this.#d.setLogLevel?.(next.log.level);
    if (JSON.stringify(oldTls.files) !== JSON.stringify(this.#tls.files)) this.#watch();
    // The effective config: the new one with the pending keys as started, so the next reload
    // reports them again until a restart applies them.
    this.#config = withValues(next, old, pendingPaths);
    if (pending.length) log.warn('config reloaded; some changes need a restart and do not apply yet', { pending });
    log.info('config reloaded', { applied, pending });
    audit.record('config.reloaded', { trigger: 'sighup', applied, pending });
    this.#d.metrics.reload('config', 'applied');
    return { ok: true, applied, pending };
  }

  #restoreTls(previous: LoadedTls): void {
    try {
      this.#d.listener.setTls(previous.material);
      this.#tls = previous;
      this.#d.onTls(previous);
      this.#d.discovery()?.setTls({ cert: previous.material.cert, key: previous.material.key, ca: previous.material.ca }, previous.certificate.sha256);
    } catch (err) {
      this.#d.log.error('could not restore the previous TLS material', { error: (err as Error).message });
    }
  }

  #refused(err: unknown, extra: Record<string, unknown> = {}): ReloadResult {
    const e = err as Error;
    const code = err instanceof SkeinError ? err.code : 'SKEIN_ERR_CONFIG';
    const key = err instanceof SkeinError ? (err.details.key as string | undefined) : undefined;
    this.#d.log.error('config reload refused; the running configuration stays', { code, error: e.message, ...(key ? { key } : {}), ...extra });
    this.#d.audit.record('config.reload_refused', { trigger: 'sighup', code, error: e.message, ...(key ? { key } : {}), ...extra });
    this.#d.metrics.reload('config', 'refused');
    return { ok: false, applied: [], pending: [], error: e.message };
  }
}

function isReloadable(key: string): boolean {
  return RELOADABLE.some((p) => key === p || key.startsWith(`${p}.`));
}

/** A copy of `target` with the values of `source` at the given paths. */
function withValues(target: AgentConfig, source: AgentConfig, paths: string[][]): AgentConfig {
  const out = structuredClone(target) as unknown as Record<string, unknown>;
  for (const full of paths) {
    const path = full.slice(0, -1);
    const last = full[full.length - 1]!;
    let from: unknown = source;
    let to = out;
    for (const p of path) {
      from = (from as Record<string, unknown> | undefined)?.[p];
      to = (to[p] ??= {}) as Record<string, unknown>;
    }
    const value = (from as Record<string, unknown> | undefined)?.[last];
    if (value === undefined) delete to[last];
    else to[last] = structuredClone(value);
  }
  return out as unknown as AgentConfig;
}

/** Paths whose values differ (arrays compare whole; objects recurse); shown joined by ".". */
function changedPaths(a: unknown, b: unknown, prefix: string[] = []): string[][] {
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const out: string[][] = [];
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) out.push(...changedPaths(a[k], b[k], [...prefix, k]));
    return out;
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
}
