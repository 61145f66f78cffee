/**
 * The host context handed to each plugin's setup(): everything a plugin needs, so plugins
 * carry no dependencies of their own. JWT verification uses jose (a well-kept JOSE
 * library); Ed25519 uses node:crypto through signing/.
 */
import { createHash, timingSafeEqual as nodeTimingSafeEqual, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { decodeProtectedHeader, errors as joseErrors, importJWK, importSPKI, jwtVerify, type CryptoKey, type JWK } from 'jose';
import { publicKeyFromRaw, readPublicKey } from '../../signing/index.ts';
import type { Logger } from '../log/index.ts';
import type { JwtFailure, JwtVerified, JwtVerifyOptions, PluginContext, PluginHttp } from './api.ts';

export interface ContextDeps {
  log: Logger;
  now?: () => number;
  /** Folder relative paths in readFile resolve against (the config file's). */
  baseDir: string;
  /** The plugin's guarded outbound client (http.ts), bound to what the operator allowed it. */
  http: PluginHttp;
  /** security.strict. */
  strict: boolean;
}

export function createContext<O>(name: string, options: O, deps: ContextDeps): PluginContext<O> {
  const now = deps.now ?? (() => Date.now());
  return {
    name,
    options,
    log: deps.log.child({ plugin: name }),
    now,
    crypto: {
      timingSafeEqual,
      sha256Hex: (data) => createHash('sha256').update(data).digest('hex'),
      verifyJwt: (token, opts) => verifyJwt(token, opts, now),
      verifyEd25519,
      parseEd25519PublicKey: (text) => readPublicKey(text),
    },
    readFile: (path) => readFileSync(resolve(deps.baseDir, path), 'utf8'),
    http: deps.http,
    strict: deps.strict,
  };
}

export function timingSafeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const x = typeof a === 'string' ? Buffer.from(a) : a;
  const y = typeof b === 'string' ? Buffer.from(b) : b;
  // Length is not secret for tokens compared here; compare equal-length buffers only.
  if (x.length !== y.length) return false;
  return nodeTimingSafeEqual(x, y);
}

const ed25519Keys = new Map<string, KeyObject>();

