/**
 * Every key a running agent applies live, reloaded through the binary with SIGHUP, one row
 * per key: the reload reports it applied (nothing pending) and its effect shows — new
 * handshakes, a newly trusted advert, a static peer, a plugin, a policy, a log level, strict
 * mode. The rows are checked against the keys the components declare (agent/lifecycle/
 * reloadable.ts), so a key added there needs a row here. Rows run in order on one agent,
 * each on top of the previous one.
 */
import { createSocket, type Socket } from 'node:dgram';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinClient } from '../../agent/client/index.ts';
import { encodeAdvert } from '../../agent/discovery/advert.ts';
import { CALLS_RELOAD_KEYS } from '../../agent/calls/weights.ts';
import { DISCOVERY_RELOAD_KEYS } from '../../agent/discovery/reload.ts';
import { createAdvertVerifier } from '../../agent/discovery/verifier.ts';
import { createLogger, liveLogLevel } from '../../agent/log/index.ts';
import { PIPELINE_RELOAD_KEYS } from '../../agent/plugin-host/live.ts';
import { liveStrictMode } from '../../agent/security/strict.ts';
import { TLS_RELOAD_KEYS } from '../../agent/server/tls-reload.ts';
import { readPrivateKey } from '../../signing/index.ts';
import { baseConfig, DEV_CLIENT, failure, FIXTURES, runCli, startAgent, stopAll, tempDir, type LogLine, type StartedAgent } from '../helpers/agent.ts';

const GROUP = `239.255.77.79:${40000 + Math.floor(Math.random() * 19000)}`;
const FLEET = 'reload-fleet';
let dir: string;
let agent: StartedAgent;
let config: Record<string, any>;
let adverts: Buffer[] = [];
let listener: Socket;

const path = (...p: string[]) => join(dir, ...p);
const pub = (name: string) => readFileSync(path(`${name}.key.pub`), 'utf8').trim();
const ok = async (args: string[]) => {
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`skein ${args.join(' ')}: ${r.stderr}`);
};

/** Writes `config` and sends SIGHUP; returns the reload's outcome line. */
async function hup(): Promise<LogLine> {
  writeFileSync(agent.configPath, JSON.stringify(config, null, 2), { mode: 0o600 });
  const outcome = (l: LogLine) => l.msg === 'config reloaded' || l.msg === 'config reload refused; the running configuration stays';
  const n = agent.logs.filter(outcome).length;
  process.kill(agent.pid, 'SIGHUP');
  for (let i = 0; i < 100 && agent.logs.filter(outcome).length === n; i++) await new Promise((r) => setTimeout(r, 50));
  return agent.logs.filter(outcome).at(-1)!;
}

/** Whether a TLS handshake with the agent succeeds for this client (cert of `name` in `pki`). */
function handshake(pki: string, name: string, opts: { maxVersion?: 'TLSv1.2' } = {}): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(
      {
        host: '127.0.0.1',
        port: agent.port,
        ALPNProtocols: ['h2'],
        cert: readFileSync(join(pki, `client-${name}.crt`)),
        key: readFileSync(join(pki, `client-${name}.key`)),
        ca: readFileSync(path('pki', 'ca.crt')),
        servername: 'localhost',
        checkServerIdentity: () => undefined,
        ...opts,
      },
      () => {
        // TLS 1.3 reports a refused client certificate after the handshake: wait for it.
        s.once('data', () => {});
        setTimeout(() => {
          resolve(!s.destroyed);
          s.destroy();
        }, 200);
      },
    );
    s.on('error', () => resolve(false));
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
  });
}

/** Sends an advertisement signed by `key` (with an optional endorsement) to the group. */
async function advertise(key: string, agentName: string, endorsement?: Uint8Array): Promise<void> {
  const now = Date.now();
  const bytes = encodeAdvert(
    {
      v: 1,
      fleet: FLEET,
      agent: agentName,
      spiffe: `spiffe://skein.local/agent/${agentName}`,
      endpoints: ['127.0.0.1:1'],
      routines: ['echo'],
      load: 0,
      capacity: 1,
      tlsFingerprint: 'ab'.repeat(32),
      seq: now * 1000,
      iat: now,
      ttl: 60_000,
    },
    readPrivateKey(path(`${key}.key`)),
    endorsement ?? null,
  );
  const socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  socket.setMulticastInterface('127.0.0.1');
  const [group, port] = GROUP.split(':');
  await new Promise<void>((r) => socket.send(bytes, Number(port), group!, () => r()));
  socket.close();
}

