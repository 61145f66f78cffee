/**
 * bearer-jwt: every algorithm accepted with PEM and JWK keys, every failure with its reason
 * (tampering, time, audience, issuer, alg "none", RS256→HS256 confusion, wrong key, garbage),
 * skip for absent or foreign credentials, JWKS files, option validation, and tokens minted by
 * an independent implementation (Debian's python3-jwt).
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import plugin from '../../plugins/bearer-jwt.ts';
import type { AuthnResult, Hooks } from '../../agent/plugin-host/api.ts';
import { pythonModules, requires } from '../helpers/requires.ts';
import { HttpTally } from '../../agent/plugin-host/http.ts';
import { authnRequest, optionsError, setupPlugin, tempDir, type Clock } from './helpers.ts';

const NOW = 1_750_000_000_000;
const SEC = NOW / 1000;

type Alg = 'EdDSA' | 'ES256' | 'RS256';
interface Pair {
  privateKey: CryptoKey;
  pem: string;
  jwk: JWK;
}
const pairs = {} as Record<Alg, Pair>;
let otherEd: Pair;
const secret = randomBytes(32);
const octJwk = { kty: 'oct', k: secret.toString('base64url') };

async function makePair(alg: Alg): Promise<Pair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
  return { privateKey, pem: await exportSPKI(publicKey), jwk: await exportJWK(publicKey) };
}

beforeAll(async () => {
  for (const alg of ['EdDSA', 'ES256', 'RS256'] as const) pairs[alg] = await makePair(alg);
  otherEd = await makePair('EdDSA');
});

interface MintOptions {
  alg?: Alg | 'HS256';
  key?: CryptoKey | Uint8Array;
  claims?: Record<string, unknown>;
  exp?: number | null;
  kid?: string;
}

/** A token signed now (by the injected clock) that expires in 5 minutes unless told otherwise. */
async function mint(o: MintOptions = {}): Promise<string> {
  const alg = o.alg ?? 'EdDSA';
  const key = o.key ?? (alg === 'HS256' ? secret : pairs[alg].privateKey);
  const jwt = new SignJWT({ sub: 'alice', ...o.claims }).setProtectedHeader({ alg, ...(o.kid ? { kid: o.kid } : {}) }).setIssuedAt(SEC);
  if (o.exp !== null) jwt.setExpirationTime(o.exp ?? SEC + 300);
  return jwt.sign(key);
}

const ALL = { algorithms: ['EdDSA', 'ES256', 'RS256', 'HS256'] };

async function hooks(options: Record<string, unknown>, clock: Clock = { now: NOW }, baseDir?: string): Promise<Hooks> {
  return setupPlugin(plugin, options, clock, baseDir);
}

async function authn(h: Hooks, authorization: string | undefined, routine = 'echo'): Promise<AuthnResult> {
  return h.authenticate!(authnRequest({ authorization }, routine));
}

function reasonOf(r: AuthnResult): string {
  return r.outcome === 'rejected' ? r.reason : r.outcome;
}

