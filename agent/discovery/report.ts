/**
 * What discovery tells operators about what it refused: rejected advertisements are counted
 * (every one), logged as a warning and recorded on the audit stream (advert.rejected) — the
 * first at once, then at most one per reason every WARN_EVERY_MS, whose `suppressed` says how
 * many were not recorded since the last one — so a flood of forged datagrams floods neither
 * the log nor the audit file. Other repeated warnings (a send that keeps failing) are
 * rate-limited the same way.
 */
import type { Audit } from '../audit/index.ts';
import type { Logger } from '../log/index.ts';

export const WARN_EVERY_MS = 10_000;

/** Rejections decided by the service itself, after the verifier (which counts its own). */
export type ServiceRejection = 'name-mismatch' | 'name-conflict' | 'identity-mismatch';

export class DiscoveryReport {
  #log: Logger;
  #audit: Audit | undefined;
  #now: () => number;
  /** The verifier's counters, when multicast is on. */
  #verifierCounters: () => Record<string, number>;
  #extra: Record<ServiceRejection, number> = { 'name-mismatch': 0, 'name-conflict': 0, 'identity-mismatch': 0 };
  /** Per reject reason: when it was last reported, and how many since were not. */
  #rejections = new Map<string, { at: number; suppressed: number }>();
  #lastWarn = new Map<string, number>();

  constructor(deps: { log: Logger; audit?: Audit; now: () => number; verifierCounters: () => Record<string, number> }) {
    this.#log = deps.log;
    this.#audit = deps.audit;
    this.#now = deps.now;
    this.#verifierCounters = deps.verifierCounters;
  }

  /** Every rejection counted so far, by reason (the verifier's and the service's own). */
  counters(): Record<string, number> {
    return { ...this.#verifierCounters(), ...this.#extra };
  }

  /** Counts a rejection decided after the verifier (the verifier counts its own). */
  count(reason: ServiceRejection): void {
    this.#extra[reason]++;
  }

  /** A rejected advertisement: warned and audited, rate-limited per reason. */
  rejected(reason: string, fields: Record<string, unknown>): void {
    const now = this.#now();
    const last = this.#rejections.get(reason);
    if (last && now - last.at < WARN_EVERY_MS) {
      last.suppressed++;
      return;
    }
    this.#rejections.set(reason, { at: now, suppressed: 0 });
    this.#log.warn('advertisement rejected', { reason, ...fields, counts: this.counters()[reason] });
    this.#audit?.record('advert.rejected', { reason, ...fields, suppressed: last?.suppressed ?? 0 });
  }

  /** At most one warning per kind every WARN_EVERY_MS; the counters carry the totals. */
  warn(kind: string, msg: string, fields: Record<string, unknown>): void {
    const now = this.#now();
    if (now - (this.#lastWarn.get(kind) ?? -Infinity) < WARN_EVERY_MS) return;
    this.#lastWarn.set(kind, now);
    this.#log.warn(msg, fields);
  }
}
