/**
 * Sandbox costs, measured in one run (part of `npm run bench`): a worker's spawn-to-ready
 * time per profile and the per-call round trip (agent → Python → agent, no HTTP) versus
 * `none`. Workers are driven directly through agent/workers/worker.ts, so the figures are
 * the sandbox's own cost. Medians over SKEIN_BENCH_SPAWNS spawns and SKEIN_BENCH_CALLS calls.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '../agent/config/load.ts';
import { createLogger } from '../agent/log/index.ts';
import { planSandbox } from '../agent/sandbox/prepare.ts';
import { StderrBudget } from '../agent/workers/stderr.ts';
import { Worker, type WorkerOutcome, type WorkerSpec } from '../agent/workers/worker.ts';

const ROOT = resolve(import.meta.dir, '..');
const SPAWNS = Number(process.env.SKEIN_BENCH_SPAWNS ?? 60);
const CALLS = Number(process.env.SKEIN_BENCH_CALLS ?? 3000);
const dir = mkdtempSync(join(tmpdir(), 'skein-bench-sandbox-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const log = createLogger({ level: 'error' });
const stderr = new StderrBudget({ linesPerSecond: 20, bytesPerSecond: 32 * 1024 }, 1);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const limits = { memoryBytes: 1024 * 1024 * 1024, openFiles: 64 };
const routines = { echo: { file: 'examples.py', function: 'echo', source: readFileSync(join(ROOT, 'routines/examples.py'), 'utf8') } };

function specFor(overrides: Record<string, unknown>): { spec?: WorkerSpec; skipped?: string; wrapped: boolean } {
  const { config } = loadConfig({ path: join(ROOT, 'agent.config.json'), env: {} });
  Object.assign(config.sandbox, overrides);
  const { plan, launcher, confine } = planSandbox(config, limits);
  if (plan.missing.length) return { skipped: plan.missing.join('; '), wrapped: false };
  return {
    wrapped: launcher.wrapped,
    spec: {
      launcher,
      cwd: dir,
      routines,
      limits,
      maxReplyBytes: 1 << 20,
      startTimeoutMs: 10_000,
      streamBufferItems: 16,
      ...(config.sandbox.profile === 'none' ? {} : { confine: { ...confine, policy: plan.policy, packagePaths: plan.packagePaths } }),
    },
  };
}

const profiles = [
  ['none', { profile: 'none' }],
  ['standard', { profile: 'standard' }],
  ['full', { profile: 'full' }],
  ['full + bubblewrap', { profile: 'full', bubblewrap: true }],
] as const;
const specs = profiles.map(([name, o]) => ({ name, ...specFor(o) }));
// Spawns are interleaved across profiles (none, standard, full, … then again) so that
// machine drift hits every profile alike; the table shows medians.
const spawnTimes = new Map<string, number[]>(specs.map((s) => [s.name, []]));
const layerCounts = new Map<string, number>();
for (let i = 0; i < SPAWNS; i++) {
  for (const s of specs) {
    if (!s.spec) continue;
    const t = performance.now();
    const w = new Worker(`b${i}`, s.spec, log, stderr);
    const info = await w.ready();
    spawnTimes.get(s.name)!.push(performance.now() - t);
    layerCounts.set(s.name, info.layers.length + (s.wrapped ? 1 : 0));
    w.kill('shutdown');
    // The kernel tears a dead worker's network namespace down asynchronously; let it finish so
    // it is not billed to the next spawn (real spawns are occasional: start-up, replacements).
    await new Promise((r) => setTimeout(r, 60));
  }
}
const callTimes = new Map<string, number>();
for (const s of specs) {
  if (!s.spec) continue;
  const w = new Worker('calls', s.spec, log, stderr);
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
const rows = specs.map((s) =>
  s.spec ? { name: s.name, spawn: median(spawnTimes.get(s.name)!), call: callTimes.get(s.name)!, layers: layerCounts.get(s.name)! } : { name: s.name, skipped: s.skipped! },
);
const base = rows[0] as { spawn: number; call: number };
console.log(`\nsandbox: ${SPAWNS} interleaved spawns and ${CALLS} sequential echo calls per profile; medians\n`);
console.log('| profile | layers | spawn → ready (ms) | added vs none | call round trip (µs) | added vs none |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  if ('skipped' in r) {
    console.log(`| ${r.name} | — | cannot run here: ${r.skipped} | | | |`);
    continue;
  }
  console.log(`| ${r.name} | ${r.layers} | ${r.spawn.toFixed(1)} | ${(r.spawn - base.spawn).toFixed(1)} | ${(r.call * 1000).toFixed(0)} | ${((r.call - base.call) * 1000).toFixed(0)} |`);
}
console.log('\ntargets (sandbox issue): ≤ 5 ms added at spawn, no measurable per-call cost');
process.exit(0);
