/**
 * Discovery through the binary on loopback multicast: two agents of one fleet (shared PKI,
 * Ed25519 advertisement keys in each other's trust store) find each other, `skein dispatch
 * --discover` runs a routine on the peer that offers it, a stopped agent's goodbye removes it
 * at once, and a SIGKILLed one disappears after its TTL. Traffic stays on 127.0.0.1.
 */
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSocket } from 'node:dgram';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { encodeAdvert } from '../../agent/discovery/advert.ts';
import { describeCertificate } from '../../agent/pki/index.ts';
import { readPrivateKey } from '../../signing/index.ts';
import { spawnSync } from 'node:child_process';
import { baseConfig, BINARY, EXAMPLES, FIXTURES, runCli, startAgent, startMustFail, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

const FIX = join(FIXTURES, 'routines.py');
const GROUP = `239.255.77.77:${40000 + Math.floor(Math.random() * 19000)}`;
let pki: string;
let keys: string;
/** The client every test dials with (`client-ops` of the fleet CA). */
const OPS = 'spiffe://fleet.test/client/ops';

/** A fleet member's config: its certificate from the fleet CA, its advertisement key, the shared group. */
function fleetConfigOf(name: string, trusted: string[], extra: Record<string, unknown> = {}, routines: Record<string, unknown> = { echo: { file: EXAMPLES } }): Record<string, unknown> {
  if (!existsSync(join(pki, `agent-${name}.crt`))) {
    const r = spawnSync(BINARY, ['pki', 'issue', '--dir', pki, '--name', name, '--kind', 'agent', '--host', '127.0.0.1'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`pki issue ${name}: ${r.stderr}`);
  }
  return {
    ...baseConfig({
      agent: { name, listen: '127.0.0.1:0', stateDir: 'state' },
      tls: { cert: join(pki, `agent-${name}.crt`), key: join(pki, `agent-${name}.key`), ca: join(pki, 'ca.crt'), trustDomain: 'fleet.test' },
      workers: { poolSize: 1 },
      authorization: { allow: [{ identities: [OPS], routines: ['*'] }] },
      discovery: { enabled: true, fleet: 'test-fleet', signingKey: join(keys, `${name}.key`), trustedKeys: trusted, groups: [GROUP], intervalMs: 300, ttlMs: 1500, ...extra },
    }),
    routines,
  };
}

async function fleetMember(name: string, routines: Record<string, unknown>, trusted: string[], extra: Record<string, unknown> = {}): Promise<StartedAgent> {
  return startAgent({ config: fleetConfigOf(name, trusted, extra, routines) });
}

/** Sends datagrams to the fleet's multicast group on loopback, as a sender outside the agents would. */
async function sendToGroup(...datagrams: Uint8Array[]): Promise<void> {
  const socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  socket.setMulticastInterface('127.0.0.1');
  const [group, port] = GROUP.split(':');
  for (const bytes of datagrams) await new Promise<void>((r) => socket.send(bytes, Number(port), group!, () => r()));
  socket.close();
}

const pub = (name: string) => readFileSync(join(keys, `${name}.key.pub`), 'utf8').trim();
const clientFlags = () => ['--cert', join(pki, 'client-ops.crt'), '--key', join(pki, 'client-ops.key'), '--ca', join(pki, 'ca.crt')];

let alpha: StartedAgent;
let beta: StartedAgent;

beforeAll(async () => {
  pki = tempDir();
  keys = tempDir();
  expect((await runCli(['pki', 'init', '--dir', pki, '--trust-domain', 'fleet.test'])).code).toBe(0);
  expect((await runCli(['pki', 'issue', '--dir', pki, '--name', 'ops', '--kind', 'client'])).code).toBe(0);
  for (const n of ['alpha', 'beta', 'gamma']) expect((await runCli(['keygen', '--out', join(keys, `${n}.key`)])).code).toBe(0);
  const trusted = [`${pub('alpha')}@spiffe://fleet.test/agent/alpha`, `${pub('beta')}@spiffe://fleet.test/agent/beta`, `${pub('gamma')}@spiffe://fleet.test/agent/gamma`];
  // alpha offers echo only; beta also offers mark, so --discover of mark must land on beta.
  alpha = await fleetMember('alpha', { echo: { file: EXAMPLES } }, trusted);
  beta = await fleetMember('beta', { echo: { file: EXAMPLES }, mark: { file: FIX } }, trusted);
});
afterAll(async () => {
  await alpha?.stop();
  await beta?.stop();
  await stopAll();
});

describe('discovery on loopback multicast', () => {
  it('two agents discover each other within 2 s', async () => {
    const seen = Date.now();
    await alpha.waitForLog((l) => l.msg === 'peer discovered' && l.peer === 'beta', 2000);
    await beta.waitForLog((l) => l.msg === 'peer discovered' && l.peer === 'alpha', 2000);
    expect(Date.now() - seen).toBeLessThan(2000);
  });

  it('logs its groups, interface and advertised endpoints at start, and that each endpoint reaches it', async () => {
    const started = await alpha.waitForLog((l) => l.msg === 'discovery started');
    expect(started).toMatchObject({ groups: [GROUP], interface: '127.0.0.1', advertise: [`127.0.0.1:${alpha.port}`] });
    expect(await alpha.waitForLog((l) => l.msg === 'advertised endpoint reaches this agent')).toMatchObject({ endpoint: `127.0.0.1:${alpha.port}` });
    expect(alpha.logs.some((l) => String(l.msg).startsWith('discovery.interface is the loopback interface'))).toBe(false);
  });

  it('warns, naming discovery.advertise, when an advertised endpoint leads elsewhere (here: beta)', async () => {
    // An agent of its own (key and name unknown to alpha and beta), so no other test sees it.
    expect((await runCli(['keygen', '--out', join(keys, 'stray.key')])).code).toBe(0);
    const stray = await fleetMember('stray', { echo: { file: EXAMPLES } }, [`${pub('stray')}@spiffe://fleet.test/agent/stray`], { advertise: [`127.0.0.1:${beta.port}`] });
    try {
      const warning = await stray.waitForLog((l) => String(l.msg).startsWith('an advertised endpoint does not reach this agent'));
      expect(warning).toMatchObject({
        level: 'warn',
        endpoint: `127.0.0.1:${beta.port}`,
        reason: expect.stringMatching(/presented spiffe:\/\/fleet\.test\/agent\/beta .*not the advertised spiffe:\/\/fleet\.test\/agent\/stray/),
      });
      expect(String(warning.msg)).toContain('discovery.advertise');
    } finally {
      await stray.stop();
    }
  });

  it('skein peers lists the verified peer with its identity, endpoints and routines', async () => {
    const r = await runCli(['peers', '--peer', `127.0.0.1:${alpha.port}`, ...clientFlags(), '--json']);
    expect(r.code).toBe(0);
    const answer = JSON.parse(r.stdout);
    expect(answer.enabled).toBe(true);
    const peer = answer.peers.find((p: { agent: string }) => p.agent === 'beta');
    expect(peer).toMatchObject({ spiffe: 'spiffe://fleet.test/agent/beta', endpoints: [`127.0.0.1:${beta.port}`], routines: ['echo', 'mark'] });
    expect(peer.tlsFingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect(answer.peers.some((p: { agent: string }) => p.agent === 'alpha')).toBe(false); // not itself
    const text = await runCli(['peers', '--peer', `127.0.0.1:${alpha.port}`, ...clientFlags()]);
    expect(text.stdout).toMatch(/^AGENT\s+SPIFFE ID\s+ENDPOINTS\s+ROUTINES\s+LOAD\s+SOURCE\s+AGE/);
  });

  it('dispatch --discover runs the routine on the peer that offers it', async () => {
    const r = await runCli(['dispatch', 'mark', '--args', '["via-discovery"]', '--discover', '--json', '--peer', `127.0.0.1:${alpha.port}`, ...clientFlags()]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ result: 'via-discovery', peer: 'beta' });
    await beta.waitForLog((l) => String(l.line) === 'MARK:via-discovery');
  });

  it('refuses to start with an advertisement key readable by group or others, naming the fix', async () => {
    const loose = join(keys, 'loose.key');
    expect((await runCli(['keygen', '--out', loose])).code).toBe(0);
    chmodSync(loose, 0o644);
    const stderr = await startMustFail({
      ...baseConfig({ discovery: { enabled: true, fleet: 'test-fleet', signingKey: loose, trustedKeys: [pub('alpha')], groups: [GROUP] } }),
    });
    expect(stderr).toMatch(/error \[SKEIN_ERR_SIG_KEY_PERMISSIONS\]: .*loose\.key.*0644.*chmod 600/);
  });

  it('a group this host cannot join stops start-up, exit 2, naming discovery.groups, the group, the interface and the step', async () => {
    const stderr = await startMustFail({
      ...baseConfig({ discovery: { enabled: true, fleet: 'test-fleet', signingKey: join(keys, 'alpha.key'), trustedKeys: [pub('beta')], groups: ['239.255.77.78:47778'], interface: 'no-such-if0' } }),
    });
    expect(stderr).toContain(
      'error [SKEIN_ERR_CONFIG]: config key "discovery.groups": multicast group 239.255.77.78:47778 is unavailable on interface no-such-if0 (interface failed): interface "no-such-if0" has no IPv4 address',
    );
  });

  it("a trusted key cannot advertise under another agent's name (regression: name hijack)", async () => {
    // gamma's key is trusted, pinned to spiffe://fleet.test/agent/gamma. It claims the name "beta".
    const key = readPrivateKey(join(keys, 'gamma.key'));
    const claim = (extra: Record<string, unknown>) =>
      encodeAdvert(
        {
          v: 1,
          fleet: 'test-fleet',
          agent: 'beta',
          spiffe: 'spiffe://fleet.test/agent/gamma',
          endpoints: ['127.0.0.1:1'],
          routines: ['mark'],
          load: 0,
          capacity: 100,
          tlsFingerprint: 'ab'.repeat(32),
          seq: Date.now(),
          iat: Date.now(),
          ttl: 60_000,
          ...extra,
        },
        key,
      );
    const forged = claim({});
    const goodbye = claim({ seq: Date.now() + 1, goodbye: true });
    await sendToGroup(forged, goodbye);
    await alpha.waitForLog((l) => l.msg === 'advertisement rejected' && l.reason === 'name-mismatch', 3000);
    const answer = JSON.parse((await runCli(['peers', '--peer', `127.0.0.1:${alpha.port}`, ...clientFlags(), '--json'])).stdout);
    expect(answer.rejected['name-mismatch']).toBeGreaterThanOrEqual(2);
    const beta = answer.peers.find((p: { agent: string }) => p.agent === 'beta');
    expect(beta.spiffe).toBe('spiffe://fleet.test/agent/beta');
    expect(beta.endpoints).not.toContain('127.0.0.1:1');
  });

  it('static peers (no multicast) are pinned on connect like discovered ones', async () => {
    const betaSha = describeCertificate(readFileSync(join(pki, 'agent-beta.crt'), 'utf8')).sha256;
    expect((await runCli(['pki', 'issue', '--dir', pki, '--name', 'solo', '--kind', 'agent', '--host', '127.0.0.1'])).code).toBe(0);
    const solo = await startAgent({
      config: {
        ...baseConfig({
          agent: { name: 'solo', listen: '127.0.0.1:0', stateDir: 'state' },
          tls: { cert: join(pki, 'agent-solo.crt'), key: join(pki, 'agent-solo.key'), ca: join(pki, 'ca.crt'), trustDomain: 'fleet.test' },
          workers: { poolSize: 1 },
          authorization: { allow: [{ identities: [OPS], routines: ['*'] }] },
          discovery: {
            enabled: true,
            groups: [],
            static: [
              // Claims beta's identity but points at alpha: refused on connect, never sent a call.
              { agent: 'liar', endpoint: `127.0.0.1:${alpha.port}`, spiffe: 'spiffe://fleet.test/agent/beta', sha256: betaSha, routines: ['mark'] },
              { agent: 'beta', endpoint: `127.0.0.1:${beta.port}`, spiffe: 'spiffe://fleet.test/agent/beta', sha256: betaSha, routines: ['mark'] },
            ],
          },
        }),
        routines: { echo: { file: EXAMPLES } },
      },
    });
    try {
      for (let i = 0; i < 2; i++) {
        const r = await runCli(['dispatch', 'mark', '--args', [`["static-${i}"]`][0]!, '--discover', '--json', '--peer', `127.0.0.1:${solo.port}`, ...clientFlags()]);
        expect(r.stderr).toBe('');
        expect(JSON.parse(r.stdout)).toEqual({ result: `static-${i}`, peer: 'beta' });
      }
      expect(alpha.logs.some((l) => String(l.line).startsWith('MARK:static'))).toBe(false);
      const listed = JSON.parse((await runCli(['peers', '--peer', `127.0.0.1:${solo.port}`, ...clientFlags(), '--json'])).stdout);
      expect(listed.peers.map((p: { agent: string; static?: boolean }) => [p.agent, p.static])).toEqual([
        ['liar', true],
        ['beta', true],
      ]);
    } finally {
      await solo.stop();
    }
  });

  it('a key endorsed by a fleet root is believed for its SPIFFE ID only', async () => {
    const root = join(keys, 'root.key');
    expect((await runCli(['keygen', '--out', root])).code).toBe(0);
    for (const n of ['eta', 'theta', 'iota']) if (!existsSync(join(keys, `${n}.key`))) expect((await runCli(['keygen', '--out', join(keys, `${n}.key`)])).code).toBe(0);
    const notAfter = new Date(Date.now() + 3_600_000).toISOString();
    const endorse = (name: string, spiffe: string) =>
      runCli(['key', 'endorse', '--root', root, '--agent-pub', `${join(keys, name)}.key.pub`, '--spiffe-id', spiffe, '--not-after', notAfter, '--out', join(keys, `${name}.endorsement`)]);
    expect((await endorse('theta', 'spiffe://fleet.test/agent/theta')).code).toBe(0);
    // iota's endorsement names another SPIFFE ID than its certificate (and adverts) carry.
    expect((await endorse('iota', 'spiffe://fleet.test/agent/someone-else')).code).toBe(0);
    const rootOnly = { trustedKeys: [], rootKeys: [pub('root')] };
    const eta = await fleetMember('eta', { echo: { file: EXAMPLES } }, [], rootOnly);
    const theta = await fleetMember('theta', { echo: { file: EXAMPLES } }, [], { ...rootOnly, endorsement: join(keys, 'theta.endorsement') });
    // An agent refuses to start with an endorsement for another SPIFFE ID (skein validate too).
    const refused = await startMustFail(fleetConfigOf('iota', [], { ...rootOnly, endorsement: join(keys, 'iota.endorsement') }));
    expect(refused).toMatch(/discovery\.endorsement .*iota\.endorsement is for spiffe:\/\/fleet\.test\/agent\/someone-else, this agent is spiffe:\/\/fleet\.test\/agent\/iota/);
    // What a peer does with such an advert anyway (a forged or misconfigured sender): refused.
    const forged = encodeAdvert(
      {
        v: 1,
        fleet: 'test-fleet',
        agent: 'iota',
        spiffe: 'spiffe://fleet.test/agent/iota',
        endpoints: ['127.0.0.1:1'],
        routines: ['echo'],
        load: 0,
        capacity: 1,
        tlsFingerprint: 'ab'.repeat(32),
        seq: Date.now(),
        iat: Date.now(),
        ttl: 60_000,
      },
      readPrivateKey(join(keys, 'iota.key')),
      readFileSync(join(keys, 'iota.endorsement')),
    );
    await sendToGroup(forged);
    try {
      const found = await eta.waitForLog((l) => l.msg === 'peer discovered' && l.peer === 'theta', 5000);
      expect(found.endorsed).toBe(true);
      await eta.waitForLog((l) => l.msg === 'advertisement rejected' && (l.reason === 'endorsement-mismatch' || l.reason === 'spiffe-mismatch'), 5000);
      expect(eta.logs.some((l) => l.msg === 'peer discovered' && l.peer === 'iota')).toBe(false);
    } finally {
      await Promise.all([eta.stop(), theta.stop()]);
    }
  });

  it("a stopped agent's goodbye removes it at once; a SIGKILLed one after its TTL", async () => {
    const gamma = await fleetMember('gamma', { echo: { file: EXAMPLES } }, [pub('alpha')]);
    // (The 2 s discovery bound is asserted above; here a loaded CI machine gets slack.)
    await alpha.waitForLog((l) => l.msg === 'peer discovered' && l.peer === 'gamma', 5000);
    await gamma.stop('SIGTERM');
    await alpha.waitForLog((l) => l.msg === 'peer said goodbye' && l.peer === 'gamma', 5000);

    const delta = await fleetMember('gamma', { echo: { file: EXAMPLES } }, [pub('alpha')]);
    await alpha.waitForLog((l) => l.msg === 'peer discovered' && l.peer === 'gamma' && alpha.logs.filter((x) => x.msg === 'peer discovered' && x.peer === 'gamma').length === 2, 5000);
    const killed = Date.now();
    await delta.stop('SIGKILL');
    await alpha.waitForLog((l) => l.msg === 'peer expired' && l.peer === 'gamma', 4000);
    expect(Date.now() - killed).toBeGreaterThanOrEqual(1000); // not before its TTL (1.5 s, minus what had passed)
  });

  it('a peer its identity check cannot reach is not put on cool-down like an impostor (checked again later)', async () => {
    const before = JSON.parse((await runCli(['peers', '--peer', `127.0.0.1:${alpha.port}`, ...clientFlags(), '--json'])).stdout).rejected['identity-mismatch'] ?? 0;
    // gamma advertises an endpoint nothing listens on (port 1): down, not someone else.
    const mark = alpha.logs.length;
    const since = (l: (typeof alpha.logs)[number]) => alpha.logs.indexOf(l) >= mark;
    const down = await fleetMember('gamma', { echo: { file: EXAMPLES } }, [`${pub('gamma')}@spiffe://fleet.test/agent/gamma`], { advertise: ['127.0.0.1:1'] });
    try {
      const line = await alpha.waitForLog((l) => since(l) && String(l.msg).startsWith('peer unreachable for its identity check') && l.peer === 'gamma', 5000);
      expect(line).toMatchObject({ level: 'info', endpoint: '127.0.0.1:1', retryInMs: 2000 });
      const answer = JSON.parse((await runCli(['peers', '--peer', `127.0.0.1:${alpha.port}`, ...clientFlags(), '--json'])).stdout);
      expect(answer.peers.find((p: { agent: string }) => p.agent === 'gamma')).toMatchObject({ coolDownMs: 0 });
      expect(answer.rejected['identity-mismatch'] ?? 0).toBe(before);
      expect(alpha.logs.some((l) => l.msg === 'peer failed its identity check; untrusted for a while' && l.peer === 'gamma')).toBe(false);
      // With its next advertisements it is dialled again, backing off.
      const again = await alpha.waitForLog((l) => since(l) && String(l.msg).startsWith('peer unreachable for its identity check') && l.peer === 'gamma' && l.retryInMs === 4000, 6000);
      expect(again).toBeDefined();
    } finally {
      await down.stop();
    }
  });

  it('a peer that accepts the connection but never finishes the TLS handshake is unreachable, not an impostor (regression: 5-minute cool-down)', async () => {
    // gamma's endpoint: a TCP listener that accepts and says nothing (an agent too busy to answer).
    const held: Socket[] = [];
    const mute = createServer((s) => held.push(s.on('error', () => undefined)));
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
    const endpoint = `127.0.0.1:${(mute.address() as AddressInfo).port}`;
    const mark = alpha.logs.length;
    const since = (l: (typeof alpha.logs)[number]) => alpha.logs.indexOf(l) >= mark;
    const slow = await fleetMember('gamma', { echo: { file: EXAMPLES } }, [`${pub('gamma')}@spiffe://fleet.test/agent/gamma`], { advertise: [endpoint] });
    try {
      const line = await alpha.waitForLog((l) => since(l) && String(l.msg).startsWith('peer unreachable for its identity check') && l.peer === 'gamma', 10_000);
      expect(line).toMatchObject({ level: 'info', endpoint, reason: `${endpoint}: no TLS handshake within 3000 ms`, retryInMs: 2000 });
      expect(held.length).toBeGreaterThan(0);
      const answer = JSON.parse((await runCli(['peers', '--peer', `127.0.0.1:${alpha.port}`, ...clientFlags(), '--json'])).stdout);
      expect(answer.peers.find((p: { agent: string }) => p.agent === 'gamma')).toMatchObject({ coolDownMs: 0 });
      expect(alpha.logs.some((l) => since(l) && l.msg === 'peer failed its identity check; untrusted for a while' && l.peer === 'gamma')).toBe(false);
    } finally {
      await slow.stop();
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => mute.close(() => resolve()));
    }
  });

  // Last: gamma stays on cool-down for minutes afterwards.
  it('skein peers shows a peer that failed its identity check as cooling down, with the reason', async () => {
    const liar = await fleetMember('gamma', { echo: { file: EXAMPLES } }, [`${pub('gamma')}@spiffe://fleet.test/agent/gamma`], { advertise: [`127.0.0.1:${beta.port}`] });
    try {
      await alpha.waitForLog((l) => l.msg === 'peer failed its identity check; untrusted for a while' && l.peer === 'gamma', 5000);
      const r = await runCli(['peers', '--peer', `127.0.0.1:${alpha.port}`, ...clientFlags()]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^AGENT +SPIFFE ID +ENDPOINTS +ROUTINES +LOAD +SOURCE +AGE +STATUS$/m);
      expect(r.stdout).toMatch(/^beta .* multicast +[\d.]+s +ok$/m);
      expect(r.stdout, r.stdout).toMatch(/^gamma .* cool-down (5m00s|4m5\ds)$/m);
      expect(r.stdout).toMatch(/^beta .* ok$/m);
      expect(r.stdout).toMatch(
        new RegExp(`not used while cooling down:\\n {2}gamma \\((5m00s|4m5\\ds) left\\): identity check failed: 127\\.0\\.0\\.1:${beta.port} presented spiffe://fleet\\.test/agent/beta`),
      );
      const json = JSON.parse((await runCli(['peers', '--json', '--peer', `127.0.0.1:${alpha.port}`, ...clientFlags()])).stdout) as { peers: Array<Record<string, unknown>> };
      expect(json.peers.find((p) => p.agent === 'gamma')).toMatchObject({ coolDownMs: expect.any(Number), coolDownReason: expect.stringMatching(/^identity check failed: /) });
    } finally {
      await liar.stop();
    }
  });
});
