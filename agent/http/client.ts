/**
 * The guarded outbound HTTPS client (undici), for everything the agent fetches from a URL:
 * plugins' ctx.http (JWKS, policy services, token introspection) and routine code from URLs
 * (agent/sources/url.ts, always under the "public" policy).
 *
 *  - https only, no credentials in the URL; every redirect hop is parsed and checked again;
 *  - the host of the URL and of every redirect target must be on `allowedHosts` (exact);
 *  - every connection passes the SSRF guard on the address resolved and the address actually
 *    connected to (guard.ts), under the request's address policy;
 *  - TLS ≥ 1.2, verified against the system CAs or only the pinned `ca`;
 *  - one deadline covers every hop's connect, headers and body; the body is capped at
 *    `maxBytes` (Content-Length checked first); redirects are capped at `maxRedirects`;
 *  - only GET and HEAD follow redirects (a POST's 3xx is returned, never replayed), and a
 *    redirect to another origin drops Authorization, Cookie and Proxy-Authorization;
 *  - a fresh undici Agent per request: no pooled connection, no proxy from the environment.
 *
 * Every failure is a SkeinError with a SKEIN_ERR_HTTP_* code (errors.ts) whose message says
 * who asked (`label`), for which URL, and what to change.
 *
 * undici is imported as 'undici/index.js': under Bun a bare 'undici' resolves to Bun's
 * stand-in, which ignores TLS options (so a pinned CA would be silently unpinned).
 *
 * @example
 *   const res = await outboundRequest({
 *     url: 'https://idp.example.com/.well-known/jwks.json',
 *     allowedHosts: ['idp.example.com'],
 *     label: 'plugin "bearer-jwt"',
 *     maxBytes: 256 * 1024,
 *     timeoutMs: 5000,
 *   });
 *   JSON.parse(res.body.toString('utf8'));
 */
import { lookup as dnsLookup } from 'node:dns';
import type { Socket } from 'node:net';
import type { Agent } from 'undici/index.js';
import { SkeinError } from '../../common/errors/index.ts';
import { isIpLiteral } from './address.ts';
import { httpError } from './errors.ts';
import { addressRefusal, guardedConnector, refusedClass, transportError, type AddressPolicy, type GuardContext, type Lookup } from './guard.ts';

export type { AddressPolicy, Lookup } from './guard.ts';

export interface OutboundRequest {
  /** Must be https://. */
  url: string;
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Header names are case-insensitive; Host, Connection, Content-Length and Transfer-Encoding are set by the client. */
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Exact host names (IP literals allowed) the URL and every redirect target must use. */
  allowedHosts: readonly string[];
  /** Default "public". */
  addressPolicy?: AddressPolicy;
  /** Default 1 MiB. */
  maxBytes?: number;
  /** Default 10 000 ms, for the whole request: every hop's connect, headers and body. */
  timeoutMs?: number;
  /** Default 3 (GET and HEAD only). */
  maxRedirects?: number;
  /** Trusted CAs instead of the system CAs (a pin). To add a CA to the system's, pass `[...tls.rootCertificates, pem]`. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Who asks, for messages: 'plugin "bearer-jwt"', 'routine source'. Default 'outbound request'. */
  label?: string;
  /** The settings the fix hints name; without allowPrivate, a refused address is reported as beyond any setting. */
  settings?: { allowedHosts?: string; allowPrivate?: string };
  /** Resolver, injectable for tests (DNS rebinding). Default dns.lookup. */
  lookup?: Lookup;
}

export interface OutboundResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** The URL the response came from, after redirects. */
  url: string;
  /** The address the response was read from. */
  address: string;
}

export const DEFAULT_MAX_BYTES = 1024 * 1024;
export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_REDIRECTS = 3;
/** Hard ceilings, whatever a caller asks for. */
export const MAX_BYTES_LIMIT = 64 * 1024 * 1024;
export const TIMEOUT_LIMIT_MS = 120_000;
export const MAX_REDIRECTS_LIMIT = 10;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
const CLIENT_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect']);
const CROSS_ORIGIN_DROPPED = new Set(['authorization', 'cookie', 'proxy-authorization']);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Drops a response body we will not read; undici reports the abort as an 'error' nobody needs. */
function discard(body: { on(event: 'error', listener: () => void): unknown; destroy(): void }): void {
  body.on('error', () => {});
  body.destroy();
}

