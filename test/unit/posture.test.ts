/**
 * The posture computed from a config and the loaded plugins' hooks, the hourly warning (with
 * an injected timer that the test advances: nothing sleeps), and the strict-mode rules for
 * tls.plaintext.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../agent/config/load.ts';
import type { AgentConfig } from '../../agent/config/schema.ts';
import { strictViolations } from '../../agent/security/strict.ts';
import { createLogger } from '../../agent/log/index.ts';
import { computePosture, POSTURE_WARN_INTERVAL_MS, warnPosture, type IntervalTimer } from '../../agent/security/posture.ts';

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
    expect(computePosture(config({ tls: { plaintext: true } }), { authenticate: true, authorize: false })).toEqual({
      transport: 'h2c',
      clientAuth: 'token',
      offHost: false,
      authorization: false,
      authorizationDefault: 'deny',
      warnings: [],
    });
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
    expect(p.warnings).toEqual([
      expect.stringMatching(/^reachable off-host \(0\.0\.0\.0:7443\) with authorization.default "allow": every authenticated caller may run every routine that no plugin denies/),
    ]);
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

  /** An interval timer driven by hand: advance(ms) fires what is due, in order. */
  const manualTimer = () => {
    let now = 0;
    const timers = new Set<{ every: number; next: number; fn: () => void }>();
    const timer: IntervalTimer = {
      every(ms, fn) {
        const t = { every: ms, next: now + ms, fn };
        timers.add(t);
        return () => timers.delete(t);
      },
    };
    const advance = (ms: number) => {
      const until = now + ms;
      for (;;) {
        const due = [...timers].filter((t) => t.next <= until).sort((a, b) => a.next - b.next)[0];
        if (!due) break;
        now = due.next;
        due.next += due.every;
        due.fn();
      }
      now = until;
    };
    return { timer, advance, active: () => timers.size };
  };

  it('warns at once and again every hour while the posture has warnings; close() ends it, twice is fine', async () => {
    const { lines, log } = capture();
    const clock = manualTimer();
    const posture = computePosture(config({ ...OFF, tls: { clientCerts: 'optional' } }), none);
    const warnings = warnPosture(() => posture, log, clock.timer);
    const count = () => lines.filter((l) => l.msg === 'INSECURE POSTURE').length;
    expect(count()).toBe(1);
    clock.advance(POSTURE_WARN_INTERVAL_MS - 1);
    expect(count()).toBe(1);
    clock.advance(1);
    expect(count()).toBe(2);
    clock.advance(2 * POSTURE_WARN_INTERVAL_MS);
    expect(count()).toBe(4);
    await Promise.all([warnings.close(), warnings.close(), warnings.destroy()]);
    expect(clock.active()).toBe(0);
    clock.advance(5 * POSTURE_WARN_INTERVAL_MS);
    expect(count()).toBe(4);
    expect(lines[0]).toMatchObject({ level: 'warn', transport: 'tls', clientAuth: 'none', offHost: true, warnings: posture.warnings });
  });

  it('stays quiet for a secure posture, and says PLAINTEXT once for h2c', async () => {
    const { lines, log } = capture();
    const clock = manualTimer();
    const warnings = warnPosture(() => computePosture(config({ tls: { plaintext: true } }), { authenticate: true, authorize: false }), log, clock.timer);
    clock.advance(3 * POSTURE_WARN_INTERVAL_MS);
    await warnings.close();
    expect(lines.map((l) => l.msg)).toEqual([expect.stringMatching(/^PLAINTEXT: serving HTTP\/2 without TLS/)]);
  });

  it('recheck() after a reload: quiet while nothing changed; a change is logged, warned at once when insecure, and the hourly warning follows the new posture', async () => {
    const { lines, log } = capture();
    const clock = manualTimer();
    let current = computePosture(config(OFF), none);
    const warnings = warnPosture(() => current, log, clock.timer);
    const msgs = () => lines.map((l) => l.msg);
    warnings.recheck();
    expect(msgs()).toEqual([]);
    current = computePosture(config({ ...OFF, authorization: { default: 'allow' } }), none);
    warnings.recheck();
    expect(msgs()).toEqual(['security posture changed', 'INSECURE POSTURE']);
    expect(lines[0]).toMatchObject({ level: 'info', authorizationDefault: 'allow', warnings: 1 });
    expect(lines[1]).toMatchObject({ level: 'warn', warnings: current.warnings });
    warnings.recheck();
    expect(msgs()).toHaveLength(2);
    clock.advance(POSTURE_WARN_INTERVAL_MS);
    expect(msgs()).toHaveLength(3);
    current = computePosture(config(OFF), none);
    warnings.recheck();
    expect(msgs().at(-1)).toBe('security posture changed');
    clock.advance(POSTURE_WARN_INTERVAL_MS);
    expect(msgs()).toHaveLength(4);
    await warnings.close();
  });

  it('the period is one hour, and no environment variable changes it (no test-only knob in the binary)', () => {
    expect(POSTURE_WARN_INTERVAL_MS).toBe(3_600_000);
    const clock = manualTimer();
    const seen: number[] = [];
    const timer: IntervalTimer = { every: (ms, fn) => (seen.push(ms), clock.timer.every(ms, fn)) };
    process.env.SKEIN_POSTURE_WARN_INTERVAL_MS = '500';
    try {
      void warnPosture(() => computePosture(config({}), none), createLogger({ level: 'error', write: () => {} }), timer).close();
    } finally {
      delete process.env.SKEIN_POSTURE_WARN_INTERVAL_MS;
    }
    expect(seen).toEqual([POSTURE_WARN_INTERVAL_MS]);
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
    expect(() => config({ tls: { plaintext: true }, discovery: { enabled: true, fleet: 'f', signingKey: 'k', trustedKeys: ['ed25519:' + 'A'.repeat(43)] } })).toThrow(
      /tls.plaintext.*discovery.enabled/,
    );
  });
});
