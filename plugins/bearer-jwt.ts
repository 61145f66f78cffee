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
 *                  At least one of keys / jwksFile / jwksUrl is required.
 *   jwksUrl        https URL of the issuer's JWKS, fetched through ctx.http: its host must be
 *                  on this plugin's plugins.enabled[].allowedHosts (and, for an issuer on a
 *                  private or loopback address, allowPrivateAddresses set). Fetched at start,
 *                  then every jwksRefreshSec, and at once for a token whose "kid" is unknown —
 *                  at most once per jwksMinRefreshSec, so made-up kids cannot make the agent
 *                  hammer the issuer (such a token waits up to 500 ms for the fetch). A failed
 *                  fetch keeps the last good set and is retried after the shorter of
 *                  jwksRefreshSec and jwksMinRefreshSec; a set older
 *                  than jwksMaxAgeSec (no good fetch for that long) is dropped, so a key the
 *                  issuer removed is refused at the latest jwksMaxAgeSec after it went.
 *                  Issuer down at start: under security.strict setup fails (the agent does not
 *                  start); otherwise the agent starts, warns, and refuses the issuer's tokens
 *                  (JWT_NO_MATCHING_KEY) until a fetch succeeds. Keys are checked like a
 *                  jwksFile's; a set with a broken or private key is refused whole.
 *   jwksCa         PEM CA certificate(s), inline or a path relative to the config file: the
 *                  only CAs trusted for jwksUrl (default: the system CAs)
 *   jwksRefreshSec     1–86400 (default 300)
 *   jwksMinRefreshSec  1–3600 (default 30): least time between two fetches that an unknown
 *                      kid or a failure triggers
 *   jwksMaxAgeSec      jwksRefreshSec–2592000 (default 86400)
 *   jwksMaxBytes       1024–4194304 (default 262144): largest JWKS accepted
 *   jwksTimeoutMs      100–9000 (default 5000): deadline of one fetch, redirects included
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
import { definePlugin, type AuthnRequest, type AuthnResult, type JwtFailure, type JwtVerifyOptions, type OptionsFail, type PluginContext } from './skein-plugin.ts';

type Alg = JwtVerifyOptions['algorithms'][number];
type Key = JwtVerifyOptions['keys'][number];

/** Where and how often the issuer's keys are fetched (jwksUrl and its companions). */
export interface JwksUrlOptions {
  url: string;
  /** Inline PEM or a path relative to the config file. */
  ca?: string;
  refreshSec: number;
  minRefreshSec: number;
  maxAgeSec: number;
  maxBytes: number;
  timeoutMs: number;
}

export interface BearerJwtOptions {
  algorithms: Alg[];
  keys: Key[];
  jwksFile?: string;
  jwks?: JwksUrlOptions;
  issuer?: string | string[];
  audience?: string | string[];
  clockSkewSec: number;
  requireExp: boolean;
  identityClaim: string;
}

