/**
 * bearer-jwt with jwksUrl through the compiled binary, against a real HTTPS issuer in this
 * process (node:https on loopback, certificate from `skein pki`), serving a JWKS the test
 * rotates; tokens are minted by Debian's PyJWT. The issuer is on loopback, so every config
 * sets the plugin's allowPrivateAddresses (a product setting, warned about at start).
 *
 * Covered: rotation in (within one refresh; at once on an unknown kid, rate-limited), rotation
 * out, a flood of made-up kids bounded in fetches, the issuer down / oversize / slow /
 * redirecting to the metadata address during operation (last good set served, failures
 * counted), a set expiring after jwksMaxAgeSec, the issuer down at start (strict: exit 2;
 * otherwise start, warn, refuse its tokens until it is back), a CA pin mismatch and the
 * system CAs refused (so the binary's undici honours TLS options), and hosts or addresses the
 * operator did not allow.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { baseConfig, failure, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';
import { pythonModules, requires } from '../helpers/requires.ts';

const PYTHON = '/usr/bin/python3';
// Tokens are minted by an independent implementation: Debian's PyJWT.
const withPyJwt = requires(pythonModules(['jwt', 'cryptography'], 'python3-jwt python3-cryptography', PYTHON));

interface SigningKey {
  kid: string;
  privatePem: string;
  jwk: Record<string, unknown>;
}

function signingKey(kid: string): SigningKey {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return { kid, privatePem: String(privateKey.export({ type: 'pkcs8', format: 'pem' })), jwk: { ...(publicKey as KeyObject).export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' } };
}

const ISSUER = 'https://idp.test';
const now = () => Math.floor(Date.now() / 1000);

/** Mints EdDSA JWTs with PyJWT, all in one Python process. */
function mint(specs: Array<{ key: SigningKey; kid?: string; sub?: string }>): string[] {
  const script = `import sys, json, jwt
for d in json.loads(sys.stdin.read()):
    print(jwt.encode(d["claims"], d["key"], algorithm="EdDSA", headers={"kid": d["kid"]}))`;
  const input = specs.map((s) => ({ key: s.key.privatePem, kid: s.kid ?? s.key.kid, claims: { sub: s.sub ?? 'alice', iss: ISSUER, aud: 'skein', exp: now() + 600 } }));
  return execFileSync(PYTHON, ['-c', script], { input: JSON.stringify(input), encoding: 'utf8' })
    .trim()
    .split('\n');
}
const token = (key: SigningKey, sub = 'alice') => mint([{ key, sub }])[0]!;

/** One issuer per test path: its JWKS, how it answers, and how often it was asked. */
interface Issuer {
  keys: SigningKey[];
  mode: 'ok' | 'down' | 'big' | 'slow' | 'to-metadata' | 'to-evil';
  fetches: number;
}
const issuers = new Map<string, Issuer>();
let server: Server;
let port: number;
let caPath: string;
let otherCaPath: string;

function issuer(name: string, keys: SigningKey[], mode: Issuer['mode'] = 'ok'): Issuer {
  const i: Issuer = { keys, mode, fetches: 0 };
  issuers.set(name, i);
  return i;
}

function route(req: IncomingMessage, res: ServerResponse): void {
  const m = /^\/([a-z0-9-]+)\/jwks\.json$/.exec(req.url ?? '');
  const i = m ? issuers.get(m[1]!) : undefined;
  if (!i) {
    res.writeHead(404).end();
    return;
  }
  i.fetches++;
  switch (i.mode) {
    case 'down':
      req.socket.destroy();
      return;
    case 'big':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: i.keys.map((k) => k.jwk), padding: 'x'.repeat(64 * 1024) }));
      return;
    case 'slow':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"keys":['); // the rest never comes
      return;
    case 'to-metadata':
      res.writeHead(302, { location: 'https://169.254.169.254/latest/meta-data/' }).end();
      return;
    case 'to-evil':
      res.writeHead(302, { location: `https://evil.test:${port}/jwks.json` }).end();
      return;
    default:
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: i.keys.map((k) => k.jwk) }));
  }
}

beforeAll(async () => {
  const pki = tempDir();
  expect((await runCli(['pki', 'init', '--dir', pki])).code).toBe(0);
  expect((await runCli(['pki', 'issue', '--dir', pki, '--name', 'idp', '--kind', 'agent', '--host', 'localhost'])).code).toBe(0);
  caPath = join(pki, 'ca.crt');
  const other = tempDir();
  expect((await runCli(['pki', 'init', '--dir', other])).code).toBe(0);
  otherCaPath = join(other, 'ca.crt');
  server = createServer({ cert: readFileSync(join(pki, 'agent-idp.crt')), key: readFileSync(join(pki, 'agent-idp.key')) }, route);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server?.closeAllConnections();
  server?.close();
  await stopAll();
});

