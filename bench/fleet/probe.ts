/**
 * The probe: runs inside a real agent's namespace (the root namespace has no route there) and
 * watches that agent as an operator would, answering main.ts's commands as JSON lines:
 *
 *   count       the admin /metrics gauge skein_peers (plain HTTP on loopback; the cheapest
 *               look: the agent counts its table, no per-peer JSON) — for convergence;
 *   scrape      the same read a number of times (the idle agent is scraped as a is);
 *   peers       GET /v1/peers over mTLS (the whole table) — for who is listed, with what.
 *
 *   bun bench/fleet/probe.ts '{"admin":"http://127.0.0.1:9464","peer":"10.240.0.10:7443","cert":…,"key":…,"ca":…}'
 *
 * Every wait is bounded by the command's timeoutMs; stdin closing ends the probe.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { SkeinClient } from '../../agent/client/index.ts';

export type ProbeCommand =
  | { op: 'count' }
  /** Polls the gauge every everyMs until it reaches atLeast; answers when, and the most seen. */
  | { op: 'until-count'; atLeast: number; timeoutMs: number; everyMs: number }
  /** Reads the gauge `times` times, every everyMs: another agent's until-count, mirrored. */
  | { op: 'scrape'; times: number; everyMs: number }
  /**
   * Polls /v1/peers until each of `agents` is listed (with `routine`, when given) or, with
   * present false, gone; answers when each was first seen so (null: not within timeoutMs).
   */
  | { op: 'until-peers'; agents: string[]; present: boolean; routine?: string; timeoutMs: number; everyMs: number }
  | { op: 'peers' };

const opts = JSON.parse(process.argv[2] ?? '{}') as { admin: string; peer: string; cert: string; key: string; ca: string };
const client = new SkeinClient({ peer: opts.peer, cert: readFileSync(opts.cert), key: readFileSync(opts.key), ca: readFileSync(opts.ca) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** GET /v1/peers, given up after 15 s (an overloaded agent may accept and never answer). */
function peersOf(): Promise<Awaited<ReturnType<SkeinClient['peers']>>> {
  return Promise.race([client.peers(), sleep(15_000).then(() => Promise.reject(new Error('GET /v1/peers: no answer within 15 s')))]);
}

async function count(): Promise<number | undefined> {
  try {
    const text = await (await fetch(`${opts.admin}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const m = /^skein_peers (\d+)/m.exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // not listening yet
  }
}

async function handle(cmd: ProbeCommand): Promise<Record<string, unknown>> {
  switch (cmd.op) {
    case 'count':
      return { count: await count(), at: Date.now() };
    case 'until-count': {
      const end = Date.now() + cmd.timeoutMs;
      let max = 0;
      let polls = 0;
      for (;;) {
        const n = await count();
        const at = Date.now();
        polls++;
        if (n !== undefined) max = Math.max(max, n);
        if (n !== undefined && n >= cmd.atLeast) return { metAt: at, count: n, max, polls };
        if (at > end) return { metAt: null, max, polls };
        await sleep(cmd.everyMs);
      }
    }
    case 'scrape': {
      for (let i = 0; i < Math.min(cmd.times, 10_000); i++) {
        if (i > 0) await sleep(cmd.everyMs);
        await count();
      }
      return { polls: cmd.times };
    }
    case 'until-peers': {
      const end = Date.now() + cmd.timeoutMs;
      const metAt: Record<string, number | null> = Object.fromEntries(cmd.agents.map((a) => [a, null]));
      let polls = 0;
      let failed = 0;
      for (;;) {
        const peers = await peersOf().then(
          (answer) => answer.peers,
          () => undefined, // an agent too busy to answer in time: polled again
        );
        const at = Date.now();
        polls++;
        if (!peers) failed++;
        const byName = new Map((peers ?? []).map((p) => [p.agent as string, p]));
        for (const agent of cmd.agents) {
          if (metAt[agent] !== null || !peers) continue;
          const p = byName.get(agent);
          const listed = p !== undefined && (cmd.routine === undefined || (p.routines as string[]).includes(cmd.routine));
          if (listed === cmd.present) metAt[agent] = at;
        }
        if (Object.values(metAt).every((v) => v !== null) || at > end) return { metAt, polls, failed };
        await sleep(cmd.everyMs);
      }
    }
    case 'peers': {
      let error = '';
      for (let attempt = 0; attempt < 3; attempt++) {
        const started = performance.now();
        try {
          const answer = await peersOf();
          return { count: answer.peers.length, rejected: answer.rejected ?? {}, fetchMs: performance.now() - started };
        } catch (err) {
          error = (err as Error).message;
        }
      }
      return { count: null, rejected: {}, fetchMs: null, failed: error };
    }
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line) as ProbeCommand & { id: number };
  handle(cmd).then(
    (answer) => process.stdout.write(`${JSON.stringify({ id: cmd.id, ...answer })}\n`),
    (err: Error) => process.stdout.write(`${JSON.stringify({ id: cmd.id, error: err.message })}\n`),
  );
});
lines.on('close', () => {
  void client.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
});
process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
