/**
 * The client pool across two real agents of one fleet PKI: least-loaded choice, identity
 * pinning (a peer presenting another certificate than advertised gets nothing), failover on
 * connection failures, and no second attempt for a call that may have reached a routine.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerPool, type PeerEndpoint } from '../../agent/client/pool.ts';
import { describeCertificate } from '../../agent/pki/index.ts';
import { baseConfig, FIXTURES, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

const FIX = join(FIXTURES, 'routines.py');
let pki: string;
const agents: Record<string, StartedAgent> = {};
const peers: Record<string, PeerEndpoint> = {};

async function fleetAgent(name: string): Promise<void> {
  expect((await runCli(['pki', 'issue', '--dir', pki, '--name', name, '--kind', 'agent', '--host', '127.0.0.1'])).code).toBe(0);
  const cert = join(pki, `agent-${name}.crt`);
  const agent = await startAgent({
    config: baseConfig({
      agent: { name, listen: '127.0.0.1:0', stateDir: 'state' },
      tls: { cert, key: join(pki, `agent-${name}.key`), ca: join(pki, 'ca.crt') },
      workers: { poolSize: 1 },
      routines: { mark: { file: FIX }, slow_pid: { file: FIX }, mark_slow: { file: FIX } },
      authorization: { allow: [{ identities: ['spiffe://fleet.test/client/caller'], routines: ['*'] }] },
    }),
  });
  agents[name] = agent;
  peers[name] = {
    agent: name,
    spiffe: `spiffe://fleet.test/agent/${name}`,
    endpoints: [`127.0.0.1:${agent.port}`],
    tlsFingerprint: describeCertificate(readFileSync(cert, 'utf8')).sha256,
    routines: ['echo', 'add', 'mark', 'slow_pid', 'mark_slow'],
    load: 0,
    capacity: 1,
  };
}

beforeAll(async () => {
  pki = tempDir();
  expect((await runCli(['pki', 'init', '--dir', pki, '--trust-domain', 'fleet.test'])).code).toBe(0);
  expect((await runCli(['pki', 'issue', '--dir', pki, '--name', 'caller', '--kind', 'client'])).code).toBe(0);
  await fleetAgent('alpha');
  await fleetAgent('beta');
});
afterAll(async () => {
  for (const a of Object.values(agents)) await a.stop();
  await stopAll();
});

const creds = () => ({ cert: readFileSync(join(pki, 'client-caller.crt')), key: readFileSync(join(pki, 'client-caller.key')), ca: readFileSync(join(pki, 'ca.crt')) });

describe('choosing a peer', () => {
  it('prefers the least-loaded peer offering the routine', async () => {
    const pool = new PeerPool({
      ...creds(),
      peers: () => [
        { ...peers.alpha!, load: 1 },
        { ...peers.beta!, load: 0 },
      ],
    });
    try {
      const { result, peer } = await pool.dispatch('add', { args: [2, 3] });
      expect(result).toBe(5);
      expect(peer.agent).toBe('beta');
      await expect(pool.dispatch('nope')).rejects.toMatchObject({ code: 'SKEIN_ERR_NO_PEERS' });
    } finally {
      await pool.close();
    }
  });
});

describe('identity pinning', () => {
  it('a peer presenting another certificate than advertised is refused before any request; the call fails over', async () => {
    // An advertisement that claims alpha's identity but points at beta's endpoint.
    const impostor: PeerEndpoint = { ...peers.alpha!, agent: 'impostor', endpoints: peers.beta!.endpoints, load: 0 };
    const untrusted: string[] = [];
    const pool = new PeerPool({ ...creds(), peers: () => [impostor, { ...peers.alpha!, load: 1 }], onUntrusted: (p, err) => untrusted.push(`${p.agent}:${err.code}`) });
    try {
      const { result, peer } = await pool.dispatch('mark', { args: ['pinned-call'] });
      expect(result).toBe('pinned-call');
      expect(peer.agent).toBe('alpha');
      expect(untrusted).toEqual(['impostor:SKEIN_ERR_PEER_IDENTITY']);
      await agents.alpha!.waitForLog((l) => String(l.line) === 'MARK:pinned-call');
      // beta completed a handshake but received no request.
      await new Promise((r) => setTimeout(r, 200));
      expect(agents.beta!.logs.some((l) => String(l.line).includes('pinned-call'))).toBe(false);
      // The impostor is skipped afterwards.
      expect((await pool.dispatch('add', { args: [1, 1] })).peer.agent).toBe('alpha');
    } finally {
      await pool.close();
    }
  });
});

describe('failover', () => {
  it('a dead endpoint moves on to the next peer', async () => {
    const dead: PeerEndpoint = { ...peers.beta!, agent: 'dead', endpoints: ['127.0.0.1:1'], load: 0 };
    const pool = new PeerPool({ ...creds(), peers: () => [dead, { ...peers.alpha!, load: 1 }] });
    try {
      expect((await pool.dispatch('echo', { args: ['x'] })).peer.agent).toBe('alpha');
    } finally {
      await pool.close();
    }
  });

  it('a call that may have reached a routine is not sent twice unless the routine is idempotent', async () => {
    await fleetAgent('gamma');
    const pool = new PeerPool({
      ...creds(),
      peers: () => [
        { ...peers.gamma!, load: 0 },
        { ...peers.alpha!, load: 1 },
      ],
    });
    try {
      const call = pool.dispatch('mark_slow', { args: ['maybe-ran', 5] }).catch((e) => e);
      await agents.gamma!.waitForLog((l) => String(l.line) === 'MARK:maybe-ran');
      await agents.gamma!.stop('SIGKILL'); // the connection dies with the call in flight
      const err = await call;
      expect(err.code).toBe('SKEIN_ERR_TRANSPORT');
      expect(err.message).toMatch(/not retried on another peer: the call may have reached routine "mark_slow"/);
      await new Promise((r) => setTimeout(r, 200));
      expect(agents.alpha!.logs.some((l) => String(l.line).includes('maybe-ran'))).toBe(false);
    } finally {
      await pool.close();
    }
    // A routine declared idempotent is retried on the next peer after the same kind of failure.
    const idempotent = new PeerPool({
      ...creds(),
      peers: () => [
        { ...peers.gamma!, load: 0 },
        { ...peers.alpha!, load: 1 },
      ],
      idempotent: (r) => r === 'echo',
    });
    try {
      expect((await idempotent.dispatch('echo', { args: ['again'] })).peer.agent).toBe('alpha');
    } finally {
      await idempotent.close();
    }
  });
});