const url = (name: string) => `https://localhost:${port}/${name}/jwks.json`;

/** An agent whose bearer-jwt trusts the issuer `name`; `jwt` overrides the plugin's options, `entry` the plugins.enabled entry. */
function jwksConfig(name: string, jwt: Record<string, unknown> = {}, entry: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return baseConfig({
    workers: { poolSize: 1 },
    tls: { clientCerts: 'optional' },
    authorization: { allow: [{ identities: ['jwt:*'], routines: ['echo'] }] },
    plugins: {
      enabled: [
        {
          name: 'bearer-jwt',
          allowedHosts: ['localhost'],
          allowPrivateAddresses: true,
          ...entry,
          options: { algorithms: ['EdDSA'], issuer: ISSUER, audience: 'skein', jwksUrl: url(name), jwksCa: caPath, ...jwt },
        },
      ],
    },
    ...extra,
  });
}

/** Dispatches echo with `tok` over one-way TLS: the echoed value, or the 401 reason. */
async function call(agent: StartedAgent, tok: string): Promise<string> {
  const client = agent.client({ cert: undefined, key: undefined });
  try {
    return String(await client.dispatch('echo', { args: ['ok'], token: tok }));
  } catch (err) {
    const e = err as { code?: string; details?: { reason?: string } };
    if (e.code !== 'SKEIN_ERR_UNAUTHENTICATED') throw err;
    return e.details?.reason ?? 'UNKNOWN';
  } finally {
    await client.close();
  }
}

/** Polls `probe` until it returns `want` (bounded), returning the last value. */
async function eventually<T>(probe: () => Promise<T>, want: T, timeoutMs = 10_000): Promise<T> {
  let last: T;
  for (const until = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 200))) {
    last = await probe();
    if (last === want || Date.now() > until) return last;
  }
}

