/**
 * Per-routine circuit breaker. A routine whose calls keep killing workers (crashes,
 * protocol violations) would otherwise burn a worker spawn per call and starve every other
 * routine; after `failures` such kills within `windowMs`, its calls are refused (503
 * SKEIN_ERR_CIRCUIT_OPEN) for `cooldownMs`, then one trial call is let through (half-open):
 * success closes the circuit, another kill reopens it.
 */
export interface CircuitOptions {
  failures: number;
  windowMs: number;
  cooldownMs: number;
  now?: () => number;
}

interface State {
  kills: number[];
  openUntil: number;
  trial: boolean;
}

export class CircuitBreaker {
  #opts: Required<CircuitOptions>;
  #routines = new Map<string, State>();

  constructor(opts: CircuitOptions) {
    this.#opts = { now: () => Date.now(), ...opts };
  }

  /** Milliseconds until the routine may run again; 0 when it may run now. */
  blockedFor(routine: string): number {
    const s = this.#routines.get(routine);
    if (!s || s.openUntil === 0) return 0;
    const left = s.openUntil - this.#opts.now();
    if (left > 0) return left;
    if (s.trial) return this.#opts.cooldownMs; // a trial call is already running
    s.trial = true;
    return 0;
  }

  /** Records a call that killed its worker; returns true when this opened the circuit. */
  recordKill(routine: string): boolean {
    const now = this.#opts.now();
    let s = this.#routines.get(routine);
    if (!s) this.#routines.set(routine, (s = { kills: [], openUntil: 0, trial: false }));
    if (s.trial) {
      s.trial = false;
      s.openUntil = now + this.#opts.cooldownMs;
      return true;
    }
    s.kills = s.kills.filter((t) => now - t < this.#opts.windowMs);
    s.kills.push(now);
    if (s.kills.length >= this.#opts.failures && s.openUntil <= now) {
      s.openUntil = now + this.#opts.cooldownMs;
      s.kills = [];
      return true;
    }
    return false;
  }

  /** Records a call that completed without killing its worker. */
  recordSuccess(routine: string): void {
    const s = this.#routines.get(routine);
    if (s?.trial) this.#routines.delete(routine);
  }
}
