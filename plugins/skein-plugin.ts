// Generated from skein's agent/plugin-host/api.ts (skein plugin new writes it); do not edit.
/**
 * The published plugin API. A plugin is a .ts/.mjs/.js file in the plugins folder whose
 * default export is `definePlugin({ name, version, options?, setup })`. The compiled binary
 * loads it from disk; a plugin has no dependencies of its own: everything it needs (logger,
 * clock, constant-time comparison, JWT/JWS and Ed25519 verification, its options) comes
 * through the context passed to `setup`.
 *
 * Plugins do not import this file from the binary (bare imports resolve from the plugins
 * folder): `skein plugin new` writes a copy, `skein-plugin.ts`, next to them.
 *
 * Outbound HTTPS goes through ctx.http, never through fetch or node:https: the host enforces
 * the hosts the operator allowed for the plugin and the SSRF guard, and counts every request.
 *
 * @example
 *   import { definePlugin, type AuthnResult } from './skein-plugin.ts';
 *   export default definePlugin({
 *     name: 'header-key',
 *     version: '1.0.0',
 *     options: (raw, fail) => {
 *       const o = raw as { key?: unknown };
 *       if (typeof o?.key !== 'string') throw fail('key', 'must be a string');
 *       return { key: o.key };
 *     },
 *     setup: (ctx) => ({
 *       authenticate(req): AuthnResult {
 *         const given = req.headers['x-api-key'];
 *         if (given === undefined) return { outcome: 'skip' };
 *         return ctx.crypto.timingSafeEqual(given, ctx.options.key)
 *           ? { outcome: 'authenticated', identity: 'api-key:ops' }
 *           : { outcome: 'rejected', reason: 'BAD_KEY', message: 'wrong API key' };
 *       },
 *     }),
 *   });
 */

export const PLUGIN_API_VERSION = 1;

/** Who is calling, as far as the transport knows (the mTLS client certificate). */
export interface PeerInfo {
  /** spiffe://… from the URI SAN, "cn:<CN>", or "anonymous" without a client certificate. */
  id: string;
  spiffeId?: string;
  subjectCN?: string;
  fingerprint?: string;
}

/** What authentication established: the transport peer plus identities from token hooks. */
export interface Identity {
  peer: PeerInfo;
  /** Identities asserted by authenticate hooks, e.g. "jwt:alice" or "nonce:deploy-bot". */
  principals: string[];
  /** Claims from tokens, keyed by the plugin that verified them. */
  claims: Record<string, Record<string, unknown>>;
}

/**
 * What a request does: run a routine now (`dispatch`, sync or streaming), submit an async
 * call (`call.submit`), or read, cancel or list async calls (docs/calls.md).
 */
export type RequestAction = 'dispatch' | 'call.submit' | 'call.read' | 'call.cancel' | 'call.list';

export interface RequestInfo {
  requestId: string;
  /**
   * What the request does; undefined for endpoints that run no routine and touch no call
   * (GET /v1/peers, and GET /v1/routines while it authenticates). GET /v1/routines asks the
   * authorize hooks `dispatch` once per routine (method GET): an allow lists the routine.
   * An authorize hook asked about `call.read` or
   * `call.cancel` decides whether this caller may read or cancel ANOTHER caller's async call
   * of `routine`: only an explicit allow opens it (the owner never needs one).
   */
  action: RequestAction | undefined;
  /**
   * The routine the request targets: the one dispatched or submitted, or the routine of the
   * async call read or cancelled (undefined when there is no such call, and for endpoints that
   * target no routine).
   */
  routine: string | undefined;
  method: string;
  path: string;
  /** Lower-case header names. */
  headers: Readonly<Record<string, string | undefined>>;
  /** The client address. */
  remoteAddress: string | undefined;
}

export interface AuthnRequest extends RequestInfo {
  peer: PeerInfo;
}

