/**
 * PeerPool (client/pool.ts), the one implementation of choosing among peers and cooling
 * down peers that keep failing (discovery's peer table only shows what the agent learnt).
 * Endpoints here are loopback ports nothing listens on: every call is refused before TLS
 * (SKEIN_ERR_TRANSPORT, nothing sent), so each attempt is a failure on the injected clock.
 */
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerPool, type PeerEndpoint } from '../../agent/client/pool.ts';
import { SkeinError } from '../../common/errors/index.ts';

let closed: string;
beforeAll(async () => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closed = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  await new Promise<void>((r) => server.close(() => r()));
});

const peer = (agent: string, load: number, capacity: number, extra: Partial<PeerEndpoint> = {}): PeerEndpoint => ({
  agent,
  spiffe: `spiffe://skein.local/agent/${agent}`,
  endpoints: [closed],
  tlsFingerprint: 'ab'.repeat(32),
  routines: ['echo'],
  load,
  capacity,
  ...extra,
});

async function failed(pool: PeerPool): Promise<SkeinError> {
  try {
    await pool.dispatch('echo', { args: [1] });
  } catch (err) {
    if (err instanceof SkeinError) return err;
    throw err;
  }
  throw new Error('expected the dispatch to fail');
}
/** The agents tried, in order, from the "every peer offering … failed" message. */
const tried = (err: SkeinError) => (err.details.errors as string[]).map((e) => e.split(' ')[0]);

const pools: PeerPool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

describe('PeerPool: choosing a peer', () => {
  it('tries peers offering the routine, least loaded first; skips those cooling down on the agent', async () => {
    const peers = [peer('busy', 3, 4), peer('idle', 0, 2), peer('half', 4, 8), peer('other', 0, 8, { routines: ['resize'] }), peer('untrusted', 0, 8, { coolDownMs: 5000 })];
    const pool = new PeerPool({ peers: () => peers, idempotent: () => true });
    pools.push(pool);
    const err = await failed(pool);
    expect(err.code).toBe('SKEIN_ERR_NO_PEERS');
    expect(tried(err)).toEqual(['idle', 'half', 'busy']);
  });

  it('equally loaded peers take turns at the front', async () => {
    const peers = [peer('a', 1, 2), peer('b', 1, 2)];
    const pool = new PeerPool({ peers: () => peers, idempotent: () => true, evictAfter: 1000 });
    pools.push(pool);
    const firsts = new Set<string>();
    for (let i = 0; i < 4; i++) firsts.add(tried(await failed(pool))[0]!);
    expect([...firsts].sort()).toEqual(['a', 'b']);
  });
});

describe('PeerPool: failure cool-down', () => {
  it('a peer failing evictAfter times in a row is skipped for evictMs, then tried again', async () => {
    let now = 1_000_000;
    const pool = new PeerPool({ peers: () => [peer('a1', 0, 4)], idempotent: () => true, evictAfter: 3, evictMs: 30_000, now: () => now });
    pools.push(pool);
    for (let i = 0; i < 3; i++) expect(tried(await failed(pool))).toEqual(['a1']);
    const skipped = await failed(pool);
    expect(skipped.code).toBe('SKEIN_ERR_NO_PEERS');
    expect(skipped.message).toBe('no trusted peer offers routine "echo"');
    now += 29_999;
    expect((await failed(pool)).message).toBe('no trusted peer offers routine "echo"');
    now += 1;
    expect(tried(await failed(pool))).toEqual(['a1']);
  });
});