describe('bearer-jwt: accepted tokens', () => {
  for (const alg of ['EdDSA', 'ES256', 'RS256'] as const) {
    it(`${alg} with a PEM public key → jwt:<sub> with the payload as claims`, async () => {
      const h = await hooks({ algorithms: [alg], keys: [pairs[alg].pem] });
      const r = await authn(h, `Bearer ${await mint({ alg, claims: { role: 'ops' } })}`);
      expect(r).toEqual({ outcome: 'authenticated', identity: 'jwt:alice', claims: { sub: 'alice', role: 'ops', iat: SEC, exp: SEC + 300 } });
    });
    it(`${alg} with a JWK`, async () => {
      const h = await hooks({ algorithms: [alg], keys: [pairs[alg].jwk] });
      expect(await authn(h, `Bearer ${await mint({ alg })}`)).toMatchObject({ outcome: 'authenticated', identity: 'jwt:alice' });
    });
  }

  it('HS256 with an oct JWK secret', async () => {
    const h = await hooks({ algorithms: ['HS256'], keys: [octJwk] });
    expect(await authn(h, `Bearer ${await mint({ alg: 'HS256' })}`)).toMatchObject({ outcome: 'authenticated', identity: 'jwt:alice' });
  });

  it('all four algorithms side by side, each token finds its key', async () => {
    const h = await hooks({ ...ALL, keys: [pairs.EdDSA.pem, pairs.ES256.jwk, pairs.RS256.pem, octJwk] });
    for (const alg of ['EdDSA', 'ES256', 'RS256', 'HS256'] as const) {
      expect(reasonOf(await authn(h, `Bearer ${await mint({ alg })}`)), alg).toBe('authenticated');
    }
  });

  it('the scheme is case-insensitive and surrounding spaces are ignored', async () => {
    const h = await hooks({ algorithms: ['EdDSA'], keys: [pairs.EdDSA.pem] });
    const token = await mint();
    for (const header of [`bearer ${token}`, `BEARER ${token}`, `  Bearer   ${token}  `]) {
      expect(reasonOf(await authn(h, header)), header.slice(0, 10)).toBe('authenticated');
    }
  });

  it('issuer and audience lists accept any listed value; identityClaim picks another claim', async () => {
    const h = await hooks({ algorithms: ['EdDSA'], keys: [pairs.EdDSA.pem], issuer: ['https://a', 'https://b'], audience: ['skein', 'other'], identityClaim: 'email' });
    const r = await authn(h, `Bearer ${await mint({ claims: { iss: 'https://b', aud: ['x', 'skein'], email: 'alice@example.org' } })}`);
    expect(r).toMatchObject({ outcome: 'authenticated', identity: 'jwt:alice@example.org' });
  });

  it('an expired token within clockSkewSec is still accepted; requireExp false accepts no exp', async () => {
    const h = await hooks({ algorithms: ['EdDSA'], keys: [pairs.EdDSA.pem], clockSkewSec: 30 });
    expect(reasonOf(await authn(h, `Bearer ${await mint({ exp: SEC - 20 })}`))).toBe('authenticated');
    const lax = await hooks({ algorithms: ['EdDSA'], keys: [pairs.EdDSA.pem], requireExp: false });
    expect(reasonOf(await authn(lax, `Bearer ${await mint({ exp: null })}`))).toBe('authenticated');
  });
});

