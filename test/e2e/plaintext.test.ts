/**
 * Plaintext HTTP/2 (h2c) only when tls.plaintext says so: a default agent refuses a
 * prior-knowledge connection; an h2c agent serves curl --http2-prior-knowledge and
 * `skein dispatch --plaintext` with a bearer token (minted by PyJWT) while refusing callers
 * without one, says PLAINTEXT at start, and keeps the same hardening (control-frame flood,
 * connections per address, idle timeout). The client library never speaks h2c unasked.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinClient } from '../../agent/client/index.ts';
import { baseConfig, failure, ROOT, runCli, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';
import { closedWithin, ping, rawConnect } from '../helpers/h2-raw.ts';
import { pythonModules, requires } from '../helpers/requires.ts';

const PYTHON = '/usr/bin/python3';
const withPyJwt = requires(pythonModules(['jwt'], 'python3-jwt', PYTHON));
const secret = randomBytes(32);

/** An HS256 JWT minted by PyJWT (an implementation independent of the plugin's). */
function mint(sub: string): string {
  const script = `import sys, json, time, jwt
d = json.loads(sys.stdin.read())
print(jwt.encode({"sub": d["sub"], "iss": "https://issuer.test", "aud": "skein", "exp": int(time.time()) + 300}, bytes.fromhex(d["key"]), algorithm="HS256"))`;
  return execFileSync(PYTHON, ['-c', script], { input: JSON.stringify({ sub, key: secret.toString('hex') }), encoding: 'utf8' }).trim();
}

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], { timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as NodeJS.ErrnoException & { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let h2c: StartedAgent; // tls.plaintext with bearer-jwt
let tlsAgent: StartedAgent; // the default: mutual TLS

beforeAll(async () => {
  [h2c, tlsAgent] = await Promise.all([
    startAgent({
      config: baseConfig({
        tls: { plaintext: true },
        workers: { poolSize: 1 },
        http2: { maxConnectionsPerIp: 3, idleTimeoutMs: 1000, maxControlFramesPerSecond: 100 },
        plugins: {
          dir: join(ROOT, 'plugins'),
          enabled: [{ name: 'bearer-jwt', options: { algorithms: ['HS256'], keys: [{ kty: 'oct', k: secret.toString('base64url') }], issuer: 'https://issuer.test', audience: 'skein' } }],
        },
        // Every h2c caller is anonymous: the token's principal is what is allowed.
        authorization: { allow: [{ identities: ['jwt:*'], routines: ['*'] }] },
      }),
    }),
    startAgent({ config: baseConfig({ workers: { poolSize: 1 } }) }),
  ]);
}, 30_000);
afterAll(async () => {
  await Promise.all([h2c?.stop(), tlsAgent?.stop()]);
  await stopAll();
});

describe('a default agent serves no plaintext', () => {
  it('refuses curl --http2-prior-knowledge', async () => {
    const r = await curl(['--http2-prior-knowledge', '-H', 'content-type: application/json', '--data-binary', '{"args":[2,3]}', `http://127.0.0.1:${tlsAgent.port}/v1/dispatch/add`]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('result');
  });

  it('answers a raw h2c preface with no HTTP/2 frame, and closes', async () => {
    const raw = await rawConnect(tlsAgent.port, { plaintext: true });
    try {
      expect(await raw.waitClosed(5000)).toBe(true);
      expect(raw.frames).toEqual([]);
    } finally {
      raw.destroy();
    }
  });
});

describe('an agent with tls.plaintext', () => {
  it('logs a PLAINTEXT warning at start', () => {
    const line = h2c.logs.find((l) => String(l.msg ?? '').startsWith('PLAINTEXT: serving HTTP/2 without TLS'));
    expect(line?.level).toBe('warn');
    expect(line?.clientAuth).toBe('token');
  });

  withPyJwt.it('serves curl --http2-prior-knowledge with a bearer token', async () => {
    const r = await curl([
      '--http2-prior-knowledge',
      '-H',
      `authorization: Bearer ${mint('alice')}`,
      '-H',
      'content-type: application/json',
      '--data-binary',
      '{"args":[2,3]}',
      `http://127.0.0.1:${h2c.port}/v1/dispatch/add`,
    ]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ result: 5 });
    expect(h2c.logs.some((l) => l.msg === 'peer connected' && l.tls === 'none (h2c)' && l.peer === 'anonymous')).toBe(true);
  });

  it('refuses a caller without a token: every h2c caller is anonymous', async () => {
    const r = await curl(['--http2-prior-knowledge', '-H', 'content-type: application/json', '--data-binary', '{"args":[2,3]}', `http://127.0.0.1:${h2c.port}/v1/dispatch/add`]);
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 'SKEIN_ERR_UNAUTHENTICATED', meta: { reason: 'CREDENTIAL_REQUIRED' } });
  });

  it('refuses a TLS client (it speaks only h2c)', async () => {
    const client = new SkeinClient({ peer: `127.0.0.1:${h2c.port}`, connectTimeoutMs: 3000 });
    try {
      const err = await failure(client.dispatch('add', { args: [1, 1] }));
      expect(['SKEIN_ERR_TLS', 'SKEIN_ERR_TRANSPORT']).toContain(err.code);
    } finally {
      await client.destroy();
    }
  });

  withPyJwt.it('the client library speaks h2c only when asked for', async () => {
    expect(() => new SkeinClient({ peer: `http://127.0.0.1:${h2c.port}` })).toThrow(/plaintext http:\/\//);
    expect(() => new SkeinClient({ peer: `https://127.0.0.1:${h2c.port}`, plaintext: true })).toThrow(/https:\/\/ but plaintext/);
    expect(() => new SkeinClient({ peer: `127.0.0.1:${h2c.port}`, plaintext: true, pin: { sha256: 'a'.repeat(64), spiffeId: 'spiffe://skein.local/agent/x' } })).toThrow(/needs TLS/);
    const client = new SkeinClient({ peer: `127.0.0.1:${h2c.port}`, plaintext: true, token: mint('bob') });
    try {
      expect(await client.dispatch('echo', { args: ['over h2c'] })).toBe('over h2c');
    } finally {
      await client.close();
    }
  });

  withPyJwt.it('skein dispatch --plaintext reaches it; an http:// peer without the flag is a usage error', async () => {
    const ok = await runCli(['dispatch', 'add', '--args', '[20, 22]', '--plaintext', '--peer', `http://127.0.0.1:${h2c.port}`, '--token', mint('carol')]);
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('42');
    expect(ok.code).toBe(0);
    const usage = await runCli(['dispatch', 'add', '--args', '[1, 1]', '--peer', `http://127.0.0.1:${h2c.port}`, '--cert', h2c.pki.cert, '--key', h2c.pki.key, '--ca', h2c.pki.ca]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/SKEIN_ERR_USAGE.*plaintext http:\/\//);
    const both = await runCli(['dispatch', 'add', '--plaintext', '--peer', `127.0.0.1:${h2c.port}`, '--cert', h2c.pki.cert, '--key', h2c.pki.key, '--ca', h2c.pki.ca]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--plaintext sends no client certificate/);
  });
});

describe('the same hardening over h2c', () => {
  it('a PING flood gets GOAWAY(ENHANCE_YOUR_CALM)', async () => {
    const raw = await rawConnect(h2c.port, { plaintext: true });
    try {
      for (let b = 0; b < 100 && !raw.closed; b++) {
        await raw.send(Buffer.concat(Array.from({ length: 50 }, (_, k) => ping(k))));
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(await raw.waitClosed(5000)).toBe(true);
      expect(raw.goawayCode()).toBe(11);
    } finally {
      raw.destroy();
    }
  });

  it('closes a connection that stays silent, after idleTimeoutMs', async () => {
    const t0 = Date.now();
    const sock = net.connect(h2c.port, '127.0.0.1');
    sock.on('error', () => {});
    sock.resume(); // read (and drop) the agent's SETTINGS and GOAWAY, so its close is seen
    const closed = await closedWithin(sock, 6000);
    sock.destroy();
    expect(closed).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
  });

  it('refuses connections beyond maxConnectionsPerIp', async () => {
    const keep = await Promise.all(Array.from({ length: 3 }, () => rawConnect(h2c.port, { plaintext: true })));
    try {
      const extra = await rawConnect(h2c.port, { plaintext: true });
      expect(await extra.waitClosed(3000)).toBe(true);
      extra.destroy();
      await h2c.waitForLog((l) => l.msg === 'connection refused' && l.reason === 'http2.maxConnectionsPerIp', 3000);
      for (const k of keep) expect(k.closed).toBe(false);
    } finally {
      for (const k of keep) k.destroy();
    }
  });
});