export type AuthnResult =
  /** This plugin's credential is not present: let others decide. */
  | { outcome: 'skip' }
  | { outcome: 'authenticated'; identity: string; claims?: Record<string, unknown> }
  /** A credential was presented and is invalid: 401 with this reason code. */
  | { outcome: 'rejected'; reason: string; message?: string };

export interface AuthzRequest extends RequestInfo {
  identity: Identity;
}

/**
 * An authorize hook's answer. `rule` names what decided inside the plugin (e.g. "rules[3]"),
 * and `message` explains it: both go to the audit line (`authz.decision`) only. The caller
 * sees a fixed message with the `reason` code and the request id, never the rule or the
 * message, so neither can leak the policy.
 */
export type AuthzResult =
  | { decision: 'allow'; reason?: string; rule?: string }
  | { decision: 'deny'; reason: string; message?: string; rule?: string }
  /** No opinion (the rule set does not cover this request). */
  | { decision: 'abstain' };

export interface Hooks {
  authenticate?(req: AuthnRequest): AuthnResult | Promise<AuthnResult>;
  authorize?(req: AuthzRequest): AuthzResult | Promise<AuthzResult>;
  /** Called once when the plugin is retired (the agent stops or fails to start, or a reload replaced it), within plugins.hookTimeoutMs. */
  close?(): void | Promise<void>;
}

export interface PluginLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface JwtVerifyOptions {
  /** Accepted algorithms; tokens with any other `alg` (including "none") are refused. */
  algorithms: Array<'EdDSA' | 'ES256' | 'RS256' | 'HS256'>;
  /** Keys: PEM public keys (EdDSA/ES256/RS256), JWKs, or HS256 secrets ({ kty: 'oct', k }). */
  keys: Array<string | Record<string, unknown>>;
  issuer?: string | string[];
  audience?: string | string[];
  /** Allowed clock skew in seconds for exp/nbf/iat (default 30). */
  clockToleranceSec?: number;
  /** Require an `exp` claim (default true). */
  requireExp?: boolean;
}

export interface JwtVerified {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
}

/** Thrown by ctx.crypto.verifyJwt; `reason` is a stable code for 401 reason fields. */
export interface JwtFailure extends Error {
  reason: 'MALFORMED' | 'ALG_NOT_ALLOWED' | 'BAD_SIGNATURE' | 'EXPIRED' | 'NOT_YET_VALID' | 'WRONG_ISSUER' | 'WRONG_AUDIENCE' | 'MISSING_EXP' | 'NO_MATCHING_KEY' | 'INVALID_CLAIMS';
}

/** Options of ctx.http.request. Limits are capped by the host whatever is asked. */
export interface HttpRequestOptions {
  /** Default GET. Only GET and HEAD follow redirects; another method's 3xx is returned as is. */
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Request headers; Host, Connection, Content-Length and Transfer-Encoding are the host's. */
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Largest response body accepted, in bytes (default 1 MiB, at most 64 MiB). */
  maxBytes?: number;
  /** Deadline of the whole request, redirects and body included (default 10 000 ms, at most 120 000). */
  timeoutMs?: number;
  /** Redirects followed, each checked like the first URL (default 3, at most 10). */
  maxRedirects?: number;
  /** PEM CA certificate(s) trusted instead of the system CAs: pins the server's CA. */
  ca?: string;
}

export interface HttpResponse {
  /** Any status: ctx.http.request does not judge it (fetchJson does). */
  status: number;
  /** Lower-case names. */
  headers: Readonly<Record<string, string>>;
  body: Uint8Array;
  /** The URL the response came from, after redirects. */
  url: string;
  /** The body decoded as UTF-8. */
  text(): string;
}

/**
 * Thrown by ctx.http; `code` is stable: SKEIN_ERR_HTTP_URL (not https, malformed),
 * SKEIN_ERR_HTTP_OPTIONS, SKEIN_ERR_HTTP_HOST (not on the plugin's allowedHosts),
 * SKEIN_ERR_HTTP_ADDRESS (SSRF guard), SKEIN_ERR_HTTP_REDIRECT, SKEIN_ERR_HTTP_TOO_LARGE,
 * SKEIN_ERR_HTTP_TIMEOUT, SKEIN_ERR_HTTP_STATUS, SKEIN_ERR_HTTP_TLS, SKEIN_ERR_HTTP_NETWORK,
 * SKEIN_ERR_HTTP_BODY.
 */