function verifyEd25519(publicKey: string | Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const cacheKey = typeof publicKey === 'string' ? publicKey : Buffer.from(publicKey).toString('base64');
  let key = ed25519Keys.get(cacheKey);
  if (!key) {
    key = publicKeyFromRaw(typeof publicKey === 'string' ? readPublicKey(publicKey) : publicKey);
    ed25519Keys.set(cacheKey, key);
  }
  try {
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}

// Imported keys are cached: importing a PEM costs far more than verifying with it.
const importedKeys = new Map<string, Promise<CryptoKey | Uint8Array>>();

function importKey(key: string | Record<string, unknown>, alg: string): Promise<CryptoKey | Uint8Array> {
  const id = `${alg}\u0000${typeof key === 'string' ? key : JSON.stringify(key)}`;
  let imported = importedKeys.get(id);
  if (!imported) {
    imported = typeof key === 'string' ? importSPKI(key, alg) : importJWK(key as JWK, alg);
    importedKeys.set(id, imported);
  }
  return imported;
}

/** Which configured keys can verify a token signed with `alg` (and `kid`, when given). */
function candidates(keys: JwtVerifyOptions['keys'], alg: string, kid: unknown): JwtVerifyOptions['keys'] {
  return keys.filter((k) => {
    if (typeof k === 'string') {
      // PEM public keys never serve as HMAC secrets: that is the algorithm-confusion attack.
      return alg !== 'HS256';
    }
    if (kid !== undefined && k.kid !== undefined && k.kid !== kid) return false;
    if (alg === 'HS256') return k.kty === 'oct';
    if (alg === 'EdDSA') return k.kty === 'OKP';
    if (alg === 'ES256') return k.kty === 'EC';
    return k.kty === 'RSA';
  });
}

function fail(reason: JwtFailure['reason'], message: string): JwtFailure {
  return Object.assign(new Error(message), { reason, name: 'JwtFailure' }) as JwtFailure;
}

/**
 * Verified tokens, per options object (same keys, issuer, audience), keyed by the token's exact
 * text: a bearer token is presented on every call, and its signature check (~150 µs for EdDSA
 * under Bun) dominated an authorized dispatch. A hit re-checks the time claims against the
 * clock, so expiry still applies; the cache is bounded and drops its oldest entries.
 */
const VERIFIED_MAX = 10_000;
const verified = new WeakMap<JwtVerifyOptions, Map<string, JwtVerified>>();

export async function verifyJwt(token: string, opts: JwtVerifyOptions, now: () => number): Promise<JwtVerified> {
  let cache = verified.get(opts);
  const hit = cache?.get(token);
  if (hit) {
    checkTimes(hit.payload, opts, now());
    return hit;
  }
  const result = await verifyUncached(token, opts, now);
  if (!cache) verified.set(opts, (cache = new Map()));
  if (cache.size >= VERIFIED_MAX) cache.delete(cache.keys().next().value!);
  cache.set(token, result);
  return result;
}

/** exp/nbf as jose checks them (with the same tolerance), for cached tokens. */
function checkTimes(payload: Record<string, unknown>, opts: JwtVerifyOptions, nowMs: number): void {
  const tolerance = opts.clockToleranceSec ?? 30;
  const nowSec = Math.floor(nowMs / 1000);
  if (typeof payload.exp === 'number' && payload.exp <= nowSec - tolerance) throw fail('EXPIRED', 'token has expired');
  if (typeof payload.nbf === 'number' && payload.nbf > nowSec + tolerance) throw fail('NOT_YET_VALID', 'token is not yet valid');
}

async function verifyUncached(token: string, opts: JwtVerifyOptions, now: () => number): Promise<JwtVerified> {
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(token) as Record<string, unknown>;
  } catch {
    throw fail('MALFORMED', 'not a compact JWS');
  }
  const alg = String(header.alg);
  if (!(opts.algorithms as string[]).includes(alg)) throw fail('ALG_NOT_ALLOWED', `alg ${JSON.stringify(header.alg)} is not allowed (allowed: ${opts.algorithms.join(', ')})`);
  const keys = candidates(opts.keys, alg, header.kid);
  if (keys.length === 0) throw fail('NO_MATCHING_KEY', `no configured key for alg ${alg}${header.kid ? ` and kid ${String(header.kid)}` : ''}`);
  let lastSignatureError: unknown;
  for (const key of keys) {
    let imported: CryptoKey | Uint8Array;
    try {
      imported = await importKey(key, alg);
    } catch {
      continue; // a key of another curve or size for the same kty
    }
    try {
      const { payload, protectedHeader } = await jwtVerify(token, imported, {
        algorithms: [alg],
        ...(opts.issuer !== undefined ? { issuer: opts.issuer } : {}),
        ...(opts.audience !== undefined ? { audience: opts.audience } : {}),
        clockTolerance: opts.clockToleranceSec ?? 30,
        currentDate: new Date(now()),
        ...(opts.requireExp === false ? {} : { requiredClaims: ['exp'] }),
      });
      return { header: protectedHeader as Record<string, unknown>, payload: payload as Record<string, unknown> };
    } catch (err) {
      if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
        lastSignatureError = err;
        continue;
      }
      throw mapJoseError(err);
    }
  }
  throw lastSignatureError ? fail('BAD_SIGNATURE', 'signature does not verify with any configured key') : fail('NO_MATCHING_KEY', `no usable key for alg ${alg}`);
}

function mapJoseError(err: unknown): JwtFailure {
  if (err instanceof joseErrors.JWTExpired) return fail('EXPIRED', 'token has expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = err.claim;
    if (claim === 'nbf' || (claim === 'iat' && err.reason === 'check_failed')) return fail('NOT_YET_VALID', 'token is not yet valid');
    if (claim === 'iss') return fail('WRONG_ISSUER', 'unexpected "iss" claim');
    if (claim === 'aud') return fail('WRONG_AUDIENCE', 'unexpected "aud" claim');
    if (claim === 'exp' && err.reason === 'missing') return fail('MISSING_EXP', 'token has no "exp" claim');
    return fail('INVALID_CLAIMS', `invalid "${claim}" claim`);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return fail('ALG_NOT_ALLOWED', 'algorithm not allowed');
  return fail('MALFORMED', (err as Error).message);
}
