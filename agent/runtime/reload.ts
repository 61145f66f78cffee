/**
 * Reloading without a restart (docs/operations.md, "Rotation and reload").
 *
 * SIGHUP re-reads the config file (same flags and environment), re-opens the audit file and
 * asks every reloadable component (agent/lifecycle/reloadable.ts) to stage the keys it
 * applies live: the TLS files (re-read on every reload), the discovery trust store, signing
 * key, endorsement and static peers, the plugins and authorization rules, the log level,
 * strict mode. This file keeps no list of its own: a changed key no component covers is
 * reported as pending (listeners, workers, routines, sandbox, limits… need a restart). An
 * invalid config, or one any component refuses, is refused as a whole: what others staged
 * is undone and the running configuration stays.
 *
 * In-flight calls are never touched: workers, pools and open HTTP/2 sessions stay as they are.
 */
import type { Audit } from '../audit/index.ts';
import { assertStrict } from '../security/strict.ts';
import type { AgentConfig } from '../config/schema.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import type { AgentMetrics } from '../metrics/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import { covers, type Reloadable, type Staged } from '../lifecycle/reloadable.ts';

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
  /** Asked in this order to stage a reload; committed in the same order once all have staged. */
  components: ReadonlyArray<Reloadable<AgentConfig>>;
  log: Logger;
  audit: Audit;
  metrics: Pick<AgentMetrics, 'reload'>;
}

/** A component: close() lets a reload in progress finish; after it (or destroy()) reloads are refused. */
export class Reloader implements Component {
  #d: ReloaderDeps;
  #config: AgentConfig;
  #busy: Promise<unknown> = Promise.resolve();
  #life = new Lifecycle({ drain: () => this.#busy.then(() => undefined), abort: () => undefined });

  constructor(deps: ReloaderDeps) {
    this.#d = deps;
    this.#config = deps.config;
  }

  /** The running configuration: the last one applied, with pending keys as started. */
  get config(): AgentConfig {
    return this.#config;
  }

  /** SIGHUP: the audit file is reopened (logrotate) and the config re-read. Serialised. */
  reload(): Promise<ReloadResult> {
    if (this.#life.closed) return Promise.resolve({ ok: false, applied: [], pending: [], error: 'the agent is shutting down' });
    const run = this.#busy.then(() => this.#reloadConfig());
    this.#busy = run.catch(() => undefined);
    return run;
  }

  close(): Promise<void> {
    return this.#life.close();
  }

  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }

  async #reloadConfig(): Promise<ReloadResult> {
    const { log, audit, components } = this.#d;
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
    const changed = changedPaths(this.#config, next).map((p) => ({ path: p, key: p.join('.') }));
    const live = (key: string) => components.some((c) => covers(c.reloadKeys, key));
    const applied = changed.filter((c) => live(c.key)).map((c) => c.key);
    const pendingPaths = changed.filter((c) => !live(c.key)).map((c) => c.path);
    const pending = pendingPaths.map((p) => p.join('.'));
    const old = this.#config;

    // Everything that can fail is staged before anything is committed.
    const staged: Staged[] = [];
    for (const component of components) {
      try {
        const s = await component.stage(
          next,
          applied.filter((k) => covers(component.reloadKeys, k)),
        );
        if (s) staged.push(s);
      } catch (err) {
        for (const s of staged.reverse()) await s.undo?.();
        return this.#refused(err);
      }
    }
    for (const s of staged) s.commit?.();
    // The effective config: the new one with the pending keys as started, so the next reload
    // reports them again until a restart applies them.
    this.#config = withValues(next, old, pendingPaths);
    if (pending.length) log.warn('config reloaded; some changes need a restart and do not apply yet', { pending });
    log.info('config reloaded', { applied, pending });
    audit.record('config.reloaded', { trigger: 'sighup', applied, pending });
    this.#d.metrics.reload('config', 'applied');
    return { ok: true, applied, pending };
  }

  #refused(err: unknown): ReloadResult {
    const e = err as Error;
    const code = err instanceof SkeinError ? err.code : 'SKEIN_ERR_CONFIG';
    const key = err instanceof SkeinError ? (err.details.key as string | undefined) : undefined;
    this.#d.log.error('config reload refused; the running configuration stays', { code, error: e.message, ...(key ? { key } : {}) });
    this.#d.audit.record('config.reload_refused', { trigger: 'sighup', code, error: e.message, ...(key ? { key } : {}) });
    this.#d.metrics.reload('config', 'refused');
    return { ok: false, applied: [], pending: [], error: e.message };
  }
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
