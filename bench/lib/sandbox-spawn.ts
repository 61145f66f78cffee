/**
 * A worker's spawn → ready time per sandbox profile, driven through agent/workers/worker.ts
 * (no agent, no HTTP), so the figure is the sandbox's and the bootstrap's own cost. The
 * modules are loaded from a source tree given by its root, so an older checkout (a change's
 * "before") is measured in the same interleaved spawns as the working tree.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../agent/log/index.ts';
import type { StderrBudget } from '../../agent/workers/stderr.ts';
import type { ReadyInfo, Worker as WorkerClass, WorkerSpec } from '../../agent/workers/worker.ts';

export interface SpawnSpec {
  name: string;
  /** The spec and the Worker class of the source tree it came from; absent when the host lacks the profile. */
  spec?: WorkerSpec;
  skipped?: string;
  wrapped: boolean;
  Worker?: typeof WorkerClass;
}

export interface Spawner {
  root: string;
  /** A spec for the sandbox settings in `overrides` (e.g. `{ profile: 'none' }`) and interpreter `python`. */
  spec(name: string, overrides: Record<string, unknown>, python: string, cwd: string): SpawnSpec;
  log: Logger;
  stderr: StderrBudget;
}

const LIMITS = { memoryBytes: 1024 * 1024 * 1024, openFiles: 64 };

/** The spawner of the source tree at `root` (the working tree, or an older checkout with node_modules). */
export async function loadSpawner(root: string): Promise<Spawner> {
  const { loadConfig } = (await import(join(root, 'agent/config/load.ts'))) as typeof import('../../agent/config/load.ts');
  const { createLogger } = (await import(join(root, 'agent/log/index.ts'))) as typeof import('../../agent/log/index.ts');
  const { planSandbox } = (await import(join(root, 'agent/sandbox/prepare.ts'))) as typeof import('../../agent/sandbox/prepare.ts');
  const { StderrBudget } = (await import(join(root, 'agent/workers/stderr.ts'))) as typeof import('../../agent/workers/stderr.ts');
  const { Worker } = (await import(join(root, 'agent/workers/worker.ts'))) as typeof import('../../agent/workers/worker.ts');
  const routines = { echo: { file: 'examples.py', function: 'echo', source: readFileSync(join(root, 'routines/examples.py'), 'utf8') } };
  return {
    root,
    log: createLogger({ level: 'error' }),
    stderr: new StderrBudget({ linesPerSecond: 20, bytesPerSecond: 32 * 1024 }, 1),
    spec(name, overrides, python, cwd) {
      const { config } = loadConfig({ path: join(root, 'agent.config.json'), env: {} });
      Object.assign(config.sandbox, overrides);
      config.workers.python = python;
      const { plan, launcher, confine } = planSandbox(config, LIMITS);
      if (plan.missing.length) return { name, skipped: plan.missing.join('; '), wrapped: false };
      return {
        name,
        wrapped: launcher.wrapped,
        Worker,
        spec: {
          launcher,
          cwd,
          routines,
          limits: LIMITS,
          maxReplyBytes: 1 << 20,
          startTimeoutMs: 10_000,
          streamBufferItems: 16,
          ...(config.sandbox.profile === 'none' ? {} : { confine: { ...confine, policy: plan.policy, packagePaths: plan.packagePaths } }),
        },
      };
    },
  };
}

/** CPU time (ms) a process has used so far (/proc/PID/schedstat, ns); NaN when it cannot be read. */
function cpuMsOf(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return NaN;
  }
}

/**
 * One spawn to ready, in ms of wall time and of the worker's own CPU (a loaded machine inflates
 * the first with waits for a core), with the layers the worker reported; the worker is then killed.
 */
export async function spawnOnce(s: SpawnSpec, spawner: Spawner, id: string): Promise<{ ms: number; cpuMs: number; info: ReadyInfo }> {
  const t = performance.now();
  const w = new s.Worker!(id, s.spec!, spawner.log, spawner.stderr);
  const info = await w.ready();
  const ms = performance.now() - t;
  // The pid the worker reports is the host's: its namespaces do not include a PID namespace.
  const cpuMs = cpuMsOf(info.pid);
  w.kill('shutdown');
  // The kernel tears a dead worker's network namespace down asynchronously; let it finish so
  // it is not billed to the next spawn (real spawns are occasional: start-up, replacements).
  await new Promise((r) => setTimeout(r, 60));
  return { ms, cpuMs, info };
}

/**
 * `n` spawns of every spec, interleaved (spec 1, 2, …, then again) so that machine drift hits
 * them alike; every spawn's wall and CPU time, in ms, per spec name, and the layer count each reported.
 */
export async function interleavedSpawns(specs: { spec: SpawnSpec; spawner: Spawner }[], n: number): Promise<{ times: Map<string, number[]>; cpu: Map<string, number[]>; layers: Map<string, number> }> {
  const times = new Map<string, number[]>(specs.map((s) => [s.spec.name, []]));
  const cpu = new Map<string, number[]>(specs.map((s) => [s.spec.name, []]));
  const layers = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    for (const { spec, spawner } of specs) {
      if (!spec.spec) continue;
      const { ms, cpuMs, info } = await spawnOnce(spec, spawner, `b${i}`);
      times.get(spec.name)!.push(ms);
      cpu.get(spec.name)!.push(cpuMs);
      layers.set(spec.name, info.layers.length + (spec.wrapped ? 1 : 0));
    }
  }
  return { times, cpu, layers };
}
