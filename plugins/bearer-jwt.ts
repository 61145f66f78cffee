/**
 * bearer-jwt: authenticates `authorization: Bearer <JWT>` (RFC 6750; the scheme is
 * case-insensitive). No authorization header, or another scheme → skip (another plugin's
 * credential). Verification is the host's ctx.crypto.verifyJwt (jose).
 *
 * Options:
 *   algorithms     required, non-empty subset of "EdDSA", "ES256", "RS256", "HS256". Tokens
 *                  with any other `alg`, "none" included, are refused.
 *   keys           PEM public keys ("-----BEGIN PUBLIC KEY-----", SPKI) and/or public JWKs:
 *                    {"kty":"OKP","crv":"Ed25519","x":…}     EdDSA
 *                    {"kty":"EC","crv":"P-256","x":…,"y":…}  ES256
 *                    {"kty":"RSA","n":…,"e":…}               RS256 (at least 2048 bits)
 *                    {"kty":"oct","k":"<base64url>"}         HS256 shared secret, at least
 *                                                            32 bytes (RFC 7518 §3.2)
 *                  A JWK may carry "kid" (then only tokens with that kid, or none, try it) and
 *                  "alg" (it must agree with kty). HS256 secrets are only ever JWKs: a PEM is
 *                  never used as an HMAC secret, which is what defeats the RS256→HS256
 *                  algorithm-confusion attack. Private keys are refused.
 *   jwksFile       path of a JWKS file ({"keys":[…]}), relative to the config file's folder,
 *                  read once at start-up. Keys of other types, curves or algorithms, and
 *                  "use":"enc" keys, are skipped (logged at info); private keys are refused.
 *                  At least one of keys / jwksFile is required.
 *   issuer         expected "iss": a string or a list of accepted strings
 *   audience       expected "aud": a string or a list (the token must name one of them)
 *   clockSkewSec   tolerance for exp / nbf / iat, integer 0–3600 (default 30)
 *   requireExp     refuse tokens without "exp" (default true)
 *   identityClaim  the claim that names the caller (default "sub"); the identity is
 *                  `jwt:<value>`. With several issuers, run one plugin instance per issuer or
 *                  make sure their subjects cannot collide.
 *
 * Every algorithm in `algorithms` needs a key that can serve it (checked when options are
 * validated, and again with the JWKS at start-up).
 *
 * 401 reasons: JWT_<JwtFailure.reason> — JWT_MALFORMED, JWT_ALG_NOT_ALLOWED,
 * JWT_BAD_SIGNATURE, JWT_EXPIRED, JWT_NOT_YET_VALID, JWT_WRONG_ISSUER, JWT_WRONG_AUDIENCE,
 * JWT_MISSING_EXP, JWT_NO_MATCHING_KEY, JWT_INVALID_CLAIMS (also: the identity claim is
 * missing, not a string, longer than 256 characters or holds control characters).
 *
 * Success: identity `jwt:<identityClaim value>`, claims = the verified payload.
 *
 * Only './skein-plugin.ts' is imported: the compiled agent loads this file from disk, where
 * nothing else resolves.
 */
import { definePlugin, type AuthnRequest, type AuthnResult, type JwtFailure, type JwtVerifyOptions, type OptionsFail } from './skein-plugin.ts';

type Alg = JwtVerifyOptions['algorithms'][number];
type Key = JwtVerifyOptions['keys'][number];

export interface BearerJwtOptions {
  algorithms: Alg[];
  keys: Key[];
  jwksFile?: string;
  issuer?: string | string[];
  audience?: string | string[];
  clockSkewSec: number;
  requireExp: boolean;
  identityClaim: string;
}

const ALGORITHMS: readonly Alg[] = ['EdDSA', 'ES256', 'RS256', 'HS256'];
const OPTION_KEYS = ['algorithms', 'keys', 'jwksFile', 'issuer', 'audience', 'clockSkewSec', 'requireExp', 'identityClaim'];
const FAILURE_REASONS = new Set<string>([
  'MALFORMED', 'ALG_NOT_ALLOWED', 'BAD_SIGNATURE', 'EXPIRED', 'NOT_YET_VALID', 'WRONG_ISSUER', 'WRONG_AUDIENCE', 'MISSING_EXP', 'NO_MATCHING_KEY', 'INVALID_CLAIMS',
] satisfies Array<JwtFailure['reason']>);
/** The JWK key type that serves each algorithm. */
const KTY_OF: Record<Alg, string> = { EdDSA: 'OKP', ES256: 'EC', RS256: 'RSA', HS256: 'oct' };
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'];
const B64URL = /^[A-Za-z0-9_-]+$/;
// Compact JWS: three base64url parts; the signature may be empty (alg "none"), which
// verifyJwt then refuses as ALG_NOT_ALLOWED rather than as malformed.
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const MAX_TOKEN_CHARS = 16 * 1024;
const MAX_PEM_CHARS = 16 * 1024;
const MAX_JWKS_KEYS = 1000;
const CONTROL = /[\u0000-\u001f\u007f]/;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Which algorithms a (validated) key can serve. */
function algorithmsOf(key: Key): Alg[] {
  if (typeof key === 'string') return ['EdDSA', 'ES256', 'RS256'];
  return ALGORITHMS.filter((alg) => KTY_OF[alg] === key.kty);
}

