/**
 * Per-routine circuit breaker. A routine whose calls keep killing workers (crashes,
 * protocol violations, oversize replies) would otherwise burn a worker spawn per call and
 * starve every other routine.
 *
 *   closed     calls run; `failures` kills within `windowMs` open the circuit.
 *   open       calls are refused (503 SKEIN_ERR_CIRCUIT_OPEN, Retry-After: the time left)
 *              for `cooldownMs`.
 *   half-open  the first call after the cool-down runs as the trial; calls that arrive while
 *              it runs wait for it (the pool bounds the wait by their deadline). The trial
 *              ends with its call, however that ends: a kill reopens the circuit (the waiters
 *              are refused), a call that ran on a worker without killing it closes the
 *              circuit for everyone (the waiters run), and a call that never reached a worker
 *              (cancelled, expired in the queue, refused) hands the trial to the next caller.
 *              A trial not reported by its own deadline is given up the same way. A half-open
 *              circuit that nobody calls for a further `cooldownMs` closes: the kills that
 *              opened it are then two cool-downs old.
 */
export interface CircuitOptions {
  failures: number;
  windowMs: number;
  cooldownMs: number;
  now?: () => number;
}

/** The running trial call of a half-open circuit; the pool hands it back to settle(). */
export interface Trial {
  readonly routine: string;
  /** When the trial's call reaches its deadline (it cannot run longer). */
  readonly until: number;
}

export type Admission =
  | { kind: 'run'; trial?: Trial }
  /** A trial is running: wait for `trialEnded`, then ask again; it should end within `retryAfterMs`. */
  | { kind: 'wait'; trialEnded: Promise<void>; retryAfterMs: number }
  | { kind: 'refuse'; retryAfterMs: number };

/** How a call ended, for the circuit: it killed its worker, ran without killing it, or never ran. */
export type CallEnd = 'kill' | 'ran' | 'not-run';

interface RunningTrial extends Trial {
  ended: Promise<void>;
  end: () => void;
}

interface State {
  kills: number[];
  /** 0 while closed. */
  openUntil: number;
  trial: RunningTrial | undefined;
}

const RUN: Admission = { kind: 'run' };

export class CircuitBreaker {
  #opts: Required<CircuitOptions>;
  #routines = new Map<string, State>();

  constructor(opts: CircuitOptions) {
    this.#opts = { now: () => Date.now(), ...opts };
  }

  /** Whether a call to `routine` with `timeoutMs` left may run now, must wait, or is refused. */
  admit(routine: string, timeoutMs: number): Admission {
    const s = this.#routines.get(routine);
    if (!s || s.openUntil === 0) return RUN;
    const now = this.#opts.now();
    if (now < s.openUntil) return { kind: 'refuse', retryAfterMs: s.openUntil - now };
    if (s.trial && now <= s.trial.until) return { kind: 'wait', trialEnded: s.trial.ended, retryAfterMs: s.trial.until - now };
    if (s.trial)
      this.#endTrial(s); // its call outlived its deadline without a word: given up
    else if (now >= s.openUntil + this.#opts.cooldownMs) {
      this.#routines.delete(routine); // half-open for a whole cool-down without a trial
      return RUN;
    }
    let end!: () => void;
    const ended = new Promise<void>((resolve) => (end = resolve));
    s.trial = { routine, until: now + timeoutMs, ended, end };
    return { kind: 'run', trial: s.trial };
  }

  /**
   * Records how a call ended; `trial` is the one admit() gave it, if any. Returns true when
   * this kill opened (or reopened) the circuit.
   */
  settle(routine: string, end: CallEnd, trial?: Trial): boolean {
    const s = this.#routines.get(routine);
    const isTrial = trial !== undefined && s?.trial === trial;
    if (end === 'kill') return this.#recordKill(routine, s);
    if (!isTrial) return false;
    if (end === 'ran') this.#routines.delete(routine);
    this.#endTrial(s!);
    return false;
  }

  #recordKill(routine: string, s: State | undefined): boolean {
    const now = this.#opts.now();
    if (!s) this.#routines.set(routine, (s = { kills: [], openUntil: 0, trial: undefined }));
    // A kill while half-open (the trial's, or a call admitted before the circuit opened) reopens it.
    if (s.openUntil !== 0 && now >= s.openUntil) {
      s.openUntil = now + this.#opts.cooldownMs;
      this.#endTrial(s);
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

  /** Ends the running trial, if any, and wakes the calls waiting for it to ask again. */
  #endTrial(s: State): void {
    const trial = s.trial;
    s.trial = undefined;
    trial?.end();
  }
}
