/**
 * The shipped plugins (plugins/) loaded by the compiled binary from the repository's plugins
 * folder: JWTs minted by an independent library (Debian's PyJWT) for every algorithm, the
 * rejections each with its reason code, signed nonces made by `skein token sign-nonce`, and
 * routine-policy deciding per identity.
 */
import { execFileSync } from 'node:child_process';
import { createHmac, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, failure, ROOT, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';
import { pythonModules, requires } from '../helpers/requires.ts';

const PYTHON = '/usr/bin/python3';
const withPyJwt = requires(pythonModules(['jwt', 'cryptography'], 'python3-jwt python3-cryptography', PYTHON));

const ed = generateKeyPairSync('ed25519');
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const hmac = randomBytes(32);
const pem = (k: KeyObject, type: 'spki' | 'pkcs8') => String(k.export({ type, format: 'pem' }));
const SIGNERS = {
  EdDSA: pem(ed.privateKey, 'pkcs8'),
  ES256: pem(ec.privateKey, 'pkcs8'),
  RS256: pem(rsa.privateKey, 'pkcs8'),
  HS256: hmac.toString('latin1'),
} as const;

/** Mints a JWT with PyJWT: the independent implementation. */
function mint(alg: keyof typeof SIGNERS, claims: Record<string, unknown>, key: string = SIGNERS[alg], headers: Record<string, unknown> = {}): string {
  const script = `import sys, json, jwt
d = json.loads(sys.stdin.read())
key = d["key"].encode("latin1") if d["alg"] == "HS256" else d["key"]
print(jwt.encode(d["claims"], key, algorithm=d["alg"], headers=d["headers"] or None))`;
  return execFileSync(PYTHON, ['-c', script], { input: JSON.stringify({ alg, key, claims, headers }), encoding: 'utf8' }).trim();
}

const now = () => Math.floor(Date.now() / 1000);
const good = (sub = 'alice', extra: Record<string, unknown> = {}) => ({ sub, iss: 'https://issuer.test', aud: 'skein', exp: now() + 300, ...extra });

let agent: StartedAgent;
let nonceKey: string;

beforeAll(async () => {
  const keys = tempDir();
  nonceKey = join(keys, 'deploy.key');
  expect((await runCli(['keygen', '--out', nonceKey])).code).toBe(0);
  const noncePub = execFileSync('cat', [`${nonceKey}.pub`], { encoding: 'utf8' }).trim();
  agent = await startAgent({
    config: baseConfig({
      workers: { poolSize: 1 },
      plugins: {
        dir: join(ROOT, 'plugins'),
        enabled: [
          {
            name: 'bearer-jwt',
            options: {
              algorithms: ['EdDSA', 'ES256', 'RS256', 'HS256'],
              keys: [pem(ed.publicKey, 'spki'), pem(ec.publicKey, 'spki'), pem(rsa.publicKey, 'spki'), { kty: 'oct', k: hmac.toString('base64url') }],
              issuer: 'https://issuer.test',
              audience: 'skein',
            },
          },
          { name: 'signed-nonce', options: { keys: { deploy: noncePub }, windowSec: 60 } },
          {
            name: 'routine-policy',
            options: {
              rules: [
                { effect: 'allow', identities: ['jwt:*', 'nonce:deploy'], routines: ['echo'] },
                { effect: 'allow', identities: ['jwt:alice'], routines: ['*'] },
                { effect: 'deny', identities: ['jwt:*'], routines: ['fail'], claims: { role: 'intern' } },
                { effect: 'allow', identities: ['spiffe://skein.local/client/*'], routines: ['*'] },
              ],
              default: 'deny',
            },
          },
        ],
      },
      tls: { clientCerts: 'optional' },
    }),
  });
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

const anon = () => agent.client({ cert: undefined, key: undefined });

withPyJwt.describe('bearer-jwt with tokens minted by PyJWT', () => {
  it.each(['EdDSA', 'ES256', 'RS256', 'HS256'] as const)('%s is accepted over one-way TLS', async (alg) => {
    const client = anon();
    try {
      expect(await client.dispatch('echo', { args: [alg], token: mint(alg, good('bob')) })).toBe(alg);
    } finally {
      await client.close();
    }
  });

  const tampered = () => {
    const t = mint('EdDSA', good());
    const [h, p, s] = t.split('.');
    return `${h}.${p}.${s!.slice(0, -4)}AAAA`;
  };
  // PyJWT itself refuses to use a PEM as an HMAC secret, so the attacker's token is built by hand.
  const confusion = () => {
    const body = `${Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify(good())).toString('base64url')}`;
    return `${body}.${createHmac('sha256', pem(rsa.publicKey, 'spki')).update(body).digest('base64url')}`;
  };
  const algNone = () => `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify(good())).toString('base64url')}.`;
  it.each([
    ['a tampered signature', tampered, 'JWT_BAD_SIGNATURE'],
    ['an expired token', () => mint('ES256', good('bob', { exp: now() - 600 })), 'JWT_EXPIRED'],
    ['a token not yet valid', () => mint('ES256', good('bob', { nbf: now() + 600 })), 'JWT_NOT_YET_VALID'],
    ['the wrong audience', () => mint('RS256', good('bob', { aud: 'someone-else' })), 'JWT_WRONG_AUDIENCE'],
    ['the wrong issuer', () => mint('RS256', good('bob', { iss: 'https://evil.test' })), 'JWT_WRONG_ISSUER'],
    ['alg none', algNone, 'JWT_ALG_NOT_ALLOWED'],
    ['HS256 signed with the RSA public key as the secret', confusion, 'JWT_BAD_SIGNATURE'],
    ['a key we do not trust', () => mint('EdDSA', good(), pem(generateKeyPairSync('ed25519').privateKey, 'pkcs8')), 'JWT_BAD_SIGNATURE'],
    ['garbage', () => 'not.a.jwt', 'JWT_MALFORMED'],
  ])('%s → 401 %s', async (_name, token, reason) => {
    const client = anon();
    try {
      const err = await failure(client.dispatch('echo', { args: [1], token: token() }));
      expect(err.code).toBe('SKEIN_ERR_UNAUTHENTICATED');
      expect(err.details).toMatchObject({ status: 401, reason, plugin: 'bearer-jwt' });
      // The agent keeps serving others.
      expect(await client.dispatch('echo', { args: ['next'], token: mint('EdDSA', good()) })).toBe('next');
    } finally {
      await client.close();
    }
  });

  it('no token and no certificate → 401 CREDENTIAL_REQUIRED', async () => {
    const client = anon();
    try {
      expect((await failure(client.dispatch('echo', { args: [1] }))).details.reason).toBe('CREDENTIAL_REQUIRED');
    } finally {
      await client.close();
    }
  });

  it('skein dispatch --token carries the token', async () => {
    const dir = tempDir();
    const tokenFile = join(dir, 'token');
    execFileSync('sh', ['-c', `printf '%s\\n' "$0" > "${tokenFile}"`, mint('EdDSA', good())]);
    const r = await runCli([
      'dispatch',
      'add',
      '--args',
      '[2, 3]',
      '--peer',
      `127.0.0.1:${agent.port}`,
      '--cert',
      agent.pki.cert,
      '--key',
      agent.pki.key,
      '--ca',
      agent.pki.ca,
      '--token-file',
      tokenFile,
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('5');
  });
});

describe('routine-policy over token identities', () => {
  withPyJwt.it('jwt:alice may run add; jwt:bob only echo; an intern may not run fail, alice may', async () => {
    const client = anon();
    try {
      expect(await client.dispatch('add', { args: [1, 2], token: mint('EdDSA', good('alice')) })).toBe(3);
      const bob = await failure(client.dispatch('add', { args: [1, 2], token: mint('EdDSA', good('bob')) }));
      expect(bob.code).toBe('SKEIN_ERR_FORBIDDEN');
      expect(bob.details).toMatchObject({ status: 403, reason: 'POLICY_DEFAULT_DENY', plugin: 'routine-policy', routine: 'add' });
      const intern = await failure(client.dispatch('fail', { token: mint('EdDSA', good('carol', { role: 'intern' })) }));
      expect(intern.details).toMatchObject({ reason: 'POLICY_DENY', routine: 'fail' });
      // The exact identity rule for alice is more specific than the wildcard deny: it runs.
      const alice = await failure(client.dispatch('fail', { token: mint('EdDSA', good('alice', { role: 'intern' })) }));
      expect(alice.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
    } finally {
      await client.close();
    }
  });

  it('the mTLS peer is matched by its SPIFFE ID', async () => {
    const client = agent.client();
    try {
      expect(await client.dispatch('add', { args: [2, 2] })).toBe(4);
    } finally {
      await client.close();
    }
  });
});

describe('signed-nonce tokens from skein token sign-nonce', () => {
  const signNonce = async (routine: string) => {
    const r = await runCli(['token', 'sign-nonce', '--key', nonceKey, '--routine', routine]);
    expect(r.code).toBe(0);
    return r.stdout.trim();
  };

  it('valid is accepted; replayed, wrong-routine and wrong-key are refused with their reasons', async () => {
    const client = anon();
    try {
      const token = await signNonce('echo');
      expect(token).toMatch(/^SkeinNonce [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
      expect(await client.dispatch('echo', { args: ['nonce'], token })).toBe('nonce');
      expect((await failure(client.dispatch('echo', { args: ['again'], token }))).details).toMatchObject({ status: 401, reason: 'NONCE_REPLAYED', plugin: 'signed-nonce' });
      expect((await failure(client.dispatch('echo', { token: await signNonce('add') }))).details.reason).toBe('NONCE_WRONG_ROUTINE');
      const other = join(tempDir(), 'other.key');
      expect((await runCli(['keygen', '--out', other])).code).toBe(0);
      const foreign = (await runCli(['token', 'sign-nonce', '--key', other, '--routine', 'echo'])).stdout.trim();
      expect((await failure(client.dispatch('echo', { token: foreign }))).details.reason).toBe('NONCE_UNKNOWN_KEY');
    } finally {
      await client.close();
    }
  });
});
