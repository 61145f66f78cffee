/**
 * The posture computed from a config and the loaded plugins' hooks, the repeated warning
 * (with an injected interval), and the strict-mode rules for tls.plaintext.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../agent/config/load.ts';
import type { AgentConfig } from '../../agent/config/schema.ts';
import { strictViolations } from '../../agent/security/strict.ts';
import { createLogger } from '../../agent/log/index.ts';
import { computePosture, POSTURE_WARN_INTERVAL_MS, warnIntervalMs, warnPosture } from '../../agent/security/posture.ts';

const dir = mkdtempSync(join(tmpdir(), 'skein-posture-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function config(layer: Record<string, unknown>): AgentConfig {
  const path = join(dir, `c${n++}.json`);
  writeFileSync(path, JSON.stringify({ agent: { name: 't', listen: '127.0.0.1:7443', stateDir: 'state' }, ...layer }), { mode: 0o600 });
  return loadConfig({ path, env: {} }).config;
}
const none = { authenticate: false, authorize: false };
const OFF = { agent: { name: 't', listen: '0.0.0.0:7443', stateDir: 'state' } };

describe('computePosture', () => {
  it('mTLS by default: certificate authentication, no warning, off-host or not', () => {
    expect(computePosture(config({}), none)).toEqual({ transport: 'mtls', clientAuth: 'certificate', offHost: false, authorization: false, authorizationDefault: 'deny', warnings: [] });
    expect(computePosture(config(OFF), none)).toEqual({ transport: 'mtls', clientAuth: 'certificate', offHost: true, authorization: false, authorizationDefault: 'deny', warnings: [] });
  });

  it('one-way TLS without a token plugin: no client authentication, warned only off-host', () => {
    expect(computePosture(config({ tls: { clientCerts: 'optional' } }), none).warnings).toEqual([]);
    const p = computePosture(config({ ...OFF, tls: { clientCerts: 'optional' } }), none);
    expect(p).toMatchObject({ transport: 'tls', clientAuth: 'none', offHost: true });
    expect(p.warnings).toHaveLength(1);
    expect(p.warnings[0]).toMatch(/reachable off-host \(0\.0\.0\.0:7443\) without client authentication: tls.clientCerts is "optional"/);
  });

  it('one-way TLS with an authenticate hook: token authentication, no warning', () => {
    const p = computePosture(config({ ...OFF, tls: { clientCerts: 'optional' } }), { authenticate: true, authorize: true });
    expect(p).toEqual({ transport: 'tls', clientAuth: 'token', offHost: true, authorization: true, authorizationDefault: 'deny', warnings: [] });
  });

  it('h2c: warned off-host for plaintext even with a token plugin, and for no authentication without one', () => {
    expect(computePosture(config({ tls: { plaintext: true } }), { authenticate: true, authorize: false })).toEqual({ transport: 'h2c', clientAuth: 'token', offHost: false, authorization: false, authorizationDefault: 'deny', warnings: [] });
    const withToken = computePosture(config({ ...OFF, tls: { plaintext: true } }), { authenticate: true, authorize: false });
    expect(withToken.warnings).toEqual([expect.stringMatching(/^plaintext HTTP\/2 \(tls.plaintext\) reachable off-host/)]);
    const bare = computePosture(config({ ...OFF, tls: { plaintext: true } }), none);
    expect(bare.clientAuth).toBe('none');
    expect(bare.warnings).toHaveLength(2);
  });

  it('authorization.default "allow" is warned about off-host only (strict refuses it there)', () => {
    const allow = { authorization: { default: 'allow' } };
    expect(computePosture(config(allow), none)).toMatchObject({ authorizationDefault: 'allow', warnings: [] });
    const p = computePosture(config({ ...OFF, ...allow }), none);
    expect(p.authorizationDefault).toBe('allow');
    expect(p.warnings).toEqual([expect.stringMatching(/^reachable off-host \(0\.0\.0\.0:7443\) with authorization.default "allow": every authenticated caller may run every routine that no plugin denies/)]);
  });

  it('localhost and 127.x are loopback; [::] is not', () => {
    expect(computePosture(config({ agent: { name: 't', listen: 'localhost:1', stateDir: 's' } }), none).offHost).toBe(false);
    expect(computePosture(config({ agent: { name: 't', listen: '127.0.0.2:1', stateDir: 's' } }), none).offHost).toBe(false);
    expect(computePosture(config({ agent: { name: 't', listen: '[::]:1', stateDir: 's' } }), none).offHost).toBe(true);
  });
});

describe('warnPosture', () => {
  const capture = () => {
    const lines: Array<Record<string, unknown>> = [];
    return { lines, log: createLogger({ level: 'info', write: (l) => lines.push(JSON.parse(l)) }) };
  };

  it('warns at once and again every interval while the posture has warnings; stop() ends it', async () => {
    const { lines, log } = capture();
    const posture = computePosture(config({ ...OFF, tls: { clientCerts: 'optional' } }), none);
    const stop = warnPosture(() => posture, log, 100);
    expect(lines.filter((l) => l.msg === 'INSECURE POSTURE')).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 350));
    stop();
    const count = lines.filter((l) => l.msg === 'INSECURE POSTURE').length;
    expect(count).toBeGreaterThanOrEqual(3);
    await new Promise((r) => setTimeout(r, 250));
    expect(lines.filter((l) => l.msg === 'INSECURE POSTURE').length).toBe(count);
    expect(lines[0]).toMatchObject({ level: 'warn', transport: 'tls', clientAuth: 'none', offHost: true, warnings: posture.warnings });
  });

  it('stays quiet for a secure posture, and says PLAINTEXT once for h2c', async () => {
    const { lines, log } = capture();
    const stop = warnPosture(() => computePosture(config({ tls: { plaintext: true } }), { authenticate: true, authorize: false }), log, 100);
    await new Promise((r) => setTimeout(r, 250));
    stop();
    expect(lines.map((l) => l.msg)).toEqual([expect.stringMatching(/^PLAINTEXT: serving HTTP\/2 without TLS/)]);
  });

  it('the interval comes from SKEIN_POSTURE_WARN_INTERVAL_MS (tests only), else one hour', () => {
    expect(warnIntervalMs({})).toBe(POSTURE_WARN_INTERVAL_MS);
    expect(POSTURE_WARN_INTERVAL_MS).toBe(3_600_000);
    expect(warnIntervalMs({ SKEIN_POSTURE_WARN_INTERVAL_MS: '500' })).toBe(500);
    for (const bad of ['0', '99', 'x', '1.5', '']) expect(warnIntervalMs({ SKEIN_POSTURE_WARN_INTERVAL_MS: bad })).toBe(POSTURE_WARN_INTERVAL_MS);
  });
});

describe('strict mode and tls.plaintext', () => {
  const keys = (c: AgentConfig) => strictViolations(c).map((v) => v.key);
  const bearer = { plugins: { enabled: [{ name: 'bearer-jwt' }], requireSignature: true } };

  it('plaintext without a token plugin is a violation', () => {
    expect(keys(config({ tls: { plaintext: true } }))).toEqual(['tls.plaintext']);
  });

  it('plaintext on loopback with a token plugin is allowed', () => {
    expect(keys(config({ tls: { plaintext: true }, ...bearer }))).toEqual([]);
  });

  it('plaintext off-host is a violation even with a token plugin', () => {
    const v = strictViolations(config({ ...OFF, tls: { plaintext: true }, ...bearer }));
    expect(v).toEqual([{ key: 'tls.plaintext', message: expect.stringMatching(/reachable off-host \(0\.0\.0\.0:7443\): requests and tokens would cross the network unencrypted/) }]);
  });

  it('discovery cannot be combined with plaintext (config error, strict or not)', () => {
    expect(() => config({ tls: { plaintext: true }, discovery: { enabled: true, fleet: 'f', signingKey: 'k', trustedKeys: ['ed25519:' + 'A'.repeat(43)] } })).toThrow(/tls.plaintext.*discovery.enabled/);
  });
});
