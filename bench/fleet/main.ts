/**
 * The fleet simulator (issue #14, "Measure first"): `npm run bench:fleet` builds the binary and
 * measures discovery with N simulated agents around real ones, against the budget.
 *
 *   npm run bench:fleet                                 the suite: 10, 100, 1,000, 5,000 peers
 *                                                       and 200 behind one source address
 *   npm run bench:fleet -- --agents 1000 --seconds 30   one fleet size, quickly
 *   npm run bench:fleet -- --agents 200 --sources 1     agents sharing source addresses
 *
 * Options: --agents N (repeatable), --sources K (addresses the N agents send from; default N),
 * --seconds S (steady window, default 30), --interval-ms, --ttl-ms, --wire-version 1|2 and
 * --budget-bytes B/s (discovery.intervalMs, ttlMs, wireVersion, budgetBytesPerSec of both the
 * simulated and the real agents; default: the agent's own defaults), --converge-timeout S (default 30),
 * --cache DIR (certificates, default /tmp/skein-fleet-cache), --out FILE (default
 * bench/results/fleet.json). Needs root (network namespaces). docs/benchmarks.md, "Fleet
 * scale", describes the method.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { CONFIG_SCHEMA } from '../../agent/config/schema.ts';
import { resultHeader, writeResults } from '../lib/rounds.ts';
import { ROOT } from '../lib/skein.ts';
import { BUDGET, cliff, summaryTable, verdicts } from './budget.ts';
import { MAX_SIM_ADDRESSES, netnsProblem } from './net.ts';
import { Running, runScenario, type ScenarioResult } from './scenario.ts';

const discoveryDefaults = CONFIG_SCHEMA.fields.discovery.fields;
const { values } = parseArgs({
  options: {
    agents: { type: 'string', multiple: true },
    sources: { type: 'string' },
    seconds: { type: 'string', default: '30' },
    'interval-ms': { type: 'string' },
    'ttl-ms': { type: 'string' },
    'wire-version': { type: 'string' },
    'budget-bytes': { type: 'string' },
    'converge-timeout': { type: 'string', default: '30' },
    cache: { type: 'string', default: '/tmp/skein-fleet-cache' },
    out: { type: 'string', default: join(ROOT, 'bench/results/fleet.json') },
  },
});

function int(name: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}\n`);
    process.exit(2);
  }
  return n;
}

const problem = netnsProblem();
if (problem) {
  process.stderr.write(`bench:fleet: ${problem}\n`);
  process.exit(2);
}

const maxAgents = MAX_SIM_ADDRESSES - 1;
// What the command line sets is written into the real agents' configs; the rest are the
// agent's own defaults, read from its config schema (so a new default is what gets measured).
const overrides = Object.fromEntries(
  Object.entries({
    intervalMs: int('interval-ms', values['interval-ms'], 100, 600_000),
    ttlMs: int('ttl-ms', values['ttl-ms'], 300, 3_600_000),
    wireVersion: int('wire-version', values['wire-version'], 1, 2) as 1 | 2 | undefined,
    budgetBytesPerSec: int('budget-bytes', values['budget-bytes'], 1000, 100_000_000),
  }).filter(([, v]) => v !== undefined),
);
const discovery = {
  intervalMs: discoveryDefaults.intervalMs.default,
  ttlMs: discoveryDefaults.ttlMs.default,
  wireVersion: discoveryDefaults.wireVersion.default as 1 | 2,
  budgetBytesPerSec: discoveryDefaults.budgetBytesPerSec.default,
  ...overrides,
};
const { intervalMs, ttlMs } = discovery;
const seconds = int('seconds', values.seconds, 5, 600)!;
const sourcesFlag = int('sources', values.sources, 1, maxAgents);
const suite: Array<{ agents: number; sources: number }> = values.agents
  ? values.agents.map((a) => {
      const agents = int('agents', a, 2, maxAgents)!;
      return { agents, sources: sourcesFlag ?? agents };
    })
  : [10, 100, 1000, 5000].map((n) => ({ agents: n, sources: n })).concat([{ agents: 200, sources: 1 }]);

const running = new Running();
let interrupted = false;
process.on('exit', () => running.kill());
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${sig}: stopping the agents and the simulator, deleting the namespaces …\n`);
    void running.stop().finally(() => process.exit(130));
    setTimeout(() => {
      running.kill();
      process.exit(130);
    }, 10_000).unref();
  });
}

const log = (s: string) => process.stderr.write(s);
const header = resultHeader('fleet', 1, {});
const results: ScenarioResult[] = [];
for (const { agents, sources } of suite) {
  log(`\nfleet: ${agents} simulated agents, ${sources} source address(es); discovery ${JSON.stringify(discovery)}\n`);
  try {
    results.push(
      await runScenario({ agents, sources, seconds, discovery, overrides, convergeTimeoutMs: int('converge-timeout', values['converge-timeout'], 5, 600)! * 1000, cache: values.cache!, log }, running),
    );
  } catch (err) {
    await running.stop();
    throw err;
  }
  const r = results.at(-1)!;
  for (const v of verdicts(r)) log(`    ${v.ok === null ? ' ' : v.ok ? '✓' : '✗'} ${v.measure}: ${v.value} (budget ${v.budget})\n`);
}

const growth = cliff(results);
console.log(
  `\nfleet scale: one real agent started cold among N simulated endorsed peers; wire version ${discovery.wireVersion}, interval ${intervalMs} ms (stretching with the fleet within ${discovery.budgetBytesPerSec} B/s), ttl ${ttlMs} ms; steady window ${seconds} s\n`,
);
console.log(summaryTable(results));
console.log(
  `\nbudget (issue #14): convergence ≤ ${BUDGET.convergenceMs} ms, ≤ ${BUDGET.bytesPerSec / 1000} kB/s at a host, discovery ≤ ${BUDGET.cpuFraction * 100} % of a core and ≤ ${BUDGET.rssBytes / 1048576} MiB, churn seen within the ttl, every peer listed; identity checks ≤ ${BUDGET.dialsPerMinute} peers dialled a minute`,
);
if (growth) console.log(`growth ${growth.from} → ${growth.to} peers: discovery CPU per peer ×${growth.cpuPerPeerRatio.toFixed(2)} (1.00: linear; above: a cliff)`);
writeResults(values.out!, {
  ...header,
  units: { convergence: 'ms', advertBytesPerSec: 'link-layer bytes/s of adverts arriving at the host', cpu: 'fraction of one core', rss: 'bytes', churn: 'ms', dispatch: 'ms' },
  workload: { discovery, overrides, steadySeconds: seconds },
  budget: { ...BUDGET, churnMs: 'ttlMs' },
  growth,
  scenarios: results.map((r) => ({ ...r, verdicts: verdicts(r) })),
});
log(`\nwrote ${values.out}\n`);
process.exit(0);
