/**
 * Advertisement signing-key rotation with an overlap window, through the binary on loopback
 * multicast. The documented procedure (docs/discovery.md, "Rotating a signing key"):
 *   1. receivers trust both the old and the new key (both pinned to the agent's SPIFFE ID);
 *   2. the agent switches to the new key (config + SIGHUP); its next advert is signed by it
 *      and receivers hand the entry over at once;
 *   3. receivers retire the old key (config + SIGHUP): its adverts are refused from then on.
 * Throughout, each agent keeps the other in its peer table: a poller checks every 50 ms.
 */
import { createSocket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinClient } from '../../agent/client/index.ts';
import { encodeAdvert } from '../../agent/discovery/advert.ts';
import { readPrivateKey } from '../../signing/index.ts';
import { baseConfig, EXAMPLES, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

const GROUP = `239.255.77.78:${40000 + Math.floor(Math.random() * 19000)}`;
const TD = 'rot.test';
let pki: string;
let keys: string;
let alpha: StartedAgent;
let beta: StartedAgent;

const pub = (name: string) => readFileSync(join(keys, `${name}.key.pub`), 'utf8').trim();
const pinned = (key: string, agent: string) => `${pub(key)}@spiffe://${TD}/agent/${agent}`;

function config(name: string, signingKey: string, trustedKeys: string[]): Record<string, unknown> {
  return baseConfig({
    agent: { name, listen: '127.0.0.1:0', stateDir: 'state' },
    tls: { cert: join(pki, `agent-${name}.crt`), key: join(pki, `agent-${name}.key`), ca: join(pki, 'ca.crt'), trustDomain: TD },
    workers: { poolSize: 1 },
    routines: { echo: { file: EXAMPLES } },
    audit: { sink: 'file', path: 'audit.jsonl' },
    authorization: { allow: [{ identities: [`spiffe://${TD}/client/ops`], routines: ['*'] }] },
    discovery: { enabled: true, fleet: 'rot-fleet', signingKey: join(keys, `${signingKey}.key`), trustedKeys, groups: [GROUP], intervalMs: 300, ttlMs: 1200 },
  });
}

async function reload(agent: StartedAgent, next: Record<string, unknown>): Promise<void> {
  const before = agent.logs.filter((l) => l.msg === 'config reloaded').length;
  writeFileSync(agent.configPath, JSON.stringify(next, null, 2), { mode: 0o600 });
  process.kill(agent.pid, 'SIGHUP');
  for (let i = 0; i < 100 && agent.logs.filter((l) => l.msg === 'config reloaded').length === before; i++) await new Promise((r) => setTimeout(r, 50));
  const last = agent.logs.filter((l) => l.msg === 'config reloaded' || String(l.msg).startsWith('config reload refused')).at(-1);
  expect(last?.msg, agent.stderr().slice(-2000)).toBe('config reloaded');
}

const client = (agent: StartedAgent) =>
  new SkeinClient({
    peer: `127.0.0.1:${agent.port}`,
    cert: readFileSync(join(pki, 'client-ops.crt')),
    key: readFileSync(join(pki, 'client-ops.key')),
    ca: readFileSync(join(pki, 'ca.crt')),
    servername: 'localhost',
  });

beforeAll(async () => {
  pki = tempDir();
  keys = tempDir();
  const ok = async (args: string[]) => expect((await runCli(args)).code).toBe(0);
  await ok(['pki', 'init', '--dir', pki, '--trust-domain', TD]);
  await ok(['pki', 'issue', '--dir', pki, '--name', 'ops', '--kind', 'client']);
  for (const n of ['alpha', 'beta']) await ok(['pki', 'issue', '--dir', pki, '--name', n, '--kind', 'agent', '--host', '127.0.0.1']);
  for (const n of ['alpha-old', 'alpha-new', 'beta-key']) await ok(['keygen', '--out', join(keys, `${n}.key`)]);
  // Overlap window open: both of alpha's keys are trusted everywhere.
  const trust = [pinned('alpha-old', 'alpha'), pinned('alpha-new', 'alpha'), pinned('beta-key', 'beta')];
  alpha = await startAgent({ config: config('alpha', 'alpha-old', trust) });
  beta = await startAgent({ config: config('beta', 'beta-key', trust) });
  await beta.waitForLog((l) => l.msg === 'peer discovered' && l.peer === 'alpha', 5000);
  await alpha.waitForLog((l) => l.msg === 'peer discovered' && l.peer === 'beta', 5000);
});
afterAll(async () => {
  await alpha?.stop();
  await beta?.stop();
  await stopAll();
});

describe('signing-key rotation with an overlap window', () => {
  it('peers keep discovering each other while alpha rotates its key and beta retires the old one', async () => {
    const keyIdOf = (name: string) => readPrivateKey(join(keys, `${name}.key`)).keyId;
    const betaClient = client(beta);
    const alphaClient = client(alpha);
    // Poll both peer tables every 50 ms for the whole procedure; any gap is recorded.
    const gaps: string[] = [];
    const keysSeen = new Set<string>();
    let polling = true;
    const poller = (async () => {
      for (let i = 0; i < 1000 && polling; i++) {
        const [b, a] = await Promise.all([betaClient.peers(), alphaClient.peers()]);
        const seenAlpha = b.peers.find((p) => p.agent === 'alpha');
        if (!seenAlpha) gaps.push(`beta lost alpha at poll ${i}`);
        else keysSeen.add(String(seenAlpha.keyId));
        if (!a.peers.some((p) => p.agent === 'beta')) gaps.push(`alpha lost beta at poll ${i}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await new Promise((r) => setTimeout(r, 500));
      const trust = [pinned('alpha-old', 'alpha'), pinned('alpha-new', 'alpha'), pinned('beta-key', 'beta')];
      // 2. alpha switches to the new key.
      await reload(alpha, config('alpha', 'alpha-new', trust));
      await alpha.waitForLog((l) => l.msg === 'discovery signing key rotated' && l.to === keyIdOf('alpha-new'));
      await beta.waitForLog((l) => l.msg === 'peer signing key rotated' && l.peer === 'alpha' && l.keyId === keyIdOf('alpha-new'), 3000);
      // Several advert intervals on the new key, more than a TTL.
      await new Promise((r) => setTimeout(r, 1500));
      // 3. beta retires alpha's old key.
      const retired = [pinned('alpha-new', 'alpha'), pinned('beta-key', 'beta')];
      await reload(beta, config('beta', 'beta-key', retired));
      await reload(alpha, config('alpha', 'alpha-new', retired));
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      polling = false;
      await poller;
      await betaClient.close();
      await alphaClient.close();
    }
    expect(gaps).toEqual([]);
    expect([...keysSeen].sort()).toEqual([keyIdOf('alpha-old'), keyIdOf('alpha-new')].sort());
    // Audited on both sides: alpha's rotation, and beta accepting the new key for alpha.
    const audit = (agent: StartedAgent) =>
      readFileSync(join(agent.dir, 'audit.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit(alpha).find((l) => l.event === 'discovery.key_rotated')).toMatchObject({ schema: 'skein.audit/v1', agent: 'alpha', from: keyIdOf('alpha-old'), to: keyIdOf('alpha-new') });
    expect(audit(beta).find((l) => l.event === 'peer.accepted' && l.keyId === keyIdOf('alpha-new'))).toMatchObject({ peer: 'alpha', rekeyed: true });
    // Nothing of the rotation was mistaken for an impostor.
    expect(beta.logs.filter((l) => l.msg === 'advertisement rejected' && l.reason === 'name-conflict')).toEqual([]);
  }, 30_000);

  it('after retirement an advert signed with the old key is refused and cannot take the entry back', async () => {
    const old = readPrivateKey(join(keys, 'alpha-old.key'));
    const now = Date.now();
    const forged = encodeAdvert(
      {
        v: 1,
        fleet: 'rot-fleet',
        agent: 'alpha',
        spiffe: `spiffe://${TD}/agent/alpha`,
        endpoints: ['127.0.0.1:1'],
        routines: ['echo'],
        load: 0,
        capacity: 1,
        tlsFingerprint: 'ab'.repeat(32),
        seq: now * 1000,
        iat: now,
        ttl: 60_000,
      },
      old,
    );
    const socket = createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    socket.setMulticastInterface('127.0.0.1');
    const [group, port] = GROUP.split(':');
    await new Promise<void>((r) => socket.send(forged, Number(port), group!, () => r()));
    socket.close();
    const c = client(beta);
    try {
      for (let i = 0; i < 40 && !((await c.peers()).rejected?.['unknown-key'] ?? 0); i++) await new Promise((r) => setTimeout(r, 50));
      const answer = await c.peers();
      expect(answer.rejected?.['unknown-key']).toBeGreaterThanOrEqual(1);
      const entry = answer.peers.find((p) => p.agent === 'alpha');
      expect(entry?.keyId).toBe(readPrivateKey(join(keys, 'alpha-new.key')).keyId);
      expect(entry?.endpoints).toEqual([`127.0.0.1:${alpha.port}`]);
    } finally {
      await c.close();
    }
  });

  it('a reload naming an unreadable signing key is refused and the current key keeps signing', async () => {
    const trust = [pinned('alpha-new', 'alpha'), pinned('beta-key', 'beta')];
    const before = alpha.logs.length;
    writeFileSync(alpha.configPath, JSON.stringify(config('alpha', 'no-such-key', trust), null, 2), { mode: 0o600 });
    process.kill(alpha.pid, 'SIGHUP');
    const refused = await alpha.waitForLog((l) => alpha.logs.indexOf(l) >= before && String(l.msg).startsWith('config reload refused'));
    expect(refused).toMatchObject({ code: 'SKEIN_ERR_SIG_KEY_INVALID' });
    expect(String(refused.error)).toContain('no-such-key.key');
    const c = client(beta);
    try {
      await new Promise((r) => setTimeout(r, 800));
      expect((await c.peers()).peers.find((p) => p.agent === 'alpha')?.keyId).toBe(readPrivateKey(join(keys, 'alpha-new.key')).keyId);
    } finally {
      await c.close();
    }
  });
});