const client = () =>
  new SkeinClient({
    peer: `127.0.0.1:${agent.port}`,
    cert: readFileSync(path('pki', 'client-dev-client.crt')),
    key: readFileSync(path('pki', 'client-dev-client.key')),
    ca: readFileSync(path('pki', 'ca.crt')),
    servername: 'localhost',
  });

beforeAll(async () => {
  dir = tempDir('skein-reload-');
  await ok(['pki', 'init', '--dir', path('pki')]);
  await ok(['pki', 'issue', '--dir', path('pki'), '--name', 'test', '--kind', 'agent', '--host', '127.0.0.1']);
  await ok(['pki', 'issue', '--dir', path('pki'), '--name', 'dev-client', '--kind', 'client']);
  // A second CA, whose client the agent accepts once tls.ca includes it.
  await ok(['pki', 'init', '--dir', path('pki2'), '--trust-domain', 'other.test']);
  await ok(['pki', 'issue', '--dir', path('pki2'), '--name', 'other', '--kind', 'client']);
  for (const k of ['sign-1', 'sign-2', 'peer-t', 'peer-e', 'root']) await ok(['keygen', '--out', path(`${k}.key`)]);
  await ok([
    'key',
    'endorse',
    '--root',
    path('root.key'),
    '--agent-pub',
    path('peer-e.key.pub'),
    '--spiffe-id',
    'spiffe://skein.local/agent/peer-e',
    '--not-after',
    '2099-01-01T00:00:00Z',
    '--out',
    path('peer-e.endorsement'),
  ]);
  await ok([
    'key',
    'endorse',
    '--root',
    path('root.key'),
    '--agent-pub',
    path('sign-2.key.pub'),
    '--spiffe-id',
    'spiffe://skein.local/agent/test',
    '--not-after',
    '2099-01-01T00:00:00Z',
    '--out',
    path('self.endorsement'),
  ]);
  mkdirSync(path('plugins'));
  copyFileSync(join(FIXTURES, 'plugins', 'closes.ts'), path('plugins', 'closes.ts'));
  mkdirSync(path('moved'));

  // The test listens to the group too: it sees the agent's own adverts.
  listener = createSocket({ type: 'udp4', reuseAddr: true });
  const [group, port] = GROUP.split(':');
  await new Promise<void>((r) => listener.bind(Number(port), group, () => r()));
  listener.addMembership(group!, '127.0.0.1');
  listener.on('message', (m) => adverts.push(m));

  config = baseConfig({
    workers: { poolSize: 1 },
    routines: { echo: { file: join(FIXTURES, '..', '..', 'routines', 'examples.py') }, add: { file: join(FIXTURES, '..', '..', 'routines', 'examples.py') } },
    tls: { cert: path('pki', 'agent-test.crt'), key: path('pki', 'agent-test.key'), ca: path('pki', 'ca.crt') },
    discovery: { enabled: true, fleet: FLEET, signingKey: path('sign-1.key'), trustedKeys: [pub('sign-1')], groups: [GROUP], interface: '127.0.0.1', intervalMs: 300, ttlMs: 60_000 },
  });
  agent = await startAgent({ config });
});
afterAll(async () => {
  listener?.close();
  await agent?.stop();
  await stopAll();
});

interface Row {
  key: string;
  /** What holds before the reload (so the effect is the reload's doing). */
  before?(): Promise<void>;
  change(): void;
  /** The effect, checked after the reload; `from` is the log index before it. */
  effect(from: number): Promise<void>;
  /** Keys this row's config changes besides its own (to stay valid), also applied. */
  alsoApplied?: string[];
}

const tlsReloaded = async (from: number) => {
  const line = await agent.waitForLog((l) => agent.logs.indexOf(l) >= from && l.msg === 'TLS material reloaded', 5000);
  expect(line.trigger).toBe('sighup');
  return line;
};