const bare = (hostname: string) => hostname.replace(/^\[(.*)\]$/, '$1');

/** An allow-list entry in the form URL.hostname takes (lower case, punycode, canonical IPv6, no brackets). */
export function canonicalHost(entry: string): string {
  const trimmed = bare(entry.trim());
  try {
    return bare(new URL(`https://${trimmed.includes(':') ? `[${trimmed}]` : trimmed}/`).hostname);
  } catch {
    return trimmed.toLowerCase();
  }
}

interface Settings {
  label: string;
  origin: string;
  method: string;
  headers: Record<string, string>;
  body: string | Uint8Array | undefined;
  hosts: Set<string>;
  policy: AddressPolicy;
  maxBytes: number;
  maxRedirects: number;
  timeoutMs: number;
  ca: Array<string | Buffer> | undefined;
  lookup: Lookup;
  hostsSetting: string;
  privateSetting: string | undefined;
}

function optionInteger(label: string, name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: option ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`, { option: name });
  }
  return value;
}

function parseUrl(text: string, s: Pick<Settings, 'label' | 'origin'>, redirectedFrom?: string): URL {
  const via = redirectedFrom === undefined ? '' : ` (redirect from ${redirectedFrom})`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw httpError('SKEIN_ERR_HTTP_URL', `${s.label}: ${JSON.stringify(text)}${via} is not a valid URL: write it as https://host/path`, { url: s.origin });
  }
  if (url.protocol !== 'https:') {
    throw httpError(
      'SKEIN_ERR_HTTP_URL',
      redirectedFrom === undefined
        ? `${s.label}: ${url.href} uses ${url.protocol.replace(/:$/, '')}, not https: only https URLs are fetched`
        : `${s.label}: ${s.origin}: redirect from ${redirectedFrom} to ${url.href} leaves https; point the URL at the final https location`,
      { url: s.origin, target: url.href },
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw httpError('SKEIN_ERR_HTTP_URL', `${s.label}: ${url.origin}${via} embeds credentials in the URL: remove user:password@ and send them in a header`, { url: s.origin });
  }
  return url;
}

function checkHost(url: URL, s: Settings, redirectedFrom?: string): void {
  const host = bare(url.hostname);
  if (!s.hosts.has(host)) {
    throw httpError(
      'SKEIN_ERR_HTTP_HOST',
      redirectedFrom === undefined
        ? `${s.label}: ${url.href}: host "${host}" is not on ${s.hostsSetting}; add it there to allow it`
        : `${s.label}: ${s.origin}: redirect to ${url.href} is not on ${s.hostsSetting}; add "${host}" there or point the URL at the final location`,
      { url: s.origin, host, target: url.href },
    );
  }
  // IP literals never reach the resolver: judge them before connecting (the connect check would too).
  if (isIpLiteral(host)) {
    const cls = refusedClass(host, s.policy);
    if (cls !== undefined)
      throw addressRefusal(guardContext(s), s.policy, redirectedFrom === undefined ? 'the host is' : `the redirect from ${redirectedFrom} goes to`, host, cls, { target: url.href });
  }
}

const guardContext = (s: Settings): GuardContext => ({ label: s.label, url: s.origin, privateSetting: s.privateSetting });

function checkHeaders(label: string, headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    const lower = name.toLowerCase();
    if (!HEADER_NAME.test(name) || typeof value !== 'string' || !HEADER_VALUE.test(value)) {
      throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: header ${JSON.stringify(name)} has an invalid name or value (no control characters or line breaks)`, { header: name });
    }
    if (CLIENT_HEADERS.has(lower)) throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: header "${lower}" is set by the client and cannot be given`, { header: lower });
    out[lower] = value;
  }
  return out;
}