describe('bearer-jwt: rejected tokens, each with its reason', () => {
  let h: Hooks;
  beforeAll(async () => {
    h = await hooks({ algorithms: ['EdDSA', 'RS256'], keys: [pairs.EdDSA.pem, pairs.RS256.pem], issuer: 'https://idp', audience: 'skein' });
  });
  const good = { iss: 'https://idp', aud: 'skein' };

  it('the baseline token is accepted', async () => {
    expect(reasonOf(await authn(h, `Bearer ${await mint({ claims: good })}`))).toBe('authenticated');
  });

  it('tampered signature → JWT_BAD_SIGNATURE', async () => {
    const [head, body, sig] = (await mint({ claims: good })).split('.') as [string, string, string];
    const flipped = sig.slice(0, 10) + (sig[10] === 'A' ? 'B' : 'A') + sig.slice(11);
    const r = await authn(h, `Bearer ${head}.${body}.${flipped}`);
    expect(r).toMatchObject({ outcome: 'rejected', reason: 'JWT_BAD_SIGNATURE' });
    expect((r as { message: string }).message).toMatch(/signature/);
  });

  it('tampered payload (sub changed, signature kept) → JWT_BAD_SIGNATURE', async () => {
    const [head, , sig] = (await mint({ claims: good })).split('.');
    const body = Buffer.from(JSON.stringify({ sub: 'root', ...good, iat: SEC, exp: SEC + 300 })).toString('base64url');
    expect(reasonOf(await authn(h, `Bearer ${head}.${body}.${sig}`))).toBe('JWT_BAD_SIGNATURE');
  });

  it('expired beyond the skew → JWT_EXPIRED', async () => {
    expect(reasonOf(await authn(h, `Bearer ${await mint({ claims: good, exp: SEC - 31 })}`))).toBe('JWT_EXPIRED');
  });

  it('the same token expires when the clock moves', async () => {
    const clock = { now: NOW };
    const moving = await hooks({ algorithms: ['EdDSA'], keys: [pairs.EdDSA.pem] }, clock);
    const token = await mint();
    expect(reasonOf(await authn(moving, `Bearer ${token}`))).toBe('authenticated');
    clock.now = NOW + 331_000;
    expect(reasonOf(await authn(moving, `Bearer ${token}`))).toBe('JWT_EXPIRED');
  });

  it('not yet valid (nbf in the future) → JWT_NOT_YET_VALID', async () => {
    expect(reasonOf(await authn(h, `Bearer ${await mint({ claims: { ...good, nbf: SEC + 120 } })}`))).toBe('JWT_NOT_YET_VALID');
  });

  it('wrong audience → JWT_WRONG_AUDIENCE; no audience → JWT_WRONG_AUDIENCE', async () => {
    expect(reasonOf(await authn(h, `Bearer ${await mint({ claims: { ...good, aud: 'someone-else' } })}`))).toBe('JWT_WRONG_AUDIENCE');
    expect(reasonOf(await authn(h, `Bearer ${await mint({ claims: { iss: 'https://idp' } })}`))).toBe('JWT_WRONG_AUDIENCE');
  });

  it('wrong issuer → JWT_WRONG_ISSUER', async () => {
    expect(reasonOf(await authn(h, `Bearer ${await mint({ claims: { ...good, iss: 'https://evil' } })}`))).toBe('JWT_WRONG_ISSUER');
  });

  it('alg "none" (unsigned) → JWT_ALG_NOT_ALLOWED', async () => {
    const body = Buffer.from(JSON.stringify({ sub: 'root', ...good, exp: SEC + 300 })).toString('base64url');
    // {"alg":"none"} and an empty signature, as in RFC 7519 §6.1.
    const r = await authn(h, `Bearer eyJhbGciOiJub25lIn0.${body}.`);
    expect(r).toMatchObject({ outcome: 'rejected', reason: 'JWT_ALG_NOT_ALLOWED' });
    expect((r as { message: string }).message).toContain('"none"');
  });

  it('an allowed-list miss (HS256 token, HS256 not configured) → JWT_ALG_NOT_ALLOWED', async () => {
    expect(reasonOf(await authn(h, `Bearer ${await mint({ alg: 'HS256' })}`))).toBe('JWT_ALG_NOT_ALLOWED');
  });

  it('RS256→HS256 confusion: HMAC keyed with the RSA public key PEM is refused even when HS256 is allowed', async () => {
    const forged = await mint({ alg: 'HS256', key: new TextEncoder().encode(pairs.RS256.pem), claims: { ...good, sub: 'root' } });
    // HS256 not allowed: refused by algorithm.
    expect(reasonOf(await authn(h, `Bearer ${forged}`))).toBe('JWT_ALG_NOT_ALLOWED');
    // HS256 allowed with its own secret next to the RSA PEM: the PEM is never an HMAC key.
    const both = await hooks({ algorithms: ['RS256', 'HS256'], keys: [pairs.RS256.pem, octJwk], issuer: 'https://idp', audience: 'skein' });
    expect(reasonOf(await authn(both, `Bearer ${forged}`))).toBe('JWT_BAD_SIGNATURE');
    // Also with the PEM's exact bytes plus or minus its trailing newline.
    const trimmed = await mint({ alg: 'HS256', key: new TextEncoder().encode(pairs.RS256.pem.trim()), claims: good });
    expect(reasonOf(await authn(both, `Bearer ${trimmed}`))).toBe('JWT_BAD_SIGNATURE');
    // And a config offering only the PEM for HS256 is refused outright.
    expect(optionsError(plugin, { algorithms: ['RS256', 'HS256'], keys: [pairs.RS256.pem] })).toMatch(/^keys: algorithm HS256 has no secret/);
  });

  it('signed by another key → JWT_BAD_SIGNATURE', async () => {
    expect(reasonOf(await authn(h, `Bearer ${await mint({ key: otherEd.privateKey, claims: good })}`))).toBe('JWT_BAD_SIGNATURE');
  });

  it('a kid no configured key has → JWT_NO_MATCHING_KEY', async () => {
    const kidded = await hooks({ algorithms: ['ES256'], keys: [{ ...pairs.ES256.jwk, kid: 'k1' }] });
    expect(reasonOf(await authn(kidded, `Bearer ${await mint({ alg: 'ES256', kid: 'k1' })}`))).toBe('authenticated');
    expect(reasonOf(await authn(kidded, `Bearer ${await mint({ alg: 'ES256', kid: 'k2' })}`))).toBe('JWT_NO_MATCHING_KEY');
  });

  it('no exp → JWT_MISSING_EXP (requireExp defaults to true)', async () => {
    expect(reasonOf(await authn(h, `Bearer ${await mint({ claims: good, exp: null })}`))).toBe('JWT_MISSING_EXP');
  });

  it('no identity claim → JWT_INVALID_CLAIMS', async () => {
    const r = await authn(h, `Bearer ${await mint({ claims: { ...good, sub: undefined } })}`);
    expect(r).toMatchObject({ outcome: 'rejected', reason: 'JWT_INVALID_CLAIMS' });
    expect((r as { message: string }).message).toContain('"sub"');
    expect(reasonOf(await authn(h, `Bearer ${await mint({ claims: { ...good, sub: 'a\nb' } })}`))).toBe('JWT_INVALID_CLAIMS');
  });

  it('garbage → JWT_MALFORMED', async () => {
    for (const token of ['garbage', 'a.b.c', 'eyJhbGciOiJFZERTQSJ9..', '....', 'x'.repeat(20_000), 'eyJ hbGc.x.y']) {
      const r = await authn(h, `Bearer ${token}`);
      expect(r, token.slice(0, 20)).toMatchObject({ outcome: 'rejected', reason: 'JWT_MALFORMED' });
      expect((r as { message: string }).message.length).toBeLessThan(300);
    }
    expect(reasonOf(await authn(h, 'Bearer'))).toBe('JWT_MALFORMED');
    expect(reasonOf(await authn(h, 'Bearer    '))).toBe('JWT_MALFORMED');
  });

  it('no authorization header → skip; another scheme → skip', async () => {
    expect(await authn(h, undefined)).toEqual({ outcome: 'skip' });
    expect(await authn(h, 'Basic YWxpY2U6c2VjcmV0')).toEqual({ outcome: 'skip' });
    expect(await authn(h, 'SkeinNonce abc.def')).toEqual({ outcome: 'skip' });
    expect(await authn(h, 'Bearerish token')).toEqual({ outcome: 'skip' });
  });
});