function checkPem(pem: string): string | undefined {
  const text = pem.trim();
  if (text.length > MAX_PEM_CHARS) return `PEM longer than ${MAX_PEM_CHARS} characters`;
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) return 'is a private key: configure the public key only (openssl pkey -pubout)';
  if (text.startsWith('-----BEGIN CERTIFICATE-----')) return 'is a certificate: configure its public key (openssl x509 -pubkey -noout)';
  if (text.startsWith('-----BEGIN RSA PUBLIC KEY-----')) return 'is a PKCS#1 RSA key: convert it to SPKI (openssl rsa -RSAPublicKey_in -pubout)';
  if (!/^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----$/.test(text)) {
    return 'must be a PEM public key ("-----BEGIN PUBLIC KEY-----") or a JWK object';
  }
  return undefined;
}

/**
 * What is wrong with a JWK, if anything. `unsupported` problems (another type, curve,
 * algorithm or use) make a JWKS file skip the key; other problems are errors everywhere.
 */
function checkJwk(jwk: Record<string, unknown>): { problem: string; unsupported: boolean } | undefined {
  const bad = (problem: string) => ({ problem, unsupported: false });
  const unsupported = (problem: string) => ({ problem, unsupported: true });
  const { kty, crv, alg, use, kid } = jwk;
  if (typeof kty !== 'string') return bad('JWK has no "kty"');
  if (!Object.values(KTY_OF).includes(kty)) return unsupported(`kty "${kty}" is not supported (OKP, EC, RSA or oct)`);
  if (kty !== 'oct') {
    const priv = PRIVATE_MEMBERS.filter((m) => m in jwk);
    if (priv.length > 0) return bad(`is a private key (has "${priv.join('", "')}"): configure the public key only`);
  }
  if (use !== undefined && use !== 'sig') return unsupported(`"use" is ${JSON.stringify(use)}, not "sig"`);
  if (kid !== undefined && (typeof kid !== 'string' || kid.length === 0)) return bad('"kid" must be a non-empty string');
  if (alg !== undefined) {
    if (typeof alg !== 'string' || !(ALGORITHMS as readonly string[]).includes(alg)) return unsupported(`"alg" ${JSON.stringify(alg)} is not supported (${ALGORITHMS.join(', ')})`);
    if (KTY_OF[alg as Alg] !== kty) return bad(`"alg" ${alg} needs kty "${KTY_OF[alg as Alg]}", not "${kty}"`);
  }
  const member = (name: string) => typeof jwk[name] === 'string' && B64URL.test(jwk[name] as string);
  switch (kty) {
    case 'OKP':
      if (crv !== 'Ed25519') return unsupported(`OKP curve ${JSON.stringify(crv)} is not supported (Ed25519)`);
      if (!member('x')) return bad('OKP JWK needs "x" (base64url)');
      return undefined;
    case 'EC':
      if (crv !== 'P-256') return unsupported(`EC curve ${JSON.stringify(crv)} is not supported (P-256 for ES256)`);
      if (!member('x') || !member('y')) return bad('EC JWK needs "x" and "y" (base64url)');
      return undefined;
    case 'RSA':
      if (!member('n') || !member('e')) return bad('RSA JWK needs "n" and "e" (base64url)');
      // 2048 bits = 256 bytes = 342 base64url characters (a leading zero byte may be dropped).
      if ((jwk.n as string).length < 342) return bad('RSA key is shorter than 2048 bits');
      return undefined;
    default: // oct
      if (!member('k')) return bad('oct JWK needs "k": the HS256 secret, base64url');
      if ((jwk.k as string).length < 43) return bad('HS256 secret is shorter than 32 bytes (RFC 7518 §3.2): use 32 random bytes or more');
      return undefined;
  }
}

