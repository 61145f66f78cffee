/**
 * Builds the worker pools. Under workers.isolation "routine" (the default) every routine has
 * a pool of its own: a routine shares its process with the bootstrap, so it can forge an early
 * reply and keep running to read and answer the next call sent to its worker — harmless only
 * if that next call is for the same routine. Under "shared", routines on the default limits
 * share one pool and each distinct set of routine limits gets its own (rlimits are per process).
 */
import { cpus } from 'node:os';
import type { Audit } from '../audit/index.ts';
import type { AgentConfig, RoutineConfig } from '../config/schema.ts';
import type { Logger } from '../log/index.ts';
import type { StderrDropRecorder, WorkerRecorder } from '../metrics/index.ts';
import type { PreparedSandbox } from '../sandbox/prepare.ts';
import { PoolSet } from './pool-set.ts';
import { WorkerPool } from './pool.ts';
import type { RoutineSource } from './worker.ts';

const MiB = 1024 * 1024;

/** The rlimits of a routine's workers: its own overrides on top of workers.* and sandbox.*. */
export function workerLimits(config: AgentConfig, routine?: RoutineConfig): Record<string, number> {
  const o = routine?.limits ?? {};
  return {
    memoryBytes: (o.memoryMb ?? config.workers.memoryLimitMb) * MiB,
    openFiles: o.openFiles ?? config.workers.maxOpenFiles,
    fileSizeBytes: (o.fileSizeMb ?? config.sandbox.fileSizeMb) * MiB,
    cpuSeconds: o.cpuSeconds ?? config.sandbox.cpuSeconds,
    processes: o.processes ?? config.sandbox.processes,
  };
}

export function buildPools(
  config: AgentConfig,
  sources: Record<string, RoutineSource>,
  sandbox: PreparedSandbox,
  cwd: string,
  log: Logger,
  events?: WorkerRecorder & StderrDropRecorder,
  audit?: Audit,
): PoolSet {
  const defaults = JSON.stringify(workerLimits(config));
  const defaultSize = config.workers.poolSize || cpus().length;
  const isolated = config.workers.isolation === 'routine';
  const groups = new Map<string, { routines: string[]; size: number; limits: Record<string, number> }>();
  for (const [name, routine] of Object.entries(config.routines)) {
    const limits = workerLimits(config, routine);
    const key = isolated ? `routine:${name}` : JSON.stringify(limits);
    const shared = !isolated && key === defaults;
    const group = groups.get(key) ?? { routines: [], size: shared ? defaultSize : 0, limits };
    if (!shared) group.size = Math.max(group.size, routine.workers ?? (isolated ? defaultSize : 1));
    group.routines.push(name);
    groups.set(key, group);
  }
  return new PoolSet(
    [...groups.values()].map(({ routines, size, limits }) => ({
      routines,
      pool: new WorkerPool({
        size,
        queueSize: config.limits.queueSize,
        agingMs: config.calls.agingMs,
        maxConcurrency: Object.fromEntries(routines.flatMap((r) => (config.routines[r]!.maxConcurrency ? [[r, config.routines[r]!.maxConcurrency]] : []))),
        drainTimeoutMs: config.limits.drainTimeoutMs,
        log,
        events,
        audit,
        circuit: config.workers.circuit,
        stderr: config.workers.stderr,
        maxCallsPerWorker: config.workers.maxCallsPerWorker,
        recycleRssBytes: config.workers.recycleMemoryMb * MiB,
        // Retire a worker well before the kernel's RLIMIT_CPU backstop would kill it mid-call.
        recycleCpuSeconds: Math.floor(limits.cpuSeconds! * 0.8),
        spec: {
          launcher: sandbox.launcher,
          cwd,
          // Each pool's workers load only the routines they serve.
          routines: Object.fromEntries(routines.map((r) => [r, sources[r]!])),
          limits,
          confine: { ...sandbox.confine, policy: { ...(sandbox.confine.policy as object), limits } },
          maxReplyBytes: config.limits.maxResultBytes,
          startTimeoutMs: config.workers.startTimeoutMs,
        },
      }),
    })),
  );
}
