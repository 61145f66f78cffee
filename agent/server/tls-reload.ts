/**
 * The dispatch listener's TLS material while the agent runs (docs/operations.md, "Rotation
 * and reload"). The folders holding tls.cert, tls.key and tls.ca are watched: any change
 * re-reads all three (a Kubernetes-style symlink swap or an editor's rename is a change
 * too), and when the bytes differ new handshakes use the new material while open sessions
 * keep theirs. A config reload re-reads them too, changed or not. A broken file is refused
 * with an error naming it, and the old material serves on.
 *
 * A component (agent/lifecycle): close() and destroy() stop the watchers and the pending
 * re-read. Reloadable: it applies TLS_RELOAD_KEYS.
 */
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { Audit } from '../audit/index.ts';
import type { AgentConfig } from '../config/schema.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import type { AgentMetrics } from '../metrics/index.ts';
import { released, type Component } from '../lifecycle/index.ts';
import type { Reloadable, Staged } from '../lifecycle/reloadable.ts';
import { readTls, type LoadedTls, type TlsFiles } from '../pki/tls.ts';

export const TLS_RELOAD_KEYS = ['tls.cert', 'tls.key', 'tls.ca', 'tls.minVersion', 'tls.trustDomains'] as const;

export type TlsTrigger = 'sighup' | 'watch';

export interface TlsReloadDeps {
  /** The material the agent started with. */
  tls: LoadedTls;
  /** The running configuration (after reloads), which a file change is read with. */
  config: () => AgentConfig;
  /** Puts new material in service (the listener's setTls); throws when it is refused. */
  apply: (next: LoadedTls) => void;
  /** Told once new material serves (discovery advertises its fingerprint, metrics its expiry). */
  onApplied: (next: LoadedTls) => void;
  log: Logger;
  audit: Audit;
  metrics: Pick<AgentMetrics, 'reload'>;
  /** Debounce of file events (editors and cert tools write in several steps). */
  debounceMs?: number;
}

export class TlsReload implements Component, Reloadable<AgentConfig> {
  readonly name = 'tls';
  readonly reloadKeys = TLS_RELOAD_KEYS;
  #d: TlsReloadDeps;
  #tls: LoadedTls;
  #watchers: FSWatcher[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Re-reads run one at a time. */
  #busy: Promise<unknown> = Promise.resolve();
  #life = released(() => {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unwatch();
  });

  constructor(deps: TlsReloadDeps) {
    this.#d = deps;
    this.#tls = deps.tls;
    this.#watch();
  }

  get current(): LoadedTls {
    return this.#tls;
  }

  close(): Promise<void> {
    return this.#life.close();
  }

  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }

  /**
   * A config reload: re-reads the TLS files (the configured paths of `next`; the development
   * PKI's paths never change) — applied when the bytes differ, or always when a TLS key
   * changed. Throws when refused (the old material serves on); undo() restores it.
   */
  stage(next: AgentConfig, changed: readonly string[]): Staged {
    const files: TlsFiles = next.tls.cert && next.tls.key && next.tls.ca ? { cert: next.tls.cert, key: next.tls.key, ca: next.tls.ca } : this.#tls.files;
    const previous = this.#tls;
    if (!this.#reload('sighup', files, next, changed.length > 0)) {
      throw new SkeinError('SKEIN_ERR_CONFIG', 'TLS material refused (see "TLS reload refused")', { key: 'tls' });
    }
    return {
      undo: () => {
        if (this.#tls !== previous) this.#restore(previous);
      },
      commit: () => {
        if (JSON.stringify(previous.files) !== JSON.stringify(this.#tls.files)) this.#watch();
      },
    };
  }

  #unwatch(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
  }

  #watch(): void {
    this.#unwatch();
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
    if (this.#life.closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#busy = this.#busy.then(() => this.#reload('watch', this.#tls.files, this.#d.config())).catch(() => undefined);
    }, this.#d.debounceMs ?? 250);
    this.#timer.unref?.();
  }

  /** Re-reads the TLS files; applies them when they changed (or when `force`). Returns false when refused. */
  #reload(trigger: TlsTrigger, files: TlsFiles, config: AgentConfig, force = false): boolean {
    const { log, audit, metrics } = this.#d;
    let next: LoadedTls;
    try {
      next = readTls(files, config);
    } catch (err) {
      const e = err as Error & { details?: { key?: string; path?: string } };
      log.error('TLS reload refused; the old certificate keeps serving', { trigger, error: e.message });
      audit.record('tls.reload_refused', { trigger, error: e.message, key: e.details?.key, path: e.details?.path });
      metrics.reload('tls', 'refused');
      return false;
    }
    if (!force && next.digest === this.#tls.digest && next.material.minVersion === this.#tls.material.minVersion) return true;
    try {
      this.#d.apply(next);
    } catch (err) {
      log.error('TLS reload refused; the old certificate keeps serving', { trigger, error: (err as Error).message });
      audit.record('tls.reload_refused', { trigger, error: (err as Error).message });
      metrics.reload('tls', 'refused');
      return false;
    }
    const previous = this.#tls;
    this.#tls = next;
    this.#d.onApplied(next);
    const fields = {
      trigger,
      sha256: next.certificate.sha256,
      previousSha256: previous.certificate.sha256,
      spiffe: next.certificate.spiffeId,
      notAfter: next.certificate.notAfter.toISOString(),
      minVersion: next.material.minVersion,
      trustDomains: next.material.trustDomains,
    };
    log.info('TLS material reloaded', fields);
    audit.record('tls.reloaded', fields);
    metrics.reload('tls', 'applied');
    return true;
  }

  #restore(previous: LoadedTls): void {
    try {
      this.#d.apply(previous);
      this.#tls = previous;
      this.#d.onApplied(previous);
    } catch (err) {
      this.#d.log.error('could not restore the previous TLS material', { error: (err as Error).message });
    }
  }
}
