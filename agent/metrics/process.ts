/**
 * The standard process_* metrics every Prometheus client exports (names and meanings from the
 * Prometheus client guidelines), read from /proc at scrape time only. prom-client's
 * collectDefaultMetrics would add them too, but it also starts an event-loop-lag monitor that
 * wakes the agent every 10 ms and reports nodejs_* figures that mean little under Bun.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Counter, Gauge, type Registry } from 'prom-client';

const START_SECONDS = Math.round(Date.now() / 1000 - process.uptime());

/** A value of a "Name:  123 kB" line of /proc/self/status, in bytes. */
function statusBytes(field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export function registerProcessMetrics(registers: Registry[]): void {
  const cpu = (pick: (u: NodeJS.CpuUsage) => number) =>
    function (this: Counter) {
      this.reset();
      this.inc(pick(process.cpuUsage()) / 1e6);
    };
  new Counter({ name: 'process_cpu_user_seconds_total', help: 'Total user CPU time spent in seconds.', registers, collect: cpu((u) => u.user) });
  new Counter({ name: 'process_cpu_system_seconds_total', help: 'Total system CPU time spent in seconds.', registers, collect: cpu((u) => u.system) });
  new Counter({ name: 'process_cpu_seconds_total', help: 'Total user and system CPU time spent in seconds.', registers, collect: cpu((u) => u.user + u.system) });
  new Gauge({ name: 'process_start_time_seconds', help: 'Start time of the process since unix epoch in seconds.', registers }).set(START_SECONDS);
  new Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes.',
    registers,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: 'process_virtual_memory_bytes',
    help: 'Virtual memory size in bytes.',
    registers,
    collect() {
      const v = statusBytes('VmSize');
      if (v !== undefined) this.set(v);
    },
  });
  new Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    registers,
    collect() {
      try {
        this.set(readdirSync('/proc/self/fd').length);
      } catch {
        // Not Linux: no series rather than a wrong one.
      }
    },
  });
  new Gauge({
    name: 'process_max_fds',
    help: 'Maximum number of open file descriptors.',
    registers,
    collect() {
      try {
        const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
        if (m) this.set(Number(m[1]));
      } catch {
        // As above.
      }
    },
  });
}
