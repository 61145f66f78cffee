/**
 * Discovery at fleet scale, through the compiled binary on loopback multicast (issue 14): many
 * simulated peers — each its own Ed25519 key, endorsed by a fleet root the agent trusts — sent
 * from this process, i.e. all from ONE source address (127.0.0.1), with the real wire format.
 *
 *   - 200 agents behind one address all stay listed (the per-source limit used to drop 59 %)
 *   - identity checks of new peers are paced (discovery.identityChecks): an agent meeting 120
 *     peers never dials more than `concurrency` at once
 *   - a peer that failed its identity check stays cooled down when it expires and returns,
 *     and is not dialled again
 * Traffic stays on 127.0.0.1; every agent is stopped by PID.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeAdvert, nextSeq } from '../../agent/discovery/advert.ts';
import { endorse } from '../../agent/discovery/endorse.ts';
import { formatPublicKey, generateKeyPair, type KeyPair } from '../../signing/index.ts';
import { baseConfig, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';

const FLEET = 'scale-fleet';
const root = generateKeyPair();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const groupPort = () => 40_000 + Math.floor(Math.random() * 19_000);

interface SimPeer {
  name: string;
  key: KeyPair;
  endorsement: Uint8Array;
  endpoint: string;
  seq?: number;
}

function simPeers(prefix: string, n: number, endpoint: (i: number) => string): SimPeer[] {
  return Array.from({ length: n }, (_, i) => {
    const key = generateKeyPair();
    const name = `${prefix}${i}`;
    return { name, key, endpoint: endpoint(i), endorsement: endorse({ root, agentPublicKey: key.publicKey, spiffeId: `spiffe://skein.local/agent/${name}`, notAfter: Date.now() + 3_600_000 }) };
  });
}

function advertOf(p: SimPeer, ttl: number, fingerprint = '00'.repeat(32)): Uint8Array {
  p.seq = nextSeq(p.seq, Date.now());
  return encodeAdvert(
    {
      v: 1,
      fleet: FLEET,
      agent: p.name,
      spiffe: `spiffe://skein.local/agent/${p.name}`,
      endpoints: [p.endpoint],
      routines: ['echo'],
      load: 0,
      capacity: 1,
      tlsFingerprint: fingerprint,
      seq: p.seq,
      iat: Date.now(),
      ttl,
    },
    p.key,
    p.endorsement,
  );
}

async function sender(): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  socket.setMulticastInterface('127.0.0.1');
  return socket;
}
const send = (s: Socket, bytes: Uint8Array, port: number) => new Promise<void>((r) => s.send(bytes, port, '239.255.77.78', () => r()));

function agentConfig(port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const key = generateKeyPair();
  return baseConfig({
    agent: { name: 'watcher' },
    discovery: {
      enabled: true,
      fleet: FLEET,
      // The agent's own key is written by startAgent's caller below.
      rootKeys: [formatPublicKey(root.publicKey)],
      groups: [`239.255.77.78:${port}`],
      intervalMs: 500,
      ttlMs: 3000,
      ...extra,
    },
    _key: key,
  });
}

async function start(port: number, extra: Record<string, unknown> = {}): Promise<StartedAgent> {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { writeKeyPair } = await import('../../signing/index.ts');
  const dir = mkdtempSync(join(tmpdir(), 'skein-scale-'));
  writeKeyPair(join(dir, 'watcher.key'));
  const config = agentConfig(port, { signingKey: join(dir, 'watcher.key'), ...extra });
  delete config._key;
  writeFileSync(join(dir, '.keep'), '');
  return startAgent({ config, dir });
}

const listed = async (agent: StartedAgent) => (await agent.client().peers()).peers as Array<{ agent: string; coolDownMs: number; coolDownReason?: string }>;

afterAll(async () => {
  await stopAll();
});

describe('200 agents behind one source address', () => {
  let agent: StartedAgent;
  const port = groupPort();
  beforeAll(async () => {
    agent = await start(port, { identityChecks: { concurrency: 4, perSecond: 50 } });
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
  });

  it('all stay listed through several intervals, none rate-limited (regression: 59 % dropped, peers flapping)', async () => {
    // Their endpoints lead nowhere (port 1): unreachable for the identity check, never cooled down.
    const peers = simPeers('nat', 200, () => '127.0.0.1:1');
    const s = await sender();
    try {
      // Six rounds, one advert per agent every 500 ms, all from 127.0.0.1, each round in one burst.
      let seen = 0;
      for (let round = 0; round < 6; round++) {
        for (const p of peers) await send(s, advertOf(p, 3000), port);
        await sleep(500);
        seen = (await listed(agent)).filter((p) => p.agent.startsWith('nat')).length;
      }
      const answer = await agent.client().peers();
      expect(seen).toBe(200);
      expect(answer.rejected?.['rate-limited'] ?? 0).toBe(0);
      expect(agent.logs.filter((l) => l.msg === 'peer expired').length).toBe(0);
      expect(agent.logs.filter((l) => l.msg === 'peer discovered' && String(l.peer).startsWith('nat')).length).toBe(200);
    } finally {
      s.close();
    }
  }, 60_000);

  it('a forgery flood from that address is still bounded by the per-source bucket', async () => {
    const [forger] = simPeers('forger', 1, () => '127.0.0.1:1');
    const s = await sender();
    try {
      const before = (await agent.client().peers()).rejected!;
      for (let i = 0; i < 300; i++) {
        const b = Buffer.from(advertOf(forger!, 3000));
        b[b.length - forger!.endorsement.length - 10]! ^= 0x55; // inside the advert's signature
        await send(s, b, port);
      }
      await sleep(300);
      const after = (await agent.client().peers()).rejected!;
      const checked = (after['bad-signature'] ?? 0) - (before['bad-signature'] ?? 0);
      const limited = (after['rate-limited'] ?? 0) - (before['rate-limited'] ?? 0);
      // 50 at once, 20/s: the rest are dropped before any signature check.
      expect(checked).toBeGreaterThanOrEqual(50);
      expect(checked).toBeLessThan(120);
      expect(checked + limited).toBe(300);
    } finally {
      s.close();
    }
  }, 30_000);
});

describe('identity checks of new peers are paced (discovery.identityChecks)', () => {
  let agent: StartedAgent;
  let server: Server;
  let open = 0;
  let peak = 0;
  let total = 0;
  const port = groupPort();
  beforeAll(async () => {
    // Where every simulated peer points: holds each connection 200 ms, then drops it (no TLS:
    // "unreachable", which never cools a peer down), counting how many are open at once.
    server = createServer((c: TcpSocket) => {
      open++;
      total++;
      peak = Math.max(peak, open);
      c.on('error', () => {});
      setTimeout(() => {
        open--;
        c.destroy();
      }, 200);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    agent = await start(port, { identityChecks: { concurrency: 4, perSecond: 40 } });
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
    server?.close();
  });

  it('an agent meeting 120 peers at once dials at most 4 at a time, and checks every one', async () => {
    const addr = server.address() as { port: number };
    const peers = simPeers('new', 120, () => `127.0.0.1:${addr.port}`);
    const s = await sender();
    try {
      for (const p of peers) await send(s, advertOf(p, 10_000), port);
      for (let i = 0; i < 100 && total < 120; i++) await sleep(100);
    } finally {
      s.close();
    }
    expect(total).toBe(120);
    expect(peak).toBeLessThanOrEqual(4);
    expect((await listed(agent)).filter((p) => p.agent.startsWith('new')).length).toBe(120);
  }, 30_000);
});

describe('a peer that failed its identity check', () => {
  let agent: StartedAgent;
  const port = groupPort();
  beforeAll(async () => {
    agent = await start(port);
  }, 30_000);
  afterAll(async () => {
    await agent?.stop();
  });

  it('stays cooled down when its entry expires and returns, and is not dialled again (regression: 804 checks for 100 peers)', async () => {
    // It points at the agent itself, with a fingerprint that is not the agent's: a mismatch.
    const [liar] = simPeers('liar', 1, () => `127.0.0.1:${agent.port}`);
    const s = await sender();
    try {
      // Advertised until its check failed (the first datagram may beat the agent's socket).
      const failed = (l: { msg: string; peer?: unknown }) => l.msg === 'peer failed its identity check; untrusted for a while' && l.peer === 'liar0';
      for (let i = 0; i < 40 && !agent.logs.some(failed); i++) {
        await send(s, advertOf(liar!, 600), port);
        await sleep(200);
      }
      await agent.waitForLog(failed, 5000);
      await agent.waitForLog((l) => l.msg === 'peer expired' && l.peer === 'liar0', 5000);
      for (let i = 0; i < 3; i++) {
        await send(s, advertOf(liar!, 600), port);
        await sleep(100);
      }
      await agent.waitForLog((l) => String(l.msg).startsWith('peer returned while cooling down') && l.peer === 'liar0', 3000);
      const entry = (await listed(agent)).find((p) => p.agent === 'liar0');
      expect(entry?.coolDownMs).toBeGreaterThan(60_000);
      expect(entry?.coolDownReason).toMatch(/^identity check failed: /);
      await sleep(1000);
      expect(agent.logs.filter((l) => l.msg === 'peer failed its identity check; untrusted for a while' && l.peer === 'liar0')).toHaveLength(1);
      expect((await agent.client().peers()).rejected?.['identity-mismatch']).toBe(1);
    } finally {
      s.close();
    }
  }, 30_000);
});

/** Listens on the group as another host would, keeping what `agent` sends (its name is in every datagram). */
async function listen(port: number, agent = 'watcher'): Promise<{ got: Array<{ at: number; bytes: Buffer }>; close: () => void }> {
  const socket = createSocket({ type: 'udp4', reuseAddr: true });
  const got: Array<{ at: number; bytes: Buffer }> = [];
  const name = Buffer.from(agent);
  socket.on('message', (bytes) => {
    if (bytes.includes(name)) got.push({ at: Date.now(), bytes });
  });
  await new Promise<void>((r) => socket.bind(port, () => r()));
  socket.addMembership('239.255.77.78', '127.0.0.1');
  return { got, close: () => socket.close() };
}
/** A version 2 record carries the endpoints; a heartbeat does not. */
const isRecord = (b: Buffer) => b.includes(Buffer.from('endpoints'));