const ROWS: Row[] = [
  {
    key: 'tls.cert',
    change: () => {
      copyFileSync(path('pki', 'agent-test.crt'), path('moved', 'agent.crt'));
      config.tls.cert = path('moved', 'agent.crt');
    },
    effect: async (from) => void (await tlsReloaded(from)),
  },
  {
    key: 'tls.key',
    change: () => {
      copyFileSync(path('pki', 'agent-test.key'), path('moved', 'agent.key'));
      config.tls.key = path('moved', 'agent.key');
    },
    effect: async (from) => void (await tlsReloaded(from)),
  },
  {
    key: 'tls.ca',
    before: async () => expect(await handshake(path('pki2'), 'other')).toBe(false),
    change: () => {
      writeFileSync(path('moved', 'ca.crt'), readFileSync(path('pki', 'ca.crt'), 'utf8') + readFileSync(path('pki2', 'ca.crt'), 'utf8'));
      config.tls.ca = path('moved', 'ca.crt');
    },
    effect: async (from) => {
      await tlsReloaded(from);
      expect(await handshake(path('pki2'), 'other')).toBe(true);
    },
  },
  {
    key: 'tls.minVersion',
    before: async () => expect(await handshake(path('pki'), 'dev-client', { maxVersion: 'TLSv1.2' })).toBe(false),
    change: () => (config.tls.minVersion = 'TLSv1.2'),
    effect: async (from) => {
      expect((await tlsReloaded(from)).minVersion).toBe('TLSv1.2');
      expect(await handshake(path('pki'), 'dev-client', { maxVersion: 'TLSv1.2' })).toBe(true);
    },
  },
  {
    key: 'tls.trustDomains',
    change: () => (config.tls.trustDomains = ['skein.local', 'extra.test']),
    effect: async (from) => expect((await tlsReloaded(from)).trustDomains).toEqual(['skein.local', 'extra.test']),
  },
  {
    key: 'discovery.signingKey',
    change: () => {
      config.discovery.signingKey = path('sign-2.key');
      config.discovery.trustedKeys = [pub('sign-1'), pub('sign-2')];
    },
    alsoApplied: ['discovery.trustedKeys'],
    effect: async (from) => {
      const line = await agent.waitForLog((l) => agent.logs.indexOf(l) >= from && l.msg === 'discovery signing key rotated', 5000);
      expect(line).toMatchObject({ from: readPrivateKey(path('sign-1.key')).keyId, to: readPrivateKey(path('sign-2.key')).keyId });
    },
  },
  {
    key: 'discovery.trustedKeys',
    before: async () => {
      const from = agent.logs.length;
      await advertise('peer-t', 'peer-t');
      await agent.waitForLog((l) => agent.logs.indexOf(l) >= from && l.msg === 'advertisement rejected' && l.reason === 'unknown-key', 5000);
    },
    change: () => config.discovery.trustedKeys.push(pub('peer-t')),
    effect: async (from) => {
      await advertise('peer-t', 'peer-t');
      await agent.waitForLog((l) => agent.logs.indexOf(l) >= from && l.msg === 'peer discovered' && l.peer === 'peer-t', 5000);
    },
  },
  {
    key: 'discovery.rootKeys',
    change: () => (config.discovery.rootKeys = [pub('root')]),
    effect: async (from) => {
      await advertise('peer-e', 'peer-e', readFileSync(path('peer-e.endorsement')));
      const line = await agent.waitForLog((l) => agent.logs.indexOf(l) >= from && l.msg === 'peer discovered' && l.peer === 'peer-e', 5000);
      expect(line.endorsed).toBe(true);
    },
  },
  {
    key: 'discovery.endorsement',
    change: () => (config.discovery.endorsement = path('self.endorsement')),
    effect: async () => {
      // The agent's next adverts carry its endorsement: a receiver that trusts only the root believes them.
      const verifier = createAdvertVerifier({ fleet: FLEET, trustDomains: ['skein.local'], rootKeys: [pub('root')], perSourceRate: null });
      adverts = [];
      let endorsed = false;
      for (let i = 0; i < 60 && !endorsed; i++) {
        await new Promise((r) => setTimeout(r, 50));
        endorsed = adverts.some((a) => {
          const v = verifier.verify(a, '127.0.0.1');
          return v.ok && v.payload.agent === 'test' && v.endorsed;
        });
      }
      expect(endorsed).toBe(true);
    },
  },
  {
    key: 'discovery.static',
    change: () => (config.discovery.static = [{ agent: 'static-1', endpoint: '127.0.0.1:1', spiffe: 'spiffe://skein.local/agent/static-1', sha256: 'cd'.repeat(32), routines: ['echo'] }]),
    effect: async () => {
      const c = client();
      try {
        expect((await c.peers()).peers.find((p) => p.agent === 'static-1')).toMatchObject({ static: true, endpoints: ['127.0.0.1:1'] });
      } finally {
        await c.close();
      }
    },
  },
  {
    key: 'plugins',
    change: () => (config.plugins = { dir: path('plugins'), enabled: [{ name: 'closes' }] }),
    effect: async (from) => void (await agent.waitForLog((l) => agent.logs.indexOf(l) >= from && l.msg === 'plugin loaded' && l.plugin === 'closes', 5000)),
  },
  {
    key: 'authorization',
    before: async () => {
      const c = client();
      try {
        expect(await c.dispatch('add', { args: [1, 2] })).toBe(3);
      } finally {
        await c.close();
      }
    },
    change: () => (config.authorization = { allow: [{ identities: [DEV_CLIENT], routines: ['echo'] }] }),
    effect: async () => {
      const c = client();
      try {
        expect(await c.dispatch('echo', { args: ['ok'] })).toBe('ok');
        expect((await failure(c.dispatch('add', { args: [1, 2] }))).code).toBe('SKEIN_ERR_FORBIDDEN');
      } finally {
        await c.close();
      }
    },
  },
  {
    key: 'calls.weights',
    // How the new weights share a busy routine is test/e2e/priorities.test.ts's; here: the
    // key is applied, and a malformed pattern in it now refuses the reload (naming the key)
    // instead of waiting for a restart to fail.
    change: () => (config.calls = { ...config.calls, weights: [{ identities: ['spiffe://skein.local/client/*'], weight: 2 }] }),
    effect: async () => {
      config.calls.weights = [{ identities: ['spiffe://skein.local/**/x'], weight: 2 }];
      const refused = await hup();
      expect(refused).toMatchObject({ msg: 'config reload refused; the running configuration stays', code: 'SKEIN_ERR_CONFIG' });
      expect(String(refused.error)).toContain('calls.weights[0].identities[0]');
      config.calls.weights = [{ identities: ['spiffe://skein.local/client/*'], weight: 2 }];
    },
  },
  {
    key: 'log.level',
    change: () => (config.log.level = 'debug'),
    effect: async (from) => {
      const c = client();
      try {
        await c.dispatch('echo', { args: ['x'] });
      } finally {
        await c.close();
      }
      await agent.waitForLog((l) => agent.logs.indexOf(l) >= from && l.level === 'debug' && l.msg === 'dispatched', 5000);
    },
  },
  {
    key: 'security.strict',
    // Strict mode refuses TLS 1.2 and unsigned plugin files: the row puts both back first.
    change: () => {
      config.security = { strict: true };
      config.tls.minVersion = 'TLSv1.3';
      config.plugins = { enabled: [] };
    },
    alsoApplied: ['tls.minVersion', 'plugins.dir', 'plugins.enabled'],
    effect: async () => {
      config.tls.minVersion = 'TLSv1.2';
      const refused = await hup();
      expect(refused).toMatchObject({ msg: 'config reload refused; the running configuration stays', code: 'SKEIN_ERR_STRICT' });
      config.tls.minVersion = 'TLSv1.3';
    },
  },
];

describe('SIGHUP reloads every live key', () => {
  it('the rows cover exactly the keys the components declare', () => {
    const log = createLogger({ level: 'error', write: () => {} });
    const declared = [...TLS_RELOAD_KEYS, ...DISCOVERY_RELOAD_KEYS, ...PIPELINE_RELOAD_KEYS, ...CALLS_RELOAD_KEYS, ...liveLogLevel(log).reloadKeys, ...liveStrictMode.reloadKeys];
    expect(ROWS.map((r) => r.key).sort()).toEqual([...declared].sort());
  });

  it.each(ROWS.map((r) => [r.key, r] as const))('%s', async (key, row) => {
    await row.before?.();
    row.change();
    const from = agent.logs.length;
    const line = await hup();
    expect(line, agent.stderr().slice(-3000)).toMatchObject({ msg: 'config reloaded', pending: [] });
    const applied = line.applied as string[];
    expect(
      applied.some((k) => k === key || k.startsWith(`${key}.`)),
      JSON.stringify(applied),
    ).toBe(true);
    const others = applied.filter((k) => !(k === key || k.startsWith(`${key}.`)));
    expect(others.sort()).toEqual([...(row.alsoApplied ?? [])].sort());
    await row.effect(from);
  });
});
