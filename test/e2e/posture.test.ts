/**
 * The posture warning through the binary: an agent listening on 0.0.0.0 without client
 * authentication warns at start (the hourly repeat is tested in test/unit/posture.test.ts
 * with an injected timer: the binary has no knob to shorten it), and the admin /healthz
 * reports its posture; a loopback agent and an off-host mTLS agent do not warn. Tests talk
 * to every agent on 127.0.0.1 only.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { baseConfig, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

afterAll(stopAll);

const OFF_HOST = { agent: { name: 'posture', listen: '0.0.0.0:0', stateDir: 'state' } };
const warnings = (a: StartedAgent) => a.logs.filter((l) => l.msg === 'INSECURE POSTURE');

async function healthz(a: StartedAgent): Promise<Record<string, any>> {
  const line = await a.waitForLog((l) => l.msg === 'admin listening');
  const res = await fetch(`http://${String(line.address)}/healthz`);
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, any>;
}

/** A plugin folder with one unsigned plugin that has an authenticate hook (and no authorize). */
function tokenPluginDir(): string {
  const dir = join(tempDir(), 'plugins');
  mkdirSync(dir);
  writeFileSync(join(dir, 'token-only.ts'), "export default { name: 'token-only', version: '1.0.0', setup: () => ({ authenticate: () => ({ outcome: 'skip' }) }) };\n");
  return dir;
}

async function withAgent(config: Record<string, unknown>, body: (a: StartedAgent) => Promise<void>): Promise<void> {
  const a = await startAgent({ config: baseConfig({ ...config, workers: { poolSize: 1 } }) });
  try {
    await body(a);
  } finally {
    await a.stop();
  }
}

describe('an off-host listener without client authentication', () => {
  it('warns at start, and /healthz reports the posture', async () => {
    await withAgent({ ...OFF_HOST, tls: { clientCerts: 'optional' } }, async (a) => {
      const first = await a.waitForLog((l) => l.msg === 'INSECURE POSTURE');
      expect(first.level).toBe('warn');
      expect(first).toMatchObject({ transport: 'tls', clientAuth: 'none', offHost: true });
      expect(String((first.warnings as string[])[0])).toMatch(/reachable off-host \(0\.0\.0\.0:0\) without client authentication/);
      // The start-up warning comes with the listener, before any request.
      const atStart = a.logs.findIndex((l) => l.msg === 'INSECURE POSTURE');
      expect(atStart).toBeGreaterThan(a.logs.findIndex((l) => l.msg === 'listening'));
      const h = await healthz(a);
      expect(h.status).toBe('ok');
      expect(h.posture).toEqual({ transport: 'tls', clientAuth: 'none', offHost: true, authorization: false, authorizationDefault: 'deny', warnings: first.warnings });
    });
  });

  it('with a plugin that authenticates tokens: clientAuth "token", no warning', async () => {
    await withAgent({ ...OFF_HOST, tls: { clientCerts: 'optional' }, plugins: { dir: tokenPluginDir(), enabled: [{ name: 'token-only' }] } }, async (a) => {
      const h = await healthz(a);
      expect(h.posture).toEqual({ transport: 'tls', clientAuth: 'token', offHost: true, authorization: false, authorizationDefault: 'deny', warnings: [] });
      expect(warnings(a)).toEqual([]);
    });
  });
});

describe('no warning', () => {
  it('on loopback, even without client authentication', async () => {
    await withAgent({ tls: { clientCerts: 'optional' } }, async (a) => {
      const h = await healthz(a);
      expect(h.posture).toEqual({ transport: 'tls', clientAuth: 'none', offHost: false, authorization: false, authorizationDefault: 'deny', warnings: [] });
      expect(warnings(a)).toEqual([]);
    });
  });

  it('off-host with mutual TLS (the default), which serves a certificate-holding client', async () => {
    await withAgent(OFF_HOST, async (a) => {
      const client = a.client();
      try {
        expect(await client.dispatch('add', { args: [2, 3] })).toBe(5);
      } finally {
        await client.close();
      }
      const h = await healthz(a);
      expect(h.posture).toEqual({ transport: 'mtls', clientAuth: 'certificate', offHost: true, authorization: false, authorizationDefault: 'deny', warnings: [] });
      expect(warnings(a)).toEqual([]);
    });
  });
});

describe('a SIGHUP reload that changes the posture', () => {
  /** Rewrites the agent's config with `over` and sends SIGHUP; resolves once the reload is logged as applied. */
  async function reload(a: StartedAgent, config: Record<string, unknown>): Promise<void> {
    const n = a.logs.filter((l) => l.msg === 'config reloaded').length;
    writeFileSync(a.configPath, JSON.stringify(config, null, 2), { mode: 0o600 });
    process.kill(a.pid, 'SIGHUP');
    await a.waitForLog((l) => l.msg === 'config reloaded' && a.logs.filter((m) => m.msg === 'config reloaded').length > n);
  }

  // Regression: /healthz kept reporting the posture of the start-up config.
  it('/healthz follows the running config, and the change is logged and warned about at once', async () => {
    const plugins = { dir: tokenPluginDir(), enabled: [{ name: 'token-only' }] };
    const start = baseConfig({ ...OFF_HOST, workers: { poolSize: 1 }, tls: { clientCerts: 'optional' }, plugins });
    const a = await startAgent({ config: start });
    try {
      expect((await healthz(a)).posture).toEqual({ transport: 'tls', clientAuth: 'token', offHost: true, authorization: false, authorizationDefault: 'deny', warnings: [] });
      expect(warnings(a)).toEqual([]);

      // authorization.default "allow" and the token plugin switched off: both apply live.
      await reload(a, { ...start, authorization: { default: 'allow', allow: [] }, plugins: { ...plugins, enabled: [] } });
      const after = (await healthz(a)).posture;
      expect(after).toMatchObject({ transport: 'tls', clientAuth: 'none', offHost: true, authorization: false, authorizationDefault: 'allow' });
      expect(after.warnings).toEqual([expect.stringMatching(/without client authentication/), expect.stringMatching(/with authorization.default "allow"/)]);
      const changed = await a.waitForLog((l) => l.msg === 'security posture changed');
      expect(changed).toMatchObject({ level: 'info', clientAuth: 'none', authorizationDefault: 'allow', warnings: 2 });
      // Warned right after the reload, not an hour later.
      const warned = await a.waitForLog((l) => l.msg === 'INSECURE POSTURE');
      expect(warned.warnings).toEqual(after.warnings);

      // And back: the warnings go, no new INSECURE POSTURE line.
      await reload(a, start);
      expect((await healthz(a)).posture).toEqual({ transport: 'tls', clientAuth: 'token', offHost: true, authorization: false, authorizationDefault: 'deny', warnings: [] });
      expect(warnings(a)).toHaveLength(1);
      expect(a.logs.filter((l) => l.msg === 'security posture changed')).toHaveLength(2);
    } finally {
      await a.stop();
    }
  });
});