async function metric(agent: StartedAgent, outcome: string): Promise<number> {
  const line = await agent.waitForLog((l) => l.msg === 'admin listening');
  const text = await (await fetch(`http://${String(line.address)}/metrics`)).text();
  const m = new RegExp(`^skein_plugin_http_requests_total\\{plugin="bearer-jwt",outcome="${outcome}"\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Runs `skein agent` with `config` (mode 0600, as security.strict wants) and expects exit 2; returns stderr. */
async function startMustFail(config: Record<string, unknown>): Promise<string> {
  const dir = tempDir();
  const path = join(dir, 'agent.config.json');
  writeFileSync(path, JSON.stringify(config), { mode: 0o600 });
  const r = await runCli(['agent', '--config', path], { cwd: dir, timeoutMs: 30_000 });
  expect(r.code, r.stderr).toBe(2);
  return r.stderr;
}

withPyJwt.describe('bearer-jwt jwksUrl: rotation and a failing issuer', () => {
  const k1 = signingKey('k1');
  const k2 = signingKey('k2');
  let agent: StartedAgent;
  let idp: Issuer;

  beforeAll(async () => {
    idp = issuer('rotating', [k1]);
    // Unknown kids never trigger a fetch here (jwksMinRefreshSec is an hour): only the 2 s refresh does.
    agent = await startAgent({
      config: jwksConfig('rotating', { jwksRefreshSec: 2, jwksMinRefreshSec: 3600, jwksTimeoutMs: 1000, jwksMaxBytes: 8192 }, { allowedHosts: ['localhost', '169.254.169.254'] }),
    });
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('warns at start that the plugin may reach private addresses, and fetched the JWKS once', async () => {
    const warn = agent.logs.find((l) => l.level === 'warn' && /plugin "bearer-jwt" may reach private and loopback addresses/.test(l.msg));
    expect(warn).toMatchObject({ key: 'plugins.enabled[0].allowPrivateAddresses' });
    expect(agent.logs.find((l) => l.msg === 'JWKS fetched')).toMatchObject({ why: 'start', keys: 1, added: ['k1'] });
    expect(await call(agent, token(k1))).toBe('ok');
  });

  it('a key rotated in is refused at once (no fetch for an unknown kid within the rate limit) and accepted within one refresh', async () => {
    idp.keys = [k1, k2];
    const t2 = token(k2, 'bob');
    expect(await call(agent, t2)).toBe('JWT_NO_MATCHING_KEY');
    const started = Date.now();
    expect(await eventually(() => call(agent, t2), 'ok')).toBe('ok');
    expect(Date.now() - started).toBeLessThan(8000);
  });

  it('a key rotated out is refused after the next refresh', async () => {
    idp.keys = [k2];
    expect(await eventually(() => call(agent, token(k1)), 'JWT_NO_MATCHING_KEY')).toBe('JWT_NO_MATCHING_KEY');
    expect(agent.logs.find((l) => l.msg === 'JWKS fetched' && (l.removed as string[])?.includes('k1'))).toBeDefined();
  });

  it.each([
    ['down', 'SKEIN_ERR_HTTP_NETWORK'],
    ['big', 'SKEIN_ERR_HTTP_TOO_LARGE'],
    ['slow', 'SKEIN_ERR_HTTP_TIMEOUT'],
    ['to-metadata', 'SKEIN_ERR_HTTP_ADDRESS'],
  ] as const)('issuer %s during operation: the refresh fails with %s, is counted, and the last good set keeps serving', async (mode, code) => {
    const before = await metric(agent, code);
    idp.mode = mode;
    try {
      await agent.waitForLog((l) => l.msg.startsWith('JWKS refresh failed') && l.code === code, 10_000);
      expect(await eventually(() => metric(agent, code), before + 1)).toBeGreaterThan(before);
      expect(await call(agent, token(k2))).toBe('ok');
    } finally {
      idp.mode = 'ok';
    }
    expect(await metric(agent, 'ok')).toBeGreaterThanOrEqual(3);
  });
});

withPyJwt.describe('bearer-jwt jwksUrl: unknown kids', () => {
  it('a new kid is fetched for at once, and a flood of made-up kids costs at most one fetch per jwksMinRefreshSec (security.strict)', async () => {
    const k1 = signingKey('k1');
    const idp = issuer('kids', [k1]);
    const agent = await startAgent({ config: jwksConfig('kids', { jwksRefreshSec: 3600, jwksMinRefreshSec: 2 }, {}, { security: { strict: true } }) });
    try {
      expect(idp.fetches).toBe(1);
      // Past the rate limit of the start-up fetch, a token signed by a key rotated in is accepted at once.
      await new Promise((r) => setTimeout(r, 2100));
      const k3 = signingKey('k3');
      idp.keys = [k1, k3];
      expect(await call(agent, token(k3))).toBe('ok');
      expect(idp.fetches).toBe(2);

      await new Promise((r) => setTimeout(r, 2100));
      const forger = signingKey('x');
      const forged = mint(Array.from({ length: 60 }, (_, i) => ({ key: forger, kid: `made-up-${i}` })));
      const started = Date.now();
      const client = agent.client({ cert: undefined, key: undefined });
      try {
        // In waves of ten: concurrent tokens share one fetch, so only a flood spread over time
        // shows the rate limit (without it, every wave would fetch again).
        const reasons: string[] = [];
        for (let wave = 0; wave < forged.length; wave += 10) {
          const batch = forged.slice(wave, wave + 10).map((t) => failure(client.dispatch('echo', { args: [1], token: t })).then((e) => String(e.details.reason)));
          reasons.push(...(await Promise.all(batch)));
        }
        expect(new Set(reasons)).toEqual(new Set(['JWT_NO_MATCHING_KEY']));
      } finally {
        await client.close();
      }
      const elapsed = Date.now() - started;
      expect(idp.fetches - 2).toBeGreaterThanOrEqual(1);
      expect(idp.fetches - 2).toBeLessThanOrEqual(1 + Math.floor(elapsed / 2000));
      // The agent keeps serving the real issuer's tokens.
      expect(await call(agent, token(k1))).toBe('ok');
    } finally {
      await agent.stop();
    }
  });
});

withPyJwt.describe('bearer-jwt jwksUrl: the issuer down', () => {
  it('a set with no good fetch for jwksMaxAgeSec is dropped (its keys refused), and used again once the issuer is back', async () => {
    const k1 = signingKey('k1');
    const idp = issuer('expiring', [k1]);
    const agent = await startAgent({ config: jwksConfig('expiring', { jwksRefreshSec: 1, jwksMinRefreshSec: 1, jwksMaxAgeSec: 3 }) });
    try {
      const t = token(k1);
      expect(await call(agent, t)).toBe('ok');
      idp.mode = 'down';
      expect(await eventually(() => call(agent, t), 'JWT_NO_MATCHING_KEY', 12_000)).toBe('JWT_NO_MATCHING_KEY');
      await agent.waitForLog((l) => l.msg.startsWith('JWKS expired'));
      idp.mode = 'ok';
      expect(await eventually(() => call(agent, t), 'ok')).toBe('ok');
    } finally {
      await agent.stop();
    }
  });

  it("down at start without security.strict: the agent starts, warns, refuses the issuer's tokens, and accepts them once it answers", async () => {
    const k1 = signingKey('k1');
    const idp = issuer('late', [k1], 'down');
    const agent = await startAgent({ config: jwksConfig('late', { jwksRefreshSec: 60, jwksMinRefreshSec: 1 }) });
    try {
      const warn = await agent.waitForLog((l) => l.level === 'warn' && l.msg.startsWith("starting without the issuer's keys"));
      expect(warn).toMatchObject({ code: 'SKEIN_ERR_HTTP_NETWORK', url: url('late') });
      const client = agent.client({ cert: undefined, key: undefined });
      try {
        const err = await failure(client.dispatch('echo', { args: [1], token: token(k1) }));
        expect(err.details).toMatchObject({ status: 401, reason: 'JWT_NO_MATCHING_KEY', plugin: 'bearer-jwt' });
        expect(err.message).toContain("the issuer's keys (jwksUrl) are not available");
      } finally {
        await client.close();
      }
      idp.mode = 'ok';
      expect(await eventually(() => call(agent, token(k1)), 'ok')).toBe('ok');
    } finally {
      await agent.stop();
    }
  });

  it('down at start under security.strict: exit 2, naming the plugin, the URL and the failure', async () => {
    issuer('strict-down', [signingKey('k1')], 'down');
    const stderr = await startMustFail(jwksConfig('strict-down', {}, {}, { security: { strict: true } }));
    expect(stderr).toContain('SKEIN_ERR_PLUGIN_LOAD');
    expect(stderr).toContain(`plugin "bearer-jwt": setup failed: jwksUrl ${url('strict-down')}: cannot fetch the issuer's keys (SKEIN_ERR_HTTP_NETWORK)`);
    expect(stderr).toContain('security.strict refuses to start without them');
  });
});