describe('bearer-jwt: JWKS file', () => {
  it('reads the JWKS relative to the config folder once at setup, skipping keys it cannot use', async () => {
    const dir = tempDir();
    const enc = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    writeFileSync(
      join(dir, 'jwks.json'),
      JSON.stringify({
        keys: [
          { ...enc, use: 'enc', alg: 'RSA-OAEP' },
          { kty: 'EC', crv: 'P-384', x: 'AA', y: 'AA' },
          { ...pairs.ES256.jwk, kid: 'es', use: 'sig' },
        ],
      }),
    );
    const h = await hooks({ algorithms: ['ES256'], jwksFile: 'jwks.json' }, { now: NOW }, dir);
    writeFileSync(join(dir, 'jwks.json'), 'changed after start-up: not read again');
    expect(reasonOf(await authn(h, `Bearer ${await mint({ alg: 'ES256', kid: 'es' })}`))).toBe('authenticated');
  });

  it('refuses a missing file, a non-JWKS, a private key, and a JWKS without a key for an algorithm', async () => {
    const dir = tempDir();
    const setupError = async (content: string | undefined, algorithms = ['ES256']) => {
      if (content !== undefined) writeFileSync(join(dir, 'jwks.json'), content);
      return hooks({ algorithms, jwksFile: content === undefined ? 'missing.json' : 'jwks.json' }, { now: NOW }, dir).then(
        () => 'no error',
        (err: Error) => err.message,
      );
    };
    expect(await setupError(undefined)).toMatch(/^jwksFile missing\.json: cannot read it/);
    expect(await setupError('{"keys": {}}')).toMatch(/expected a JWKS/);
    expect(await setupError('not json')).toMatch(/not JSON/);
    const priv = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    expect(await setupError(JSON.stringify({ keys: [priv] }))).toMatch(/keys\[0\]: is a private key/);
    expect(await setupError(JSON.stringify({ keys: [pairs.ES256.jwk] }), ['ES256', 'HS256'])).toMatch(/HS256 has no secret/);
  });
});

