/** `skein peers`: the local agent's verified peers and its advertisement rejection counters. */
import { parseFlags } from './args.ts';
import { clientFor, resolveTarget, TARGET_FLAGS, TARGET_HELP } from './target.ts';
import type { Io } from './io.ts';
import { table } from './table.ts';

export const PEERS_USAGE = `Usage: skein peers [--peer HOST[:PORT]] [--cert PATH --key PATH --ca PATH] [--token T | --token-file F]
                   [--profile NAME] [--json] [--config PATH]

Lists the peers the agent believes — from advertisements signed by a trusted or endorsed key
(source "multicast"), from DNS records whose endpoint proved a fleet certificate ("dns"), or
from the config ("static"): identity, endpoints, routines, load, source, age and status — "ok", or "cool-down" for a peer that is
not used for a while (it failed its identity check), with the reason below the table — and
how many advertisements it rejected, by reason.
Defaults as for skein dispatch: the agent of the local config, with its development client
certificate.

${TARGET_HELP}
  --json             print the answer as JSON`;

export async function runPeers(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, { ...TARGET_FLAGS, json: { type: 'boolean' } });
  if (values.help) {
    io.out(PEERS_USAGE);
    return 0;
  }
  const target = resolveTarget(values);
  const client = clientFor(target);
  try {
    const answer = await client.peers();
    if (values.json) {
      io.out(JSON.stringify(answer));
      return 0;
    }
    if (!answer.enabled) {
      io.out('discovery is disabled on this agent (discovery.enabled)');
      return 0;
    }
    const cooling = (p: Record<string, unknown>) => Number(p.coolDownMs ?? 0) > 0;
    const rows = answer.peers.map((p) => [
      String(p.agent),
      String(p.spiffe),
      (p.endpoints as string[]).join(' '),
      (p.routines as string[]).join(','),
      `${String(p.load)}/${String(p.capacity)}`,
      String(p.source ?? (p.static ? 'static' : 'multicast')),
      p.static ? '-' : `${Math.round(Number(p.ageMs) / 100) / 10}s`,
      cooling(p) ? `cool-down ${duration(Number(p.coolDownMs))}` : 'ok',
    ]);
    const header = ['AGENT', 'SPIFFE ID', 'ENDPOINTS', 'ROUTINES', 'LOAD', 'SOURCE', 'AGE', 'STATUS'];
    io.out(table(header, rows));
    // Why a peer is not used, in full: a reason does not fit a table cell.
    const cold = answer.peers.filter(cooling);
    if (cold.length)
      io.out(`\nnot used while cooling down:\n${cold.map((p) => `  ${String(p.agent)} (${duration(Number(p.coolDownMs))} left): ${String(p.coolDownReason ?? 'no reason recorded')}`).join('\n')}`);
    const rejected = Object.entries(answer.rejected ?? {}).filter(([k, v]) => k !== 'accepted' && v > 0);
    if (rejected.length) io.out(`\nrejected advertisements: ${rejected.map(([k, v]) => `${k} ${v}`).join(', ')}`);
    return 0;
  } finally {
    await client.destroy();
  }
}

/** 4m59s, 12s, 800ms: a remaining time at a glance. */
function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}