function stringOrList(raw: Record<string, unknown>, key: string, fail: OptionsFail): string | string[] | undefined {
  const v = raw[key];
  if (v === undefined) return undefined;
  const ok = (s: unknown) => typeof s === 'string' && s.length > 0 && s.length <= 1024;
  if (ok(v)) return v as string;
  if (Array.isArray(v)) {
    if (v.length === 0) throw fail(key, 'must not be an empty list (omit it to accept any)');
    v.forEach((s, i) => {
      if (!ok(s)) throw fail(`${key}[${i}]`, 'must be a non-empty string');
    });
    return [...(v as string[])];
  }
  throw fail(key, 'must be a string or a list of strings');
}

function parseOptions(raw: unknown, fail: OptionsFail): BearerJwtOptions {
  if (raw === undefined) throw fail('algorithms', 'is required (and keys or jwksFile)');
  if (!isPlainObject(raw)) throw fail('options', 'must be an object');
  for (const k of Object.keys(raw)) {
    if (!OPTION_KEYS.includes(k)) throw fail(k, `unknown option (known: ${OPTION_KEYS.join(', ')})`);
  }

  const algs = raw.algorithms;
  if (algs === undefined) throw fail('algorithms', `is required: a list of ${ALGORITHMS.join(', ')}`);
  if (!Array.isArray(algs) || algs.length === 0) throw fail('algorithms', `must be a non-empty list of ${ALGORITHMS.join(', ')}`);
  const algorithms: Alg[] = [];
  algs.forEach((a, i) => {
    if (typeof a !== 'string' || !(ALGORITHMS as readonly string[]).includes(a)) {
      throw fail(`algorithms[${i}]`, `${JSON.stringify(a)} is not supported (${ALGORITHMS.join(', ')})`);
    }
    if (algorithms.includes(a as Alg)) throw fail(`algorithms[${i}]`, `${a} is listed twice`);
    algorithms.push(a as Alg);
  });

  const keys: Key[] = [];
  if (raw.keys !== undefined) {
    if (!Array.isArray(raw.keys)) throw fail('keys', 'must be a list of PEM public keys or JWK objects');
    raw.keys.forEach((k, i) => {
      if (typeof k === 'string') {
        const problem = checkPem(k);
        if (problem) throw fail(`keys[${i}]`, problem);
        keys.push(k.trim());
      } else if (isPlainObject(k)) {
        const problem = checkJwk(k);
        if (problem) throw fail(`keys[${i}]`, problem.problem);
        keys.push({ ...k });
      } else {
        throw fail(`keys[${i}]`, 'must be a PEM public key or a JWK object');
      }
      if (!algorithmsOf(keys[i]!).some((a) => algorithms.includes(a))) {
        throw fail(`keys[${i}]`, `serves ${algorithmsOf(keys[i]!).join(' / ')}, none of which is in algorithms (${algorithms.join(', ')})`);
      }
    });
  }

  let jwksFile: string | undefined;
  if (raw.jwksFile !== undefined) {
    if (typeof raw.jwksFile !== 'string' || raw.jwksFile.trim() === '') throw fail('jwksFile', 'must be a path (relative to the config file)');
    jwksFile = raw.jwksFile;
  }
  if (keys.length === 0 && jwksFile === undefined) throw fail('keys', 'is required (a non-empty list) unless jwksFile is given');
  // Without a JWKS the key list is final: every algorithm must have a key that serves it.
  if (jwksFile === undefined) {
    const missing = unservedAlgorithm(algorithms, keys);
    if (missing) throw fail('keys', missing);
  }

  const skew = raw.clockSkewSec;
  if (skew !== undefined && (typeof skew !== 'number' || !Number.isInteger(skew) || skew < 0 || skew > 3600)) {
    throw fail('clockSkewSec', `must be an integer between 0 and 3600, got ${JSON.stringify(skew)}`);
  }
  if (raw.requireExp !== undefined && typeof raw.requireExp !== 'boolean') throw fail('requireExp', 'must be true or false');
  const claim = raw.identityClaim;
  if (claim !== undefined && (typeof claim !== 'string' || claim.length === 0 || claim.length > 64)) {
    throw fail('identityClaim', 'must be a claim name (1-64 characters)');
  }

  const issuer = stringOrList(raw, 'issuer', fail);
  const audience = stringOrList(raw, 'audience', fail);
  return {
    algorithms,
    keys,
    ...(jwksFile !== undefined ? { jwksFile } : {}),
    ...(issuer !== undefined ? { issuer } : {}),
    ...(audience !== undefined ? { audience } : {}),
    clockSkewSec: (skew as number | undefined) ?? 30,
    requireExp: (raw.requireExp as boolean | undefined) ?? true,
    identityClaim: (claim as string | undefined) ?? 'sub',
  };
}

