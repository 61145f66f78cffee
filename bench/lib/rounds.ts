/**
 * Interleaved rounds: round r runs every target once, in the same order, so drift on a shared
 * machine hits every target alike and ratios compare like with like. Figures are medians of
 * rounds, with their ranges.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { commit, machine, versions } from './machine.ts';
import { summarise, type Round, type Spread, type TargetSummary } from './stats.ts';
import { concurrent, CONCURRENCY, PAYLOAD, sequential, warmUp, type Call } from './workload.ts';

export interface Target {
  name: string;
  description: string;
  warmUp(): Promise<void>;
  round(): Promise<Round>;
}

export interface Sizes {
  sequential: number;
  concurrent: number;
  warmUp: number;
}

/** A target driven by this process's own loops through `call`. */
export function callTarget(name: string, description: string, call: Call, sizes: Sizes): Target {
  return {
    name,
    description,
    warmUp: () => warmUp(call, sizes.warmUp),
    async round() {
      const seq = await sequential(call, sizes.sequential);
      return { ...seq, throughput: await concurrent(call, sizes.concurrent) };
    },
  };
}

export async function measureRounds(targets: Target[], rounds: number, log = (s: string) => process.stderr.write(s)): Promise<Record<string, TargetSummary>> {
  for (const t of targets) await t.warmUp();
  const got = new Map<string, Round[]>(targets.map((t) => [t.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const t of targets) {
      const round = await t.round();
      got.get(t.name)!.push(round);
      log(`  round ${r + 1}/${rounds} ${t.name}: p50 ${round.p50.toFixed(3)} ms, p99 ${round.p99.toFixed(3)} ms, ${Math.round(round.throughput)} calls/s\n`);
    }
  }
  return Object.fromEntries(targets.map((t) => [t.name, summarise(t.description, got.get(t.name)!)]));
}

/** The header every results file carries: what ran, where, from which commit. */
export function resultHeader(kind: string, rounds: number, sizes: Record<string, Sizes>) {
  return {
    schema: 'skein.bench/v1',
    kind,
    date: new Date().toISOString(),
    commit: commit(),
    rounds,
    units: { p50: 'ms', p99: 'ms', throughput: 'calls/s' },
    workload: { routine: 'echo', payloadBytes: Buffer.byteLength(PAYLOAD), concurrency: CONCURRENCY, callsPerRound: sizes },
    machine: machine(),
    versions: versions(),
  };
}

export function writeResults(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  // Four decimals: a microsecond in milliseconds, a tenth of a call per second.
  const round = (_key: string, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 1e4) / 1e4 : v);
  writeFileSync(file, `${JSON.stringify(value, round, 2)}\n`);
}

/** "0.412 (0.398–0.470)": the median of rounds and their range. */
export function fmtSpread(s: Spread, digits = 3): string {
  const f = (n: number) => (digits === 0 ? Math.round(n).toLocaleString('en-US') : n.toFixed(digits));
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}
