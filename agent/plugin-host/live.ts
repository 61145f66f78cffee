/**
 * The auth pipeline of a running agent: built from the config at start, rebuilt by a reload
 * that changes `plugins.*` or `authorization.*` (it declares those keys; agent/lifecycle/
 * reloadable.ts), and swapped between requests. A retired pipeline's plugins are closed once
 * hooks in progress have had their whole budget, or at once when the agent stops.
 */
import { join } from 'node:path';
import type { Audit } from '../audit/index.ts';
import type { AgentConfig } from '../config/schema.ts';
import type { Logger } from '../log/index.ts';
import type { AuthRecorder } from '../metrics/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import type { Reloadable, Staged } from '../lifecycle/reloadable.ts';
import type { Identity, RequestInfo } from './api.ts';
import { loadPlugins } from './loader.ts';
import { AuthPipeline } from './pipeline.ts';

export interface LivePipelineDeps {
  log: Logger;
  /** Folder of the config file (plugins' readFile paths resolve against it). */
  baseDir: string;
  metrics?: AuthRecorder;
  audit: Audit;
}

/** What the loaded plugins can do (for the security posture). */
export interface PipelineHooks {
  authenticate: boolean;
  authorize: boolean;
}

/** Loads the plugins of `config` and builds their pipeline; throws SKEIN_ERR_PLUGIN_LOAD (or _STRICT, _CONFIG) naming the plugin. */
export async function buildPipeline(config: AgentConfig, deps: LivePipelineDeps): Promise<{ pipeline: AuthPipeline; hooks: PipelineHooks }> {
  const { log } = deps;
  const plugins = await loadPlugins(config.plugins, { log, baseDir: deps.baseDir, runDir: join(config.agent.stateDir, 'run', 'plugins'), audit: deps.audit, strict: config.security.strict });
  const hooks = { authenticate: plugins.some((p) => p.hooks.authenticate), authorize: plugins.some((p) => p.hooks.authorize) };
  if (config.authorization.default === 'allow') {
    // Strict mode refuses this off loopback (security/strict.ts); everywhere else it stays loud.
    log.warn('authorization.default is "allow": every authenticated caller may run every routine that no plugin denies; list what callers may run in authorization.allow and keep the default "deny"', {
      key: 'authorization.default',
    });
  }
  if (config.tls.clientCerts === 'optional' && !hooks.authenticate) {
    log.warn('tls.clientCerts is "optional" but no enabled plugin authenticates tokens: every caller without a client certificate will be refused');
  }
  const pipeline = new AuthPipeline(plugins, {
    hookTimeoutMs: config.plugins.hookTimeoutMs,
    requireToken: config.plugins.requireToken,
    log,
    metrics: deps.metrics,
    audit: deps.audit,
    authorization: config.authorization,
  });
  return { pipeline, hooks };
}

/** The keys a running pipeline applies (agent/lifecycle/reloadable.ts): the plugins and the config's authorization rules. */
export const PIPELINE_RELOAD_KEYS = ['plugins', 'authorization'] as const;

export class LivePipeline implements Component, Reloadable<AgentConfig> {
  readonly name = 'plugins';
  readonly reloadKeys = PIPELINE_RELOAD_KEYS;
  #current: AuthPipeline;
  #hooks: PipelineHooks;
  #hookTimeoutMs: number;
  #deps: LivePipelineDeps;
  /** Pipelines replaced by a reload, waiting for hooks in progress before their close hooks run. */
  #retired = new Map<AuthPipeline, ReturnType<typeof setTimeout>>();
  #life = new Lifecycle({ drain: () => this.#stop((p) => p.close()), abort: (reason) => this.#stop((p) => p.destroy(reason)) });

  private constructor(built: { pipeline: AuthPipeline; hooks: PipelineHooks }, hookTimeoutMs: number, deps: LivePipelineDeps) {
    this.#current = built.pipeline;
    this.#hooks = built.hooks;
    this.#hookTimeoutMs = hookTimeoutMs;
    this.#deps = deps;
  }

  static async start(config: AgentConfig, deps: LivePipelineDeps): Promise<LivePipeline> {
    return new LivePipeline(await buildPipeline(config, deps), config.plugins.hookTimeoutMs, deps);
  }

  /** The hooks of the plugins now deciding. */
  get hooks(): PipelineHooks {
    return this.#hooks;
  }

  authenticate(req: RequestInfo, peer: Parameters<AuthPipeline['authenticate']>[1]): Promise<Identity> {
    return this.#current.authenticate(req, peer);
  }

  authorize(req: RequestInfo, identity: Identity): Promise<void> {
    return this.#current.authorize(req, identity);
  }

  allowedRoutines(...args: Parameters<AuthPipeline['allowedRoutines']>): Promise<string[]> {
    return this.#current.allowedRoutines(...args);
  }

  allowsOthers(req: RequestInfo, identity: Identity): Promise<boolean> {
    return this.#current.allowsOthers(req, identity);
  }

  /** Loads the new plugins (the same checks as at start); commit() swaps them in. */
  async stage(next: AgentConfig, changed: readonly string[]): Promise<Staged | undefined> {
    if (changed.length === 0) return undefined;
    const built = await buildPipeline(next, this.#deps);
    return {
      commit: () => {
        const retired = this.#current;
        this.#current = built.pipeline;
        this.#hooks = built.hooks;
        // Calls that already passed their hooks do not use the pipeline again; give hooks in
        // progress their whole budget before the old plugins' close hooks run.
        const timer = setTimeout(() => {
          this.#retired.delete(retired);
          void retired.close();
        }, this.#hookTimeoutMs + 1000);
        timer.unref?.();
        this.#retired.set(retired, timer);
        this.#hookTimeoutMs = next.plugins.hookTimeoutMs;
      },
      undo: () => built.pipeline.close(),
    };
  }

  /** Closes the current pipeline and every retired one (the listener has drained: no hook is in progress). */
  close(): Promise<void> {
    return this.#life.close();
  }

  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }

  async #stop(end: (p: AuthPipeline) => Promise<void>): Promise<void> {
    for (const timer of this.#retired.values()) clearTimeout(timer);
    const all = [...this.#retired.keys(), this.#current];
    this.#retired.clear();
    for (const p of all) await end(p);
  }
}
