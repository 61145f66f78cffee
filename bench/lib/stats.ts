/** Order statistics for bench figures: medians of rounds and their ranges. */

/** The q-quantile of an ascending array (nearest rank, no interpolation). */
export const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

export const median = (xs: number[]): number =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spread(xs: number[]): Spread {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/** One round of one target: sequential p50/p99 in ms, throughput in calls/s. */
export interface Round {
  p50: number;
  p99: number;
  throughput: number;
}

export interface TargetSummary {
  description: string;
  p50: Spread;
  p99: Spread;
  throughput: Spread;
  rounds: Round[];
}

export function summarise(description: string, rounds: Round[]): TargetSummary {
  return {
    description,
    p50: spread(rounds.map((r) => r.p50)),
    p99: spread(rounds.map((r) => r.p99)),
    throughput: spread(rounds.map((r) => r.throughput)),
    rounds,
  };
}

/** `a / b` per round (rounds are interleaved, so round i of both saw the same machine). */
export function ratio(a: Round[], b: Round[], key: keyof Round): Spread {
  return spread(a.map((r, i) => r[key] / b[i]![key]));
}
