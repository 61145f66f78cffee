/**
 * The two per-call series, `skein_dispatches_total{routine,outcome}` and the
 * `skein_dispatch_duration_seconds{routine}` histogram, counted in plain numbers and turned
 * into prom-client's metric objects only at scrape time. prom-client's own Counter and
 * Histogram validate and hash the label set on every inc() and observe(), even through a
 * cached labels() child: ~3 µs of the agent's CPU per call, where this costs two map lookups,
 * a bucket search and three additions. The exposition is prom-client's (the registry formats
 * what get() returns), so the text is the same as before, series for series.
 *
 * @example
 *   const d = new DispatchSeries(registry, DURATION_BUCKETS);
 *   d.record('echo', 'ok', 0.0003);
 */
import type { Metric, Registry } from 'prom-client';

/** Calls of one routine with one outcome. */
interface Cell {
  routine: string;
  outcome: string;
  n: number;
}

interface RoutineSeries {
  outcomes: Map<string, Cell>;
  /** Non-cumulative: bucket i counts observations in (bounds[i-1], bounds[i]]; the last one is +Inf. */
  buckets: number[];
  sum: number;
  count: number;
}

type Labels = Record<string, string | number>;
interface Value {
  labels: Labels;
  value: number;
  metricName?: string;
}

export class DispatchSeries {
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, RoutineSeries>();
  /** Every cell in the order it first counted, the order prom-client exposed them in. */
  readonly #cells: Cell[] = [];

  constructor(registry: Registry, bounds: readonly number[]) {
    this.#bounds = bounds;
    // The registry takes anything with a name, a type and get(); prom-client's types only name its own classes.
    const register = (name: string, help: string, type: 'counter' | 'histogram', values: () => Value[]) => {
      const head = { name, help, type, aggregator: 'sum' };
      registry.registerMetric({ ...head, get: () => Promise.resolve({ ...head, values: values() }) } as unknown as Metric);
    };
    register('skein_dispatches_total', 'Dispatch requests by routine and outcome ("ok" or the error code).', 'counter', () => this.#counterValues());
    const histogram = 'skein_dispatch_duration_seconds';
    register(histogram, 'Time from request to reply of dispatch requests, any outcome.', 'histogram', () => this.#histogramValues(histogram));
  }

  /** One dispatch: its routine label, outcome label and duration. */
  record(routine: string, outcome: string, seconds: number): void {
    let s = this.#series.get(routine);
    if (s === undefined) {
      s = { outcomes: new Map(), buckets: new Array<number>(this.#bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.#series.set(routine, s);
    }
    let cell = s.outcomes.get(outcome);
    if (cell === undefined) {
      cell = { routine, outcome, n: 0 };
      s.outcomes.set(outcome, cell);
      this.#cells.push(cell);
    }
    cell.n++;
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    s.buckets[i]!++;
    s.sum += seconds;
    s.count++;
  }

  #counterValues(): Value[] {
    return this.#cells.map(({ routine, outcome, n }) => ({ labels: { routine, outcome }, value: n }));
  }

  /** Cumulative buckets with `le` first, then +Inf, _sum and _count: prom-client's order and labels. */
  #histogramValues(name: string): Value[] {
    const out: Value[] = [];
    for (const [routine, s] of this.#series) {
      let acc = 0;
      this.#bounds.forEach((le, i) => {
        acc += s.buckets[i]!;
        out.push({ labels: { le, routine }, value: acc, metricName: `${name}_bucket` });
      });
      out.push({ labels: { le: '+Inf', routine }, value: s.count, metricName: `${name}_bucket` });
      out.push({ labels: { routine }, value: s.sum, metricName: `${name}_sum` });
      out.push({ labels: { routine }, value: s.count, metricName: `${name}_count` });
    }
    return out;
  }
}