function settingsOf(req: OutboundRequest): Settings {
  const label = typeof req.label === 'string' && req.label !== '' ? req.label : 'outbound request';
  const origin = typeof req.url === 'string' ? req.url : String(req.url);
  const method = (req.method ?? 'GET').toUpperCase();
  if (!METHODS.includes(method)) throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: method ${JSON.stringify(req.method)} is not supported (${METHODS.join(', ')})`, { option: 'method' });
  if (req.body !== undefined && !(typeof req.body === 'string' || req.body instanceof Uint8Array)) {
    throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: body must be a string or bytes`, { option: 'body' });
  }
  if (req.body !== undefined && (method === 'GET' || method === 'HEAD')) throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: a ${method} request has no body`, { option: 'body' });
  if (!Array.isArray(req.allowedHosts)) throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: allowedHosts must be a list of host names`, { option: 'allowedHosts' });
  if (req.addressPolicy !== undefined && req.addressPolicy !== 'public' && req.addressPolicy !== 'private') {
    throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: addressPolicy must be "public" or "private"`, { option: 'addressPolicy' });
  }
  const ca = req.ca === undefined ? undefined : Array.isArray(req.ca) ? req.ca : [req.ca];
  if (ca !== undefined && (ca.length === 0 || ca.some((c) => !(typeof c === 'string' || Buffer.isBuffer(c)) || String(c).trim() === ''))) {
    throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: ca must be PEM text (one or more certificates)`, { option: 'ca' });
  }
  return {
    label,
    origin,
    method,
    headers: checkHeaders(label, req.headers),
    body: req.body,
    hosts: new Set(req.allowedHosts.map((h) => canonicalHost(String(h)))),
    policy: req.addressPolicy ?? 'public',
    maxBytes: optionInteger(label, 'maxBytes', req.maxBytes, DEFAULT_MAX_BYTES, 1, MAX_BYTES_LIMIT),
    timeoutMs: optionInteger(label, 'timeoutMs', req.timeoutMs, DEFAULT_TIMEOUT_MS, 1, TIMEOUT_LIMIT_MS),
    maxRedirects: optionInteger(label, 'maxRedirects', req.maxRedirects, DEFAULT_MAX_REDIRECTS, 0, MAX_REDIRECTS_LIMIT),
    ca,
    lookup: req.lookup ?? dnsLookup,
    hostsSetting: req.settings?.allowedHosts ?? 'the allowed hosts',
    privateSetting: req.settings?.allowPrivate,
  };
}

const flatten = (headers: Record<string, string | string[] | undefined>): Record<string, string> =>
  Object.fromEntries(Object.entries(headers).flatMap(([k, v]) => (v === undefined ? [] : [[k.toLowerCase(), Array.isArray(v) ? v.join(', ') : v]])));

/**
 * Sends the request, following redirects (GET/HEAD) hop by hop, and returns the final
 * response with its whole body. Any status is returned; limits and refusals throw.
 */