describe('bearer-jwt: options validation names the key', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['unknown option', { algoritms: ['EdDSA'], keys: ['x'] }, /^algoritms: unknown option/],
    ['no options', undefined, /^algorithms: is required/],
    ['not an object', 'EdDSA', /^options: must be an object/],
    ['algorithms missing', { keys: [octJwk] }, /^algorithms: is required/],
    ['empty algorithms', { algorithms: [], keys: [octJwk] }, /^algorithms: must be a non-empty list/],
    ['unsupported algorithm', { algorithms: ['HS256', 'HS512'], keys: [octJwk] }, /^algorithms\[1\]: "HS512" is not supported/],
    ['alg none', { algorithms: ['none'], keys: [octJwk] }, /^algorithms\[0\]: "none" is not supported/],
    ['duplicate algorithm', { algorithms: ['HS256', 'HS256'], keys: [octJwk] }, /^algorithms\[1\]: HS256 is listed twice/],
    ['no keys at all', { algorithms: ['HS256'] }, /^keys: is required/],
    ['keys not a list', { algorithms: ['HS256'], keys: octJwk }, /^keys: must be a list/],
    ['a private PEM', { algorithms: ['EdDSA'], keys: ['-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----'] }, /^keys\[0\]: is a private key/],
    ['a certificate', { algorithms: ['RS256'], keys: ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'] }, /^keys\[0\]: is a certificate/],
    ['not a key', { algorithms: ['RS256'], keys: ['hello'] }, /^keys\[0\]: must be a PEM public key/],
    ['a number', { algorithms: ['RS256'], keys: [42] }, /^keys\[0\]: must be a PEM public key or a JWK/],
    ['short HS256 secret', { algorithms: ['HS256'], keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }, /^keys\[0\]: HS256 secret is shorter than 32 bytes/],
    ['private JWK', { algorithms: ['EdDSA'], keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'AA', d: 'AA' }] }, /^keys\[0\]: is a private key/],
    ['unsupported curve', { algorithms: ['ES256'], keys: [{ kty: 'EC', crv: 'P-521', x: 'AA', y: 'AA' }] }, /^keys\[0\]: EC curve "P-521" is not supported/],
    ['alg/kty mismatch', { algorithms: ['HS256'], keys: [{ ...octJwk, alg: 'RS256' }] }, /^keys\[0\]: "alg" RS256 needs kty "RSA"/],
    ['key for no configured alg', { algorithms: ['EdDSA'], keys: [octJwk] }, /^keys\[0\]: serves HS256, none of which is in algorithms/],
    ['algorithm without a key', { algorithms: ['EdDSA', 'ES256'], keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'AA' }] }, /^keys: algorithm ES256 has no key/],
    ['empty jwksFile', { algorithms: ['EdDSA'], jwksFile: '' }, /^jwksFile: must be a path/],
    ['negative skew', { algorithms: ['HS256'], keys: [octJwk], clockSkewSec: -1 }, /^clockSkewSec: must be an integer between 0 and 3600/],
    ['fractional skew', { algorithms: ['HS256'], keys: [octJwk], clockSkewSec: 1.5 }, /^clockSkewSec: must be an integer/],
    ['requireExp string', { algorithms: ['HS256'], keys: [octJwk], requireExp: 'yes' }, /^requireExp: must be true or false/],
    ['empty issuer list', { algorithms: ['HS256'], keys: [octJwk], issuer: [] }, /^issuer: must not be an empty list/],
    ['bad audience item', { algorithms: ['HS256'], keys: [octJwk], audience: ['ok', 3] }, /^audience\[1\]: must be a non-empty string/],
    ['empty identityClaim', { algorithms: ['HS256'], keys: [octJwk], identityClaim: '' }, /^identityClaim: must be a claim name/],
    ['jwksUrl over http', { algorithms: ['EdDSA'], jwksUrl: 'http://idp.test/jwks.json' }, /^jwksUrl: must be an https:\/\/ URL/],
    ['jwksUrl with credentials', { algorithms: ['EdDSA'], jwksUrl: 'https://u:p@idp.test/jwks.json' }, /^jwksUrl: must be an https:\/\/ URL without credentials/],
    ['jwksUrl not a URL', { algorithms: ['EdDSA'], jwksUrl: 'idp.test' }, /^jwksUrl: must be an https:\/\/ URL/],
    ['a jwks option without jwksUrl', { algorithms: ['HS256'], keys: [octJwk], jwksRefreshSec: 60 }, /^jwksRefreshSec: only applies with jwksUrl/],
    ['jwksRefreshSec 0', { algorithms: ['EdDSA'], jwksUrl: 'https://idp.test/j', jwksRefreshSec: 0 }, /^jwksRefreshSec: must be an integer from 1 to 86400/],
    ['jwksMaxAgeSec below the refresh', { algorithms: ['EdDSA'], jwksUrl: 'https://idp.test/j', jwksRefreshSec: 600, jwksMaxAgeSec: 60 }, /^jwksMaxAgeSec: must be at least jwksRefreshSec \(600\)/],
    ["jwksTimeoutMs beyond setup's budget", { algorithms: ['EdDSA'], jwksUrl: 'https://idp.test/j', jwksTimeoutMs: 20_000 }, /^jwksTimeoutMs: must be an integer from 100 to 9000/],
    ['jwksMaxBytes too small', { algorithms: ['EdDSA'], jwksUrl: 'https://idp.test/j', jwksMaxBytes: 10 }, /^jwksMaxBytes: must be an integer from 1024/],
    ['jwksCa a private key', { algorithms: ['EdDSA'], jwksUrl: 'https://idp.test/j', jwksCa: '-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----' }, /^jwksCa: must be PEM CA certificate/],
  ];
  for (const [what, raw, expected] of cases) {
    it(what, () => {
      expect(optionsError(plugin, raw)).toMatch(expected);
    });
  }

  it('jwksUrl alone is enough, with its defaults', () => {
    expect(plugin.options!({ algorithms: ['EdDSA'], jwksUrl: 'https://idp.test/jwks.json' }, (k, m) => new Error(`${k}: ${m}`)).jwks).toEqual({
      url: 'https://idp.test/jwks.json',
      refreshSec: 300,
      minRefreshSec: 30,
      maxAgeSec: 86_400,
      maxBytes: 256 * 1024,
      timeoutMs: 5000,
    });
  });

  it('defaults: clockSkewSec 30, requireExp true, identityClaim sub', () => {
    expect(plugin.options!({ algorithms: ['HS256'], keys: [octJwk] }, (k, m) => new Error(`${k}: ${m}`))).toEqual({
      algorithms: ['HS256'],
      keys: [octJwk],
      clockSkewSec: 30,
      requireExp: true,
      identityClaim: 'sub',
    });
  });
});

