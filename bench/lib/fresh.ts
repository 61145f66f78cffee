/**
 * The first calls after a start: each round starts a fresh raw baseline and a fresh agent (its
 * state already on disk), makes `warmUp` calls on a new connection, then times `sequential`
 * more (the "2,000 sequential calls after 200 warm-up calls"), and stops both by PID.
 * Rounds alternate baseline and agent so both see the same machine. This is where the tail
 * of a freshly started process lives (cold code, the JIT at work, the first collections).
 */
import { join } from 'node:path';
import type { Procs } from './procs.ts';
import { agentConfig, client, devClientCreds, echoCall, startAgent, startBaselineProc } from './skein.ts';
import { ratio, spread, type Spread } from './stats.ts';
import { sequential, warmUp } from './workload.ts';

export interface FreshRound {
  p50: number;
  p99: number;
}

export interface FreshResult {
  sizes: { warmUp: number; sequential: number };
  baseline: { p50: Spread; p99: Spread; rounds: FreshRound[] };
  skein: { p50: Spread; p99: Spread; rounds: FreshRound[] };
  ratios: { p50: Spread; p99: Spread };
}

export async function freshRounds(procs: Procs, rounds: number, sizes = { warmUp: 200, sequential: 2000 }, log = (s: string) => process.stderr.write(s)): Promise<FreshResult> {
  const name = 'bench-fresh';
  // The first start creates the development PKI (key generation): not part of any round.
  await procs.stop((await startAgent(procs, agentConfig(name))).started.proc);
  const pkiDir = join(procs.dir, `state-${name}`, 'pki');
  const creds = devClientCreds(pkiDir);
  const measure = async (port: number) => {
    const c = client(port, creds);
    try {
      await warmUp(echoCall(c), sizes.warmUp);
      return await sequential(echoCall(c), sizes.sequential);
    } finally {
      await c.close();
    }
  };
  const base: FreshRound[] = [];
  const sk: FreshRound[] = [];
  for (let r = 0; r < rounds; r++) {
    const b = await startBaselineProc(procs, { name, pkiDir });
    try {
      base.push(await measure(b.port));
    } finally {
      await procs.stop(b.started.proc);
    }
    const a = await startAgent(procs, agentConfig(name));
    try {
      sk.push(await measure(a.port));
    } finally {
      await procs.stop(a.started.proc);
    }
    log(`  fresh round ${r + 1}/${rounds}: baseline p50 ${base[r]!.p50.toFixed(3)} p99 ${base[r]!.p99.toFixed(3)} ms; skein p50 ${sk[r]!.p50.toFixed(3)} p99 ${sk[r]!.p99.toFixed(3)} ms\n`);
  }
  const summary = (rs: FreshRound[]) => ({ p50: spread(rs.map((x) => x.p50)), p99: spread(rs.map((x) => x.p99)), rounds: rs });
  const asRounds = (rs: FreshRound[]) => rs.map((x) => ({ ...x, throughput: 0 }));
  return {
    sizes,
    baseline: summary(base),
    skein: summary(sk),
    ratios: { p50: ratio(asRounds(sk), asRounds(base), 'p50'), p99: ratio(asRounds(sk), asRounds(base), 'p99') },
  };
}