export async function outboundRequest(req: OutboundRequest): Promise<OutboundResponse> {
  const s = settingsOf(req);
  let url = parseUrl(s.origin, s);
  s.origin = url.href;
  checkHost(url, s);

  // Loaded on first use: undici is ~1 MB of JavaScript that a start with no URL routine and
  // no plugin making requests never needs (~15 ms of the binary's start, docs/benchmarks.md).
  const { Agent: UndiciAgent } = await import('undici/index.js');
  const sockets = new Set<Socket>();
  let address = '';
  const agent = new UndiciAgent({
    connect: guardedConnector({ policy: s.policy, ctx: guardContext(s), ...(s.ca ? { ca: s.ca } : {}), lookup: s.lookup, sockets, onPeer: (a) => (address = a) }),
    // One request at a time per origin, nothing kept for later: the Agent dies with the request.
    pipelining: 0,
    connections: 1,
  });
  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    abort.abort();
    for (const socket of sockets) socket.destroy();
  }, s.timeoutMs);
  const timeoutError = (target: URL) =>
    httpError('SKEIN_ERR_HTTP_TIMEOUT', `${s.label}: ${target.href}: no complete response within ${s.timeoutMs} ms; check that the server is reachable and fast, or raise the timeout`, {
      url: s.origin,
      target: target.href,
      timeoutMs: s.timeoutMs,
    });
  let headers = { ...s.headers };
  try {
    // Bounded: one iteration per hop, at most maxRedirects + 1 hops.
    for (let redirects = 0; ; redirects++) {
      let res: Awaited<ReturnType<Agent['request']>>;
      try {
        res = await agent.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: s.method as 'GET',
          headers: { 'user-agent': 'skein', accept: '*/*', 'accept-encoding': 'identity', ...headers },
          ...(s.body !== undefined ? { body: typeof s.body === 'string' ? s.body : Buffer.from(s.body) } : {}),
          signal: abort.signal,
        });
      } catch (err) {
        if (timedOut) throw timeoutError(url);
        throw failure(err, s, url);
      }
      const status = res.statusCode;
      const resHeaders = flatten(res.headers as Record<string, string | string[] | undefined>);
      const follow = status >= 300 && status < 400 && status !== 304 && (s.method === 'GET' || s.method === 'HEAD');
      if (follow) {
        discard(res.body);
        if (redirects >= s.maxRedirects) {
          throw httpError('SKEIN_ERR_HTTP_REDIRECT', `${s.label}: ${s.origin}: more than ${s.maxRedirects} redirect(s) (last: ${status} from ${url.href}); point the URL at the final location`, {
            url: s.origin,
            target: url.href,
            maxRedirects: s.maxRedirects,
          });
        }
        const location = resHeaders.location;
        let next: URL;
        try {
          if (location === undefined || location.trim() === '') throw new Error('no Location');
          next = new URL(location, url);
        } catch {
          throw httpError(
            'SKEIN_ERR_HTTP_REDIRECT',
            `${s.label}: ${s.origin}: ${url.href} answered ${status} with ${location === undefined ? 'no' : `an invalid (${JSON.stringify(location)})`} Location; point the URL at the final location`,
            { url: s.origin, target: url.href, status },
          );
        }
        const from = url.href;
        const nextUrl = parseUrl(next.href, s, from);
        checkHost(nextUrl, s, from);
        // Credentials were meant for the origin they were configured for, not wherever it redirects.
        if (nextUrl.origin !== url.origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !CROSS_ORIGIN_DROPPED.has(k)));
        url = nextUrl;
        continue;
      }
      const encoding = resHeaders['content-encoding'];
      if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
        discard(res.body);
        throw httpError('SKEIN_ERR_HTTP_STATUS', `${s.label}: ${url.href}: the server sent Content-Encoding "${encoding}" although identity was asked for; serve it uncompressed`, {
          url: s.origin,
          target: url.href,
          status,
          contentEncoding: encoding,
        });
      }
      const body = await readBody(res.body, resHeaders['content-length'], s, url, () => timedOut, timeoutError);
      return { status, headers: resHeaders, body, url: url.href, address };
    }
  } finally {
    clearTimeout(timer);
    for (const socket of sockets) socket.destroy();
    agent.destroy().catch(() => {});
  }
}

function failure(err: unknown, s: Settings, url: URL): SkeinError {
  if (err instanceof SkeinError) return err;
  // undici wraps what the connector reported in its own errors: the cause is ours.
  const cause = (err as { cause?: unknown })?.cause;
  if (cause instanceof SkeinError) return cause;
  const code = (err as { code?: unknown })?.code;
  if (code === 'UND_ERR_INVALID_ARG') return httpError('SKEIN_ERR_HTTP_OPTIONS', `${s.label}: ${url.href}: ${(err as Error).message}`, { url: s.origin }, err);
  return transportError(err, guardContext(s), url, s.ca !== undefined);
}

async function readBody(
  body: AsyncIterable<Buffer> & Parameters<typeof discard>[0],
  declared: string | undefined,
  s: Settings,
  url: URL,
  timedOut: () => boolean,
  timeoutError: (u: URL) => SkeinError,
): Promise<Buffer> {
  const tooLarge = (size: string) =>
    httpError('SKEIN_ERR_HTTP_TOO_LARGE', `${s.label}: ${url.href}: the body is ${size}, over the ${s.maxBytes}-byte limit; shrink it or raise the limit`, {
      url: s.origin,
      target: url.href,
      maxBytes: s.maxBytes,
    });
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > s.maxBytes) {
    discard(body);
    throw tooLarge(`${declared} bytes (Content-Length)`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += chunk.length;
      if (size > s.maxBytes) {
        discard(body);
        throw tooLarge(`more than ${s.maxBytes} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof SkeinError) throw err;
    if (timedOut()) throw timeoutError(url);
    throw httpError(
      'SKEIN_ERR_HTTP_NETWORK',
      `${s.label}: ${url.href}: the connection closed before the body was complete; retry, or check the server`,
      { url: s.origin, target: url.href, received: size },
      err,
    );
  }
  return Buffer.concat(chunks, size);
}