describe('the advert budget (wire version 2)', () => {
  it('an agent alone advertises every intervalMs; among 100 peers it stretches to ttlMs / 3, sending heartbeats', async () => {
    const port = groupPort();
    const heard = await listen(port);
    // A budget of 1,000 B/s: 100 peers × ~200 B ask for ~20 s, so the ceiling ttlMs / 3 = 1 s binds.
    const agent = await start(port, { intervalMs: 300, ttlMs: 3000, budgetBytesPerSec: 1000 });
    const s = await sender();
    try {
      await agent.waitForLog((l) => l.msg === 'discovery started');
      // Alone: one every 300 ms ± 20 %.
      await sleep(2000);
      const alone = heard.got.filter((g) => g.at > Date.now() - 1500).length;
      expect(alone).toBeGreaterThanOrEqual(3);
      // First a record asking every peer for theirs.
      expect(isRecord(heard.got[0]!.bytes)).toBe(true);
      expect(heard.got[0]!.bytes.includes(Buffer.from('want'))).toBe(true);
      const peers = simPeers('bud', 100, () => '127.0.0.1:1');
      for (const p of peers) await send(s, advertOf(p, 10_000), port);
      await sleep(1500); // the interval already running ends
      const from = heard.got.length;
      const t0 = Date.now();
      await sleep(4000);
      const window = heard.got.slice(from);
      expect((await listed(agent)).filter((p) => p.agent.startsWith('bud')).length).toBe(100);
      // ~1 s apart (0.8–1 s), never further: 4–5 in 4 s, not the 13 of 300 ms.
      expect(window.length, JSON.stringify(window.map((g) => g.at - t0))).toBeGreaterThanOrEqual(4);
      expect(window.length, JSON.stringify(window.map((g) => [g.at - t0, g.bytes.length]))).toBeLessThanOrEqual(6);
      for (let i = 1; i < window.length; i++) expect(window[i]!.at - window[i - 1]!.at).toBeLessThan(1300);
      // Heartbeats (a record every tenth): small.
      const heartbeats = window.filter((g) => !isRecord(g.bytes));
      expect(heartbeats.length).toBeGreaterThanOrEqual(window.length - 1);
      expect(Math.max(...heartbeats.map((g) => g.bytes.length))).toBeLessThan(260);
    } finally {
      s.close();
      heard.close();
      await agent.stop();
    }
  }, 30_000);

  it('a heartbeat of a peer whose record it never saw makes the agent ask for it (want); the record then keeps the peer, refreshed by heartbeats', async () => {
    const port = groupPort();
    const heard = await listen(port);
    const agent = await start(port, { intervalMs: 300, ttlMs: 1500 });
    const s = await sender();
    try {
      await agent.waitForLog((l) => l.msg === 'discovery started');
      const [p] = simPeers('late', 1, () => '127.0.0.1:1');
      const rec = {
        v: 2 as const,
        fleet: FLEET,
        agent: p!.name,
        spiffe: `spiffe://skein.local/agent/${p!.name}`,
        endpoints: [p!.endpoint],
        routines: ['echo'],
        load: 0,
        capacity: 1,
        tlsFingerprint: '00'.repeat(32),
        ttl: 1500,
      };
      const { encodeHeartbeat, recordDigest } = await import('../../agent/discovery/heartbeat.ts');
      const heartbeat = () => {
        p!.seq = nextSeq(p!.seq, Date.now());
        return encodeHeartbeat({ v: 2, fleet: FLEET, agent: p!.name, rd: recordDigest(rec), load: 3, seq: p!.seq, iat: Date.now(), ttl: 1500 }, p!.key);
      };
      const before = heard.got.length;
      await send(s, heartbeat(), port);
      const keyId = Buffer.from(p!.key.keyId);
      for (let i = 0; i < 50 && !heard.got.slice(before).some((g) => g.bytes.includes(keyId)); i++) await sleep(50);
      const request = heard.got.slice(before).find((g) => g.bytes.includes(keyId));
      expect(request, 'a record of the agent asking for the key').toBeDefined();
      expect(isRecord(request!.bytes)).toBe(true);
      // The peer answers with its record; from then on heartbeats alone keep it listed past its TTL.
      p!.seq = nextSeq(p!.seq, Date.now());
      await send(s, encodeAdvert({ ...rec, seq: p!.seq, iat: Date.now() }, p!.key, p!.endorsement), port);
      for (let i = 0; i < 8; i++) {
        await sleep(400);
        await send(s, heartbeat(), port);
      }
      const entry = (await listed(agent)).find((e) => e.agent === 'late0') as { load?: number } | undefined;
      expect(entry).toMatchObject({ load: 3 });
      expect(agent.logs.filter((l) => l.msg === 'peer expired' && l.peer === 'late0')).toHaveLength(0);
      // Silent: dropped within its TTL.
      await agent.waitForLog((l) => l.msg === 'peer expired' && l.peer === 'late0', 2500);
    } finally {
      s.close();
      heard.close();
      await agent.stop();
    }
  }, 30_000);

  it('refuses a ttlMs under 3 × intervalMs at start (exit 2, SKEIN_ERR_CONFIG naming discovery.ttlMs)', async () => {
    const { startMustFail } = await import('../helpers/agent.ts');
    const config = agentConfig(groupPort(), { signingKey: '/nonexistent.key', intervalMs: 2000, ttlMs: 5000 });
    delete config._key;
    const stderr = await startMustFail(config);
    expect(stderr).toContain('SKEIN_ERR_CONFIG');
    expect(stderr).toMatch(/discovery\.ttlMs.*\(5000\) must be at least 3 × discovery\.intervalMs \(2000\)/);
  });
});
