/**
 * The budget issue #14 sets for discovery at fleet scale, judged on a scenario's figures, and
 * the table the bench prints. One place states the numbers; docs/benchmarks.md quotes them.
 */
import type { ScenarioResult } from './scenario.ts';

export const BUDGET = {
  convergenceMs: 5000,
  bytesPerSec: 100_000,
  cpuFraction: 0.05,
  rssBytes: 20 * 1024 * 1024,
  /** A vanished, joined or changed peer is seen within the configured TTL, itself at most 10 s by default. */
  churnMs: (ttlMs: number) => ttlMs,
  /** Distinct peers dialled in a minute: the default neighbour-table hard limit (gc_thresh3). */
  dialsPerMinute: 1024,
} as const;

export interface Verdict {
  measure: string;
  value: string;
  budget: string;
  ok: boolean | null;
}

const kB = (b: number) => `${(b / 1000).toFixed(1)} kB/s`;
const MiB = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
const ms = (v: number | null) => (v === null ? 'never' : `${Math.round(v).toLocaleString('en-US')} ms`);
const pct = (f: number) => `${(f * 100).toFixed(1)} %`;

/** The budget, measure by measure, for one scenario. */
export function verdicts(r: ScenarioResult): Verdict[] {
  const churn = BUDGET.churnMs(r.discovery.ttlMs);
  const within = (v: number | null, max: number) => v !== null && v <= max;
  const out: Verdict[] = [
    {
      measure: 'convergence (spawn → all listed)',
      value: r.convergence.reached ? ms(r.convergence.fromSpawnMs) : `never (most ${r.convergence.maxListed} of ${r.expectedPeers})`,
      budget: `≤ ${ms(BUDGET.convergenceMs)}`,
      ok: within(r.convergence.fromSpawnMs, BUDGET.convergenceMs),
    },
    {
      measure: 'advert traffic at one host',
      value: `${kB(r.atHost.advertBytesPerSec)}, ${Math.round(r.atHost.advertsPerSec)} datagrams/s (all traffic ${kB(r.atHost.linkBytesPerSec)}; ${Math.round(r.atHost.receiveBufferDropsPerSec)}/s lost to a full socket buffer)`,
      budget: `≤ ${kB(BUDGET.bytesPerSec)}`,
      ok: r.atHost.advertBytesPerSec <= BUDGET.bytesPerSec,
    },
    {
      measure: 'discovery CPU (agent − idle agent)',
      value: `${pct(r.cpu.discovery)} (agent ${pct(r.cpu.agent)}; ${pct(r.cpu.checks)} over the ${r.cpu.checksSeconds.toFixed(0)} s of identity checks before the window, ${r.identityChecks.duringWindow} during it)`,
      budget: `≤ ${pct(BUDGET.cpuFraction)}`,
      ok: r.cpu.discovery <= BUDGET.cpuFraction,
    },
    {
      measure: 'discovery RSS (agent − idle agent)',
      value: `${MiB(r.rss.discoveryBytes)} (agent ${MiB(r.rss.agentBytes)}; anonymous ${MiB(r.rss.discoveryAnonBytes)}, file-backed ${MiB(r.rss.discoveryFileBytes)}; samples ${MiB(r.rss.discoveryMinBytes)}–${MiB(r.rss.discoveryMaxBytes)})`,
      budget: `≤ ${MiB(BUDGET.rssBytes)}`,
      ok: r.rss.discoveryBytes <= BUDGET.rssBytes,
    },
    { measure: 'vanished peers dropped (slowest)', value: ms(r.churn.vanishMs), budget: `≤ ttl ${ms(churn)}`, ok: within(r.churn.vanishMs, churn) },
    { measure: 'joined peers listed (slowest)', value: ms(r.churn.joinMs), budget: `≤ ttl ${ms(churn)}`, ok: within(r.churn.joinMs, churn) },
    { measure: 'changed routines listed (slowest)', value: ms(r.churn.changeMs), budget: `≤ ttl ${ms(churn)}`, ok: within(r.churn.changeMs, churn) },
    {
      measure: 'identity checks (peers dialled in the first minute)',
      value: `${r.identityChecks.firstMinute} (peak ${r.identityChecks.peakConcurrent} at once, ${r.identityChecks.peakPerSecond}/s; proved ${r.identityChecks.proved}, failed ${r.identityChecks.mismatch}, unreachable ${r.identityChecks.unreachable} of which ${r.identityChecks.handshakeTimeouts} handshake timeouts)`,
      budget: `≤ ${BUDGET.dialsPerMinute}`,
      ok: r.identityChecks.firstMinute <= BUDGET.dialsPerMinute,
    },
    {
      measure: 'all peers stay listed (steady window)',
      value: `${r.window.listedMin}–${r.window.listedMax} of ${r.expectedPeers}`,
      budget: `${r.expectedPeers}`,
      ok: r.window.listedMin >= r.expectedPeers,
    },
    {
      measure: 'dispatch --discover adds (CLI)',
      value: r.dispatch.error ? `failed: ${r.dispatch.error}` : `${ms(r.dispatch.addedMs)} (GET /v1/peers ${ms(r.dispatch.peersFetchMs)})`,
      budget: 'reported',
      ok: r.dispatch.error ? false : null,
    },
  ];
  return out;
}

/** One row per scenario: the figures the issue asks for, side by side. */
export function summaryTable(results: ScenarioResult[]): string {
  const head =
    '| peers (sources) | convergence | datagrams/s | kB/s at host | discovery CPU (during checks) | discovery RSS (during checks) | listed (window) | vanish | join | change | --discover adds | checks in 1st min (peak at once) |';
  const rows = results.map((r) =>
    [
      `${r.agents.toLocaleString('en-US')} (${r.sources.toLocaleString('en-US')})`,
      r.convergence.reached ? ms(r.convergence.fromSpawnMs) : `never (${r.convergence.maxListed})`,
      Math.round(r.atHost.advertsPerSec).toLocaleString('en-US'),
      (r.atHost.advertBytesPerSec / 1000).toFixed(1),
      `${pct(r.cpu.discovery)} (checks ${pct(r.cpu.checks)})`,
      `${MiB(r.rss.discoveryBytes)} (checks ${MiB(r.rss.checksBytes)})`,
      `${r.window.listedMin}–${r.window.listedMax}/${r.expectedPeers}`,
      ms(r.churn.vanishMs),
      ms(r.churn.joinMs),
      ms(r.churn.changeMs),
      r.dispatch.error ? 'failed' : ms(r.dispatch.addedMs),
      `${r.identityChecks.firstMinute} (${r.identityChecks.peakConcurrent})`,
    ].join(' | '),
  );
  return [head, `|${'---|'.repeat(12)}`, ...rows.map((r) => `| ${r} |`)].join('\n');
}

/** Growth past 1,000 peers: CPU per peer at the largest fleet over CPU per peer at 1,000 (1.0: linear). */
export function cliff(results: ScenarioResult[]): { from: number; to: number; cpuPerPeerRatio: number } | undefined {
  const own = results.filter((r) => r.sources === r.agents);
  const base = own.find((r) => r.agents === 1000);
  const top = own.filter((r) => r.agents > 1000).sort((x, y) => y.agents - x.agents)[0];
  if (!base || !top || base.cpu.discovery <= 0) return undefined;
  return { from: base.agents, to: top.agents, cpuPerPeerRatio: top.cpu.discovery / top.agents / (base.cpu.discovery / base.agents) };
}