function unservedAlgorithm(algorithms: Alg[], keys: Key[]): string | undefined {
  for (const alg of algorithms) {
    if (keys.some((k) => algorithmsOf(k).includes(alg))) continue;
    return alg === 'HS256'
      ? 'algorithm HS256 has no secret: add {"kty":"oct","k":"<base64url of 32+ random bytes>"}'
      : `algorithm ${alg} has no key: add a PEM public key or a ${KTY_OF[alg]} JWK`;
  }
  return undefined;
}

/** Keys from a JWKS file: unsupported keys are skipped, broken or private ones refused. */
function loadJwks(text: string, file: string, log: { info(msg: string, fields?: Record<string, unknown>): void }): Key[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`jwksFile ${file}: not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isPlainObject(doc) || !Array.isArray(doc.keys)) throw new Error(`jwksFile ${file}: expected a JWKS, {"keys": [ … ]}`);
  if (doc.keys.length > MAX_JWKS_KEYS) throw new Error(`jwksFile ${file}: more than ${MAX_JWKS_KEYS} keys`);
  const keys: Key[] = [];
  doc.keys.forEach((k, i) => {
    if (!isPlainObject(k)) throw new Error(`jwksFile ${file}: keys[${i}] is not a JWK object`);
    const problem = checkJwk(k);
    if (problem?.unsupported) {
      log.info('skipping JWKS key', { file, index: i, kid: k.kid, why: problem.problem });
      return;
    }
    if (problem) throw new Error(`jwksFile ${file}: keys[${i}]: ${problem.problem}`);
    keys.push({ ...k });
  });
  return keys;
}

function reject(reason: string, message: string): AuthnResult {
  return { outcome: 'rejected', reason, message };
}

function isJwtFailure(err: unknown): err is JwtFailure {
  return err instanceof Error && typeof (err as { reason?: unknown }).reason === 'string' && FAILURE_REASONS.has((err as JwtFailure).reason);
}

export default definePlugin<BearerJwtOptions>({
  name: 'bearer-jwt',
  version: '1.0.0',
  options: parseOptions,
  setup(ctx) {
    const o = ctx.options;
    const keys = [...o.keys];
    if (o.jwksFile !== undefined) {
      let text: string;
      try {
        text = ctx.readFile(o.jwksFile);
      } catch (err) {
        throw new Error(`jwksFile ${o.jwksFile}: cannot read it: ${(err as Error).message}`, { cause: err });
      }
      keys.push(...loadJwks(text, o.jwksFile, ctx.log));
    }
    const missing = unservedAlgorithm(o.algorithms, keys);
    if (missing) throw new Error(`${o.jwksFile !== undefined ? 'keys / jwksFile' : 'keys'}: ${missing}`);

    const verifyOptions: JwtVerifyOptions = {
      algorithms: o.algorithms,
      keys,
      ...(o.issuer !== undefined ? { issuer: o.issuer } : {}),
      ...(o.audience !== undefined ? { audience: o.audience } : {}),
      clockToleranceSec: o.clockSkewSec,
      requireExp: o.requireExp,
    };

    return {
      async authenticate(req: AuthnRequest): Promise<AuthnResult> {
        const header = req.headers.authorization;
        if (header === undefined) return { outcome: 'skip' };
        const value = header.trim();
        const space = value.search(/\s/);
        // Auth schemes are case-insensitive (RFC 9110 §11.1); other schemes are someone else's.
        if ((space < 0 ? value : value.slice(0, space)).toLowerCase() !== 'bearer') return { outcome: 'skip' };
        const token = space < 0 ? '' : value.slice(space + 1).trim();
        if (token === '') return reject('JWT_MALFORMED', 'empty bearer token');
        if (token.length > MAX_TOKEN_CHARS) return reject('JWT_MALFORMED', `bearer token longer than ${MAX_TOKEN_CHARS} characters`);
        if (!COMPACT.test(token)) return reject('JWT_MALFORMED', 'bearer token is not a compact JWT (three base64url parts separated by ".")');

        let payload: Record<string, unknown>;
        try {
          ({ payload } = await ctx.crypto.verifyJwt(token, verifyOptions));
        } catch (err) {
          // Anything but a JwtFailure is a fault of the host, not of the caller: let the host
          // fail closed and report it as such.
          if (!isJwtFailure(err)) throw err;
          return reject(`JWT_${err.reason}`, err.message);
        }

        const subject = payload[o.identityClaim];
        if (typeof subject !== 'string' || subject === '') return reject('JWT_INVALID_CLAIMS', `token has no "${o.identityClaim}" claim (a non-empty string) to identify the caller`);
        if (subject.length > 256 || CONTROL.test(subject)) return reject('JWT_INVALID_CLAIMS', `"${o.identityClaim}" claim is longer than 256 characters or holds control characters`);
        return { outcome: 'authenticated', identity: `jwt:${subject}`, claims: payload };
      },
    };
  },
});
