/**
 * Sandbox costs, measured in one run (part of `npm run bench`): a worker's spawn-to-ready
 * time per profile and the per-call round trip (agent → Python → agent, no HTTP) versus
 * `none`. Workers are driven directly through agent/workers/worker.ts (bench/lib/sandbox-spawn.ts),
 * so the figures are the sandbox's own cost. Medians over SKEIN_BENCH_SPAWNS spawns and
 * SKEIN_BENCH_CALLS calls; SKEIN_PYTHON picks the interpreter (default: the benches' own, bench/lib/machine.ts BENCH_PYTHON).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { WorkerOutcome } from '../agent/workers/worker.ts';
import { interleavedSpawns, loadSpawner } from './lib/sandbox-spawn.ts';
import { BENCH_PYTHON } from './lib/machine.ts';

const ROOT = resolve(import.meta.dir, '..');
const SPAWNS = Number(process.env.SKEIN_BENCH_SPAWNS ?? 60);
const CALLS = Number(process.env.SKEIN_BENCH_CALLS ?? 3000);
const PYTHON = process.env.SKEIN_PYTHON ?? BENCH_PYTHON;
const dir = mkdtempSync(join(tmpdir(), 'skein-bench-sandbox-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const spawner = await loadSpawner(ROOT);
const profiles = [
  ['none', { profile: 'none' }],
  ['standard', { profile: 'standard' }],
  ['full', { profile: 'full' }],
  ['full + bubblewrap', { profile: 'full', bubblewrap: true }],
] as const;
const specs = profiles.map(([name, o]) => ({ spec: spawner.spec(name, o, PYTHON, dir), spawner }));
const { times: spawnTimes, layers: layerCounts } = await interleavedSpawns(specs, SPAWNS);
const callTimes = new Map<string, number>();
for (const { spec: s } of specs) {
  if (!s.spec) continue;
  const w = new s.Worker!('calls', s.spec, spawner.log, spawner.stderr);
  await w.ready();
  const times: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    const r = await new Promise<WorkerOutcome>((settle) => w.call(i + 1, { routine: 'echo', args: [i], kwargs: {} }, { item: () => {}, settle }));
    if (!r.ok) throw r.error;
    times.push(performance.now() - t);
  }
  callTimes.set(s.name, median(times));
  w.kill('shutdown');
}
const rows = specs.map(({ spec: s }) =>
  s.spec ? { name: s.name, spawn: median(spawnTimes.get(s.name)!), call: callTimes.get(s.name)!, layers: layerCounts.get(s.name)! } : { name: s.name, skipped: s.skipped! },
);
const base = rows[0] as { spawn: number; call: number };
console.log(`\nsandbox (${PYTHON}): ${SPAWNS} interleaved spawns and ${CALLS} sequential echo calls per profile; medians\n`);
console.log('| profile | layers | spawn → ready (ms) | added vs none | call round trip (µs) | added vs none |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  if ('skipped' in r) {
    console.log(`| ${r.name} | — | cannot run here: ${r.skipped} | | | |`);
    continue;
  }
  console.log(`| ${r.name} | ${r.layers} | ${r.spawn.toFixed(1)} | ${(r.spawn - base.spawn).toFixed(1)} | ${(r.call * 1000).toFixed(0)} | ${((r.call - base.call) * 1000).toFixed(0)} |`);
}
console.log('\ntargets (transport-speed issue): ≤ 3 ms added at spawn by profile full, no measurable per-call cost');
process.exit(0);