withPyJwt.describe('bearer-jwt jwksUrl: what the operator did not allow stops start-up', () => {
  it.each([
    ['a CA other than the pinned one', () => ({ jwksCa: otherCaPath }), {}, 'SKEIN_ERR_HTTP_TLS', 'from the pinned CA'],
    ['the system CAs (no jwksCa) for a private CA', () => ({ jwksCa: undefined }), {}, 'SKEIN_ERR_HTTP_TLS', 'from a CA the system trusts'],
  ])('under security.strict, %s is refused (exit 2)', async (_name, jwt, entry, code, text) => {
    issuer('tls', [signingKey('k1')]);
    const stderr = await startMustFail(jwksConfig('tls', jwt(), entry, { security: { strict: true } }));
    expect(stderr).toContain(`(${code})`);
    expect(stderr).toContain(text);
  });

  it.each([
    ['a host off allowedHosts', {}, { allowedHosts: [] }, 'SKEIN_ERR_HTTP_HOST', 'is not on plugins.enabled[0].allowedHosts'],
    ['a loopback issuer without allowPrivateAddresses', {}, { allowPrivateAddresses: false }, 'SKEIN_ERR_HTTP_ADDRESS', 'set plugins.enabled[0].allowPrivateAddresses'],
  ])('in any mode, %s is refused (exit 2) naming the setting', async (_name, jwt, entry, code, text) => {
    issuer('policy', [signingKey('k1')]);
    const stderr = await startMustFail(jwksConfig('policy', jwt, entry));
    expect(stderr).toContain(`(${code})`);
    expect(stderr).toContain(text);
  });

  it('a redirect to the cloud metadata address is refused even with allowPrivateAddresses and the address on allowedHosts', async () => {
    issuer('redirect', [signingKey('k1')], 'to-metadata');
    const stderr = await startMustFail(jwksConfig('redirect', {}, { allowedHosts: ['localhost', '169.254.169.254'] }));
    expect(stderr).toContain('(SKEIN_ERR_HTTP_ADDRESS)');
    expect(stderr).toContain('169.254.169.254 (link-local)');
  });

  it('a redirect to a host off allowedHosts is refused', async () => {
    issuer('evil', [signingKey('k1')], 'to-evil');
    const stderr = await startMustFail(jwksConfig('evil'));
    expect(stderr).toContain('(SKEIN_ERR_HTTP_HOST)');
    expect(stderr).toContain('redirect to https://evil.test');
  });
});