// ---------------------------------------------------------------------------------------------
// An independent JWT implementation: Debian's python3-jwt (PyJWT) mints, the plugin verifies.
// ---------------------------------------------------------------------------------------------
const PYTHON = '/usr/bin/python3';
const withPyJwt = requires(pythonModules(['jwt', 'cryptography'], 'python3-jwt python3-cryptography', PYTHON));

function pyMint(alg: string, key: string, payload: Record<string, unknown>, headers: Record<string, unknown> = {}): string {
  const script = [
    'import base64, json, sys, jwt',
    'a = json.load(sys.stdin)',
    "key = base64.urlsafe_b64decode(a['key'] + '==') if a['alg'] == 'HS256' else a['key']",
    "sys.stdout.write(jwt.encode(a['payload'], key, algorithm=a['alg'], headers=a['headers'] or None))",
  ].join('\n');
  return execFileSync(PYTHON, ['-c', script], { input: JSON.stringify({ alg, key, payload, headers }), encoding: 'utf8' }).trim();
}

describe('bearer-jwt: tokens minted by python3-jwt (PyJWT)', () => {
  withPyJwt.it('EdDSA, ES256, RS256 and HS256 tokens from PyJWT verify; a PyJWT "none" token is refused', async () => {
    const keys = {
      EdDSA: generateKeyPairSync('ed25519'),
      ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
      RS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
    };
    const h = await hooks({
      ...ALL,
      keys: [...Object.values(keys).map((k) => k.publicKey.export({ format: 'pem', type: 'spki' }).toString()), octJwk],
      issuer: 'https://idp',
      audience: 'skein',
    });
    const payload = { sub: 'py-user', iss: 'https://idp', aud: 'skein', iat: SEC, exp: SEC + 60 };
    for (const [alg, pair] of Object.entries(keys)) {
      const token = pyMint(alg, pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), payload, { kid: `py-${alg}` });
      expect(await authn(h, `Bearer ${token}`), alg).toMatchObject({ outcome: 'authenticated', identity: 'jwt:py-user', claims: payload });
    }
    expect(await authn(h, `Bearer ${pyMint('HS256', octJwk.k, payload)}`)).toMatchObject({ outcome: 'authenticated', identity: 'jwt:py-user' });
    expect(reasonOf(await authn(h, `Bearer ${pyMint('HS256', octJwk.k, { ...payload, exp: SEC - 60 })}`))).toBe('JWT_EXPIRED');
    expect(reasonOf(await authn(h, `Bearer ${pyMint('none', '', payload)}`))).toBe('JWT_ALG_NOT_ALLOWED');
  });
});

describe('bearer-jwt: jwksUrl through ctx.http, without a network', () => {
  it('a host the operator did not allow stops setup in any mode, and the request is counted', async () => {
    const counted: string[] = [];
    const tally = new HttpTally('bearer-jwt');
    tally.bind({ pluginHttpRequest: (_p, outcome) => counted.push(outcome) });
    await expect(setupPlugin(plugin, { algorithms: ['EdDSA'], jwksUrl: 'https://idp.test/jwks.json' }, undefined, undefined, { tally })).rejects.toThrow(
      /^jwksUrl https:\/\/idp\.test\/jwks\.json: cannot fetch the issuer's keys \(SKEIN_ERR_HTTP_HOST\): plugin "bearer-jwt": .*is not on plugins\.enabled\[0\]\.allowedHosts/,
    );
    expect(counted).toEqual(['SKEIN_ERR_HTTP_HOST']);
  });
});