export interface HttpFailure extends Error {
  code: `SKEIN_ERR_HTTP_${string}`;
  details: Record<string, unknown>;
}

/**
 * Outbound HTTPS for plugins (a JWKS, a policy service, token introspection). Only https, only
 * to the hosts the operator listed in the plugin's `allowedHosts` (plugins.enabled[]), only to
 * public addresses unless its `allowPrivateAddresses` is set; every hop of a redirect is
 * checked again. Each request is counted in skein_plugin_http_requests_total{plugin,outcome}.
 *
 * @example
 *   const jwks = await ctx.http.fetchJson('https://idp.example.com/jwks.json', { maxBytes: 65536, timeoutMs: 2000 });
 */
export interface PluginHttp {
  /** Sends a request and returns the final response, whatever its status; throws an HttpFailure. */
  request(url: string, options?: HttpRequestOptions): Promise<HttpResponse>;
  /** GET with "accept: application/json": a 2xx body parsed as JSON, else SKEIN_ERR_HTTP_STATUS or SKEIN_ERR_HTTP_BODY. */
  fetchJson(url: string, options?: Omit<HttpRequestOptions, 'method' | 'body'>): Promise<unknown>;
}

export interface PluginContext<O> {
  /** The plugin's name as configured. */
  name: string;
  /** Options after the plugin's own `options` validation. */
  options: O;
  /** Logger whose lines carry { plugin: name }. */
  log: PluginLogger;
  /** Milliseconds since the epoch; injected so tests can move time. */
  now(): number;
  crypto: {
    /** Constant-time comparison of two strings or byte arrays (false on length mismatch). */
    timingSafeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean;
    sha256Hex(data: string | Uint8Array): string;
    /** Verifies a compact JWS/JWT; throws a JwtFailure. */
    verifyJwt(token: string, options: JwtVerifyOptions): Promise<JwtVerified>;
    /** Ed25519 verification; `publicKey` is "ed25519:<base64url>", PEM or 32 raw bytes. */
    verifyEd25519(publicKey: string | Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
    /** Parses "ed25519:<base64url>" or PEM into 32 raw bytes; throws on anything else. */
    parseEd25519PublicKey(text: string): Uint8Array;
  };
  /** Reads a file relative to the config file's folder (e.g. a JWKS); for setup only. */
  readFile(path: string): string;
  /** Outbound HTTPS through the host's guarded client. */
  http: PluginHttp;
  /** security.strict: refuse to start (throw from setup) rather than run degraded. */
  strict: boolean;
}

/** Builds the error `options` validation throws: it names the plugin and the key. */
export type OptionsFail = (key: string, message: string) => Error;

export interface PluginDefinition<O = unknown> {
  name: string;
  version: string;
  /** Validates raw options from config (`plugins.enabled[].options`); throw `fail(key, msg)`. */
  options?: (raw: unknown, fail: OptionsFail) => O;
  setup(ctx: PluginContext<O>): Hooks | Promise<Hooks>;
}

/** Identity helper that gives a plugin definition its types. */
export function definePlugin<O>(definition: PluginDefinition<O>): PluginDefinition<O> {
  return definition;
}

// ── Identity and routine patterns ───────────────────────────────────────────────────────
// One matcher for the agent's authorization.allow rules and for policy plugins
// (routine-policy), so a pattern means the same thing wherever it is written.
//
//  - without "*": exact, case-sensitive match;
//  - SPIFFE patterns (starting with "spiffe://"): "*" matches within one path segment (a
//    whole-segment "*" matches exactly one non-empty segment: spiffe://td/client/*), and "**"
//    as the last segment matches one or more trailing segments (spiffe://td/client/**);
//  - other identity patterns (jwt:*, nonce:ci-*): "*" matches any run of characters;
//  - "**" alone matches every identity, "anonymous" included;
//  - routine patterns: "*" matches any run of characters ("report.*", "*").

/** A compiled pattern and its specificity (`score`: larger compares as more specific). */
export interface Pattern {
  text: string;
  re: RegExp;
  score: number[];
}

const PATTERN_CONTROL = /[\u0000-\u001f\u007f]/;
const ROUTINE_PATTERN = /^[A-Za-z0-9_.*-]{1,64}$/;
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function wildcardScore(text: string): { literal: number; stars: number; exact: boolean } {
  const stars = (text.match(/\*+/g) ?? []).length;
  return { literal: text.replace(/\*/g, '').length, stars, exact: stars === 0 };
}

/**
 * Compiles an identity pattern, or returns why it is malformed. Specificity: an exact pattern
 * beats any wildcard; between wildcards, more literal (non-"*") characters win, then a pattern
 * without "**" beats one with it, then fewer "*" win.
 *
 * @example
 *   const p = compileIdentityPattern('spiffe://skein.local/client/*');
 *   typeof p !== 'string' && p.re.test('spiffe://skein.local/client/dev-client'); // true
 */
export function compileIdentityPattern(text: string): Pattern | string {
  if (text.length === 0 || text.length > 512 || PATTERN_CONTROL.test(text)) return 'must be 1-512 characters without control characters';
  if (/\*{3,}/.test(text)) return '"***" is not a pattern: use "*" or "**"';
  const { literal, stars, exact } = wildcardScore(text);
  const doubleStar = text.includes('**');
  const score = exact ? [1, 0, 0, 0] : [0, literal, doubleStar ? 0 : 1, -stars];
  if (text === '**') return { text, re: /^[\s\S]+$/, score };
  let source: string;
  if (text.startsWith('spiffe://')) {
    // ['spiffe:', '', '<trust domain>', '<segment>', …]
    const segments = text.split('/');
    const parts: string[] = [];
    for (const [i, seg] of segments.entries()) {
      if (seg === '**') {
        if (i !== segments.length - 1 || i < 2) return '"**" is only allowed as the last path segment (spiffe://td/client/**) or alone';
        parts.push('[^/]+(?:/[^/]+)*');
      } else if (seg.includes('**')) {
        return '"**" must be a whole path segment (spiffe://td/client/**)';
      } else {
        parts.push(seg === '*' ? '[^/]+' : seg.split('*').map(escapeRegExp).join('[^/]*'));
      }
    }
    source = parts.join('/');
  } else {
    if (doubleStar) return '"**" is only allowed alone or as the last segment of a spiffe:// pattern';
    source = text.split('*').map(escapeRegExp).join('[\\s\\S]*');
  }
  return { text, re: new RegExp(`^${source}$`), score };
}

/** Compiles a routine name or glob, or returns why it is malformed. Exact beats glob; between globs, more literal characters win, then fewer "*". */
export function compileRoutinePattern(text: string): Pattern | string {
  if (!ROUTINE_PATTERN.test(text)) return 'must be a routine name or a glob of A-Z a-z 0-9 _ . - and "*" (max 64)';
  if (text.includes('**')) return '"**" is not a routine pattern: use "*"';
  const { literal, stars, exact } = wildcardScore(text);
  return {
    text,
    re: new RegExp(`^${text.split('*').map(escapeRegExp).join('[\\s\\S]*')}$`),
    score: exact ? [1, 0, 0] : [0, literal, -stars],
  };
}

/** Compares two specificity scores: > 0 when `a` is more specific, 0 when equal. */
export function compareSpecificity(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The most specific of `patterns` that matches any of `subjects`, or undefined. */
export function bestMatch(patterns: Pattern[], subjects: string[]): Pattern | undefined {
  let best: Pattern | undefined;
  for (const p of patterns) {
    if (best && compareSpecificity(p.score, best.score) <= 0) continue;
    if (subjects.some((s) => p.re.test(s))) best = p;
  }
  return best;
}