const ALGORITHMS: readonly Alg[] = ['EdDSA', 'ES256', 'RS256', 'HS256'];
const JWKS_URL_KEYS = ['jwksCa', 'jwksRefreshSec', 'jwksMinRefreshSec', 'jwksMaxAgeSec', 'jwksMaxBytes', 'jwksTimeoutMs'];
const OPTION_KEYS = ['algorithms', 'keys', 'jwksFile', 'jwksUrl', ...JWKS_URL_KEYS, 'issuer', 'audience', 'clockSkewSec', 'requireExp', 'identityClaim'];
/** How long a token with an unknown kid waits for the fetch it triggered (inside the default 1 s plugins.hookTimeoutMs). */
const KID_WAIT_MS = 500;
/** Failures of a first fetch that are configuration errors, not an issuer that is down: they stop start-up in any mode. */
const CONFIG_FAILURES = new Set(['SKEIN_ERR_HTTP_URL', 'SKEIN_ERR_HTTP_OPTIONS', 'SKEIN_ERR_HTTP_HOST', 'SKEIN_ERR_HTTP_ADDRESS']);
const FAILURE_REASONS = new Set<string>([
  'MALFORMED',
  'ALG_NOT_ALLOWED',
  'BAD_SIGNATURE',
  'EXPIRED',
  'NOT_YET_VALID',
  'WRONG_ISSUER',
  'WRONG_AUDIENCE',
  'MISSING_EXP',
  'NO_MATCHING_KEY',
  'INVALID_CLAIMS',
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

function integerOption(raw: Record<string, unknown>, key: string, min: number, max: number, fallback: number, fail: OptionsFail): number {
  const v = raw[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw fail(key, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return v;
}

function parseJwksUrl(raw: Record<string, unknown>, fail: OptionsFail): JwksUrlOptions | undefined {
  if (raw.jwksUrl === undefined) {
    const stray = JWKS_URL_KEYS.find((k) => raw[k] !== undefined);
    if (stray) throw fail(stray, 'only applies with jwksUrl');
    return undefined;
  }
  const url = raw.jwksUrl;
  let parsed: URL | undefined;
  try {
    parsed = typeof url === 'string' ? new URL(url) : undefined;
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || parsed.protocol !== 'https:' || parsed.username !== '' || parsed.password !== '') {
    throw fail('jwksUrl', `must be an https:// URL without credentials, got ${JSON.stringify(url)}`);
  }
  const ca = raw.jwksCa;
  if (ca !== undefined && (typeof ca !== 'string' || ca.trim() === '' || (ca.includes('-----BEGIN') && !ca.includes('-----BEGIN CERTIFICATE-----')))) {
    throw fail('jwksCa', 'must be PEM CA certificate(s) ("-----BEGIN CERTIFICATE-----") or the path of a PEM file');
  }
  const refreshSec = integerOption(raw, 'jwksRefreshSec', 1, 86_400, 300, fail);
  const maxAgeSec = integerOption(raw, 'jwksMaxAgeSec', 1, 2_592_000, Math.max(86_400, refreshSec), fail);
  if (maxAgeSec < refreshSec) throw fail('jwksMaxAgeSec', `must be at least jwksRefreshSec (${refreshSec}): a key set would expire before its next refresh`);
  return {
    url: parsed.href,
    ...(typeof ca === 'string' ? { ca } : {}),
    refreshSec,
    minRefreshSec: integerOption(raw, 'jwksMinRefreshSec', 1, 3600, 30, fail),
    maxAgeSec,
    maxBytes: integerOption(raw, 'jwksMaxBytes', 1024, 4 * 1024 * 1024, 256 * 1024, fail),
    // setup() must finish within the host's 10 s: one fetch, with room to spare.
    timeoutMs: integerOption(raw, 'jwksTimeoutMs', 100, 9000, 5000, fail),
  };
}

function parseOptions(raw: unknown, fail: OptionsFail): BearerJwtOptions {
  if (raw === undefined) throw fail('algorithms', 'is required (and keys, jwksFile or jwksUrl)');
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
  const jwks = parseJwksUrl(raw, fail);
  if (keys.length === 0 && jwksFile === undefined && jwks === undefined) throw fail('keys', 'is required (a non-empty list) unless jwksFile or jwksUrl is given');
  // Without a JWKS the key list is final: every algorithm must have a key that serves it.
  if (jwksFile === undefined && jwks === undefined) {
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
    ...(jwks !== undefined ? { jwks } : {}),
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
    return alg === 'HS256' ? 'algorithm HS256 has no secret: add {"kty":"oct","k":"<base64url of 32+ random bytes>"}' : `algorithm ${alg} has no key: add a PEM public key or a ${KTY_OF[alg]} JWK`;
  }
  return undefined;
}

/**
 * Keys from a JWKS document (`source` names it in messages: "jwksFile x", "jwksUrl y"):
 * unsupported keys are skipped, a broken or private one refuses the whole document.
 */
function parseJwks(doc: unknown, source: string, log: { info(msg: string, fields?: Record<string, unknown>): void }): Key[] {
  if (!isPlainObject(doc) || !Array.isArray(doc.keys)) throw new Error(`${source}: expected a JWKS, {"keys": [ … ]}`);
  if (doc.keys.length > MAX_JWKS_KEYS) throw new Error(`${source}: more than ${MAX_JWKS_KEYS} keys`);
  const keys: Key[] = [];
  doc.keys.forEach((k, i) => {
    if (!isPlainObject(k)) throw new Error(`${source}: keys[${i}] is not a JWK object`);
    const problem = checkJwk(k);
    if (problem?.unsupported) {
      log.info('skipping JWKS key', { source, index: i, kid: k.kid, why: problem.problem });
      return;
    }
    if (problem) throw new Error(`${source}: keys[${i}]: ${problem.problem}`);
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

/** The "kid" of a compact JWS's header, if it has a usable one (decoded without verifying). */
function kidOf(token: string): string | undefined {
  try {
    const b64 = token.slice(0, token.indexOf('.')).replace(/-/g, '+').replace(/_/g, '/');
    const kid = (JSON.parse(atob(b64)) as { kid?: unknown }).kid;
    return typeof kid === 'string' && kid.length > 0 && kid.length <= 256 ? kid : undefined;
  } catch {
    return undefined;
  }
}

const codeOf = (err: unknown) => (typeof (err as { code?: unknown })?.code === 'string' ? String((err as { code: string }).code) : 'ERROR');

/**
 * The issuer's keys from jwksUrl: the last good set, when it was fetched, and the one fetch in
 * flight (callers share it). Times come from ctx.now(); the refresh timer is unref'd.
 */
function remoteKeySet(ctx: PluginContext<BearerJwtOptions>, j: JwksUrlOptions, ca: string | undefined, onChange: (keys: Key[]) => void) {
  let set: { keys: Key[]; kids: Set<string>; json: string; fetchedAt: number } | undefined;
  let lastAttempt = Number.NEGATIVE_INFINITY;
  let inflight: Promise<unknown> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  let started = false;

  const schedule = (sec: number) => {
    clearTimeout(timer);
    if (closed) return;
    timer = setTimeout(() => void refresh('scheduled'), sec * 1000);
    (timer as { unref?: () => void }).unref?.();
  };

  /** One fetch (or the one in flight); resolves with the error when it failed, never rejects. */
  const refresh = (why: 'start' | 'scheduled' | 'unknown-kid'): Promise<unknown> => {
    if (inflight) return inflight;
    lastAttempt = ctx.now();
    inflight = (async () => {
      try {
        const doc = await ctx.http.fetchJson(j.url, { maxBytes: j.maxBytes, timeoutMs: j.timeoutMs, ...(ca !== undefined ? { ca } : {}) });
        const keys = parseJwks(doc, `jwksUrl ${j.url}`, ctx.log);
        const kids = new Set(keys.map((k) => (typeof k === 'string' ? undefined : k.kid)).filter((k): k is string => typeof k === 'string'));
        const json = JSON.stringify(keys);
        const previous = set;
        set = { keys, kids, json, fetchedAt: ctx.now() };
        if (previous?.json !== json) {
          // A new set of keys: a new options object, so tokens verified under the old set are verified again.
          onChange(keys);
          ctx.log.info('JWKS fetched', {
            url: j.url,
            why,
            keys: keys.length,
            added: [...kids].filter((k) => !previous?.kids.has(k)),
            removed: [...(previous?.kids ?? [])].filter((k) => !kids.has(k)),
          });
          if (started) {
            const missing = unservedAlgorithm(ctx.options.algorithms, [...ctx.options.keys, ...keys]);
            if (missing) ctx.log.warn('the JWKS no longer serves every configured algorithm', { url: j.url, problem: missing });
          }
        }
        schedule(j.refreshSec);
        return undefined;
      } catch (err) {
        if (why !== 'start') {
          ctx.log.warn('JWKS refresh failed; the last good key set stays in use until it is jwksMaxAgeSec old', {
            url: j.url,
            why,
            code: codeOf(err),
            error: (err as Error).message,
            setAgeSec: set ? Math.round((ctx.now() - set.fetchedAt) / 1000) : null,
          });
        }
        // Retried at the normal cadence, or sooner (jwksMinRefreshSec) when that is shorter.
        schedule(Math.min(j.refreshSec, j.minRefreshSec));
        return err;
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };

  return {
    /** The first fetch; resolves with its error, if any. */
    async start(): Promise<unknown> {
      const err = await refresh('start');
      started = true;
      return err;
    },
    /** The current keys, after dropping a set older than jwksMaxAgeSec. */
    keys(): Key[] | undefined {
      if (set && ctx.now() - set.fetchedAt > j.maxAgeSec * 1000) {
        ctx.log.warn('JWKS expired: no good fetch for jwksMaxAgeSec, so its keys are no longer accepted', { url: j.url, maxAgeSec: j.maxAgeSec });
        set = undefined;
        onChange([]);
      }
      return set?.keys;
    },
    /**
     * Whether a failed token may be signed by a key the issuer rotated in since the last
     * fetch, and a fetch for it is allowed now (one in flight, or none for jwksMinRefreshSec).
     */
    mayRefreshFor(token: string): boolean {
      const kid = kidOf(token);
      if (set !== undefined && (kid === undefined || set.kids.has(kid))) return false;
      return inflight !== undefined || ctx.now() - lastAttempt >= j.minRefreshSec * 1000;
    },
    /** Fetches for an unknown kid, waiting at most KID_WAIT_MS (the fetch goes on after that). */
    async refreshForKid(): Promise<void> {
      let waited: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([refresh('unknown-kid'), new Promise((resolve) => (waited = setTimeout(resolve, KID_WAIT_MS)))]);
      clearTimeout(waited);
    },
    close(): void {
      closed = true;
      clearTimeout(timer);
    },
  };
}

export default definePlugin<BearerJwtOptions>({
  name: 'bearer-jwt',
  version: '1.1.0',
  options: parseOptions,
  async setup(ctx) {
    const o = ctx.options;
    const staticKeys = [...o.keys];
    if (o.jwksFile !== undefined) {
      let text: string;
      try {
        text = ctx.readFile(o.jwksFile);
      } catch (err) {
        throw new Error(`jwksFile ${o.jwksFile}: cannot read it: ${(err as Error).message}`, { cause: err });
      }
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch (err) {
        throw new Error(`jwksFile ${o.jwksFile}: not JSON: ${(err as Error).message}`, { cause: err });
      }
      staticKeys.push(...parseJwks(doc, `jwksFile ${o.jwksFile}`, ctx.log));
    }

    const optionsFor = (keys: Key[]): JwtVerifyOptions => ({
      algorithms: o.algorithms,
      keys,
      ...(o.issuer !== undefined ? { issuer: o.issuer } : {}),
      ...(o.audience !== undefined ? { audience: o.audience } : {}),
      clockToleranceSec: o.clockSkewSec,
      requireExp: o.requireExp,
    });
    let verifyOptions = optionsFor(staticKeys);

    let remote: ReturnType<typeof remoteKeySet> | undefined;
    if (o.jwks !== undefined) {
      const j = o.jwks;
      let ca: string | undefined;
      if (j.ca !== undefined) {
        try {
          ca = j.ca.includes('-----BEGIN CERTIFICATE-----') ? j.ca : ctx.readFile(j.ca);
        } catch (err) {
          throw new Error(`jwksCa ${j.ca}: cannot read it: ${(err as Error).message}`, { cause: err });
        }
        if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`jwksCa ${j.ca}: holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
      }
      remote = remoteKeySet(ctx, j, ca, (keys) => (verifyOptions = optionsFor([...staticKeys, ...keys])));
      const err = await remote.start();
      if (err !== undefined) {
        const what = `jwksUrl ${j.url}: cannot fetch the issuer's keys (${codeOf(err)}): ${(err as Error).message}`;
        if (CONFIG_FAILURES.has(codeOf(err))) throw new Error(what);
        if (ctx.strict) throw new Error(`${what}; security.strict refuses to start without them`);
        ctx.log.warn("starting without the issuer's keys: its tokens are refused (JWT_NO_MATCHING_KEY) until a fetch succeeds", {
          url: j.url,
          code: codeOf(err),
          error: (err as Error).message,
          retrySec: Math.min(j.refreshSec, j.minRefreshSec),
        });
      }
    }
    // Keys known at start must serve every algorithm (a JWKS that changes later is warned about).
    if (remote === undefined || remote.keys() !== undefined) {
      const missing = unservedAlgorithm(o.algorithms, [...staticKeys, ...(remote?.keys() ?? [])]);
      const from = ['keys', ...(o.jwksFile !== undefined ? ['jwksFile'] : []), ...(remote ? ['jwksUrl'] : [])].join(' / ');
      if (missing) {
        remote?.close();
        throw new Error(`${from}: ${missing}`);
      }
    }

    const verify = async (token: string): Promise<{ payload: Record<string, unknown> } | JwtFailure> => {
      remote?.keys(); // drops an expired set before it is used
      try {
        return await ctx.crypto.verifyJwt(token, verifyOptions);
      } catch (err) {
        // Anything but a JwtFailure is a fault of the host, not of the caller: let the host
        // fail closed and report it as such.
        if (!isJwtFailure(err)) throw err;
        return err;
      }
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

        let result = await verify(token);
        // A key the issuer rotated in since the last fetch: fetch now, within the rate limit.
        if (remote && result instanceof Error && (result.reason === 'NO_MATCHING_KEY' || result.reason === 'BAD_SIGNATURE') && remote.mayRefreshFor(token)) {
          await remote.refreshForKid();
          result = await verify(token);
        }
        if (result instanceof Error) {
          const unavailable = remote !== undefined && result.reason === 'NO_MATCHING_KEY' && remote.keys() === undefined;
          return reject(`JWT_${result.reason}`, unavailable ? `${result.message}: the issuer's keys (jwksUrl) are not available` : result.message);
        }
        const { payload } = result;
        const subject = payload[o.identityClaim];
        if (typeof subject !== 'string' || subject === '') return reject('JWT_INVALID_CLAIMS', `token has no "${o.identityClaim}" claim (a non-empty string) to identify the caller`);
        if (subject.length > 256 || CONTROL.test(subject)) return reject('JWT_INVALID_CLAIMS', `"${o.identityClaim}" claim is longer than 256 characters or holds control characters`);
        return { outcome: 'authenticated', identity: `jwt:${subject}`, claims: payload };
      },
      close() {
        remote?.close();
      },
    };
  },
});
