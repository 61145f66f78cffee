/**
 * Fetches routine source code from an https URL, pinned by SHA-256 and guarded against SSRF:
 *
 *  - https only (every redirect hop too), TLS ≥ 1.2 with certificate verification;
 *  - the host of the URL and of every redirect target must be on the allow-list
 *    (sandbox.allowedCodeHosts), compared exactly;
 *  - the resolved address and the address actually connected to must be public (guard.ts),
 *    IP-literal hosts included;
 *  - size, redirect count and a whole-fetch deadline are bounded;
 *  - the body must hash to the pin and decode as UTF-8.
 *
 * It uses node:https with a fresh agent per request, so no proxy environment variable and no
 * pooled connection is ever involved.
 *
 * @example
 *   const { source } = await fetchUrlSource({
 *     url: 'https://code.example.com/routines/resize.py',
 *     sha256: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
 *     allowedHosts: ['code.example.com'],
 *   });
 */
import { createHash } from 'node:crypto';
import { lookup as dnsLookup } from 'node:dns';
import type { IncomingMessage } from 'node:http';
import { request, type RequestOptions } from 'node:https';
import { rootCertificates } from 'node:tls';
import { SkeinError } from '../../common/errors/index.ts';
import { isTlsFailure } from '../pki/tls-refusal.ts';
import { classifyAddress, isIpLiteral } from '../http/address.ts';
import { sourceError } from './errors.ts';
import { guardedLookup, watchPeer, type Classify, type Lookup } from './guard.ts';

export interface UrlSourceOptions {
  /** Must be https://. */
  url: string;
  /** Mandatory pin: 64 hex characters; the body must hash to it. */
  sha256: string;
  /** Exact host names (IP literals allowed) the URL and every redirect target must use. */
  allowedHosts: string[];
  /** Default 1 MiB; reading stops and the fetch fails once the body exceeds it. */
  maxBytes?: number;
  /** Default 10 000 ms for the whole fetch: every hop's connect, headers and body. */
  timeoutMs?: number;
  /** Default 3; each hop is re-checked (https, allow-list, address). */
  maxRedirects?: number;
  /**
   * How the SSRF guard judges an address (default address.ts classifyAddress: only public
   * addresses pass). The agent never sets it; a unit test passes its own to stand a loopback
   * server in for a public host.
   */
  classifyAddress?: Classify;
  /** An extra CA trusted for the server certificate, on top of the system CAs. */
  ca?: string | Buffer;
  /** Resolver, injectable for tests (DNS rebinding simulation). Default `dns.lookup`. */
  lookup?: Lookup;
}

export interface FetchedSource {
  source: string;
  /** Lower-case hex SHA-256 of the body (equal to the pin). */
  sha256: string;
  /** The URL the body came from, after redirects. */
  finalUrl: string;
  /** The remote address the body was read from. */
  address: string;
}

export const DEFAULT_MAX_BYTES = 1024 * 1024;
export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_REDIRECTS = 3;
const HOSTS_KEY = 'sandbox.allowedCodeHosts';
const PIN_RE = /^[0-9a-fA-F]{64}$/;

interface Settings {
  origin: string;
  pin: string;
  hosts: Set<string>;
  maxBytes: number;
  maxRedirects: number;
  timeoutMs: number;
  deadline: number;
  classify: Classify;
  ca: Array<string | Buffer> | undefined;
  lookup: Lookup;
}

type Hop = { kind: 'redirect'; status: number; location: string | undefined } | { kind: 'body'; body: Buffer; address: string };

const bare = (hostname: string) => hostname.replace(/^\[(.*)\]$/, '$1');

/** Puts an allow-list entry in the form URL.hostname uses (lower case, punycode, canonical IPv6). */
function canonicalHost(entry: string): string {
  const trimmed = bare(entry.trim());
  try {
    return bare(new URL(`https://${trimmed.includes(':') ? `[${trimmed}]` : trimmed}/`).hostname);
  } catch {
    return trimmed.toLowerCase();
  }
}

function optionInteger(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new SkeinError('SKEIN_ERR_CONFIG', `routine source option ${name} must be an integer ≥ ${min}, got ${String(value)}`, { key: name });
  }
  return value;
}

function parseUrl(text: string, origin: string, redirectedFrom?: string): URL {
  const via = redirectedFrom === undefined ? '' : ` (redirect from ${redirectedFrom})`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw sourceError('SKEIN_ERR_SOURCE_SCHEME', `routine source ${JSON.stringify(origin)}${via} is not a valid URL: write it as https://host/path`, {
      url: origin,
    });
  }
  if (url.protocol !== 'https:') {
    throw sourceError(
      'SKEIN_ERR_SOURCE_SCHEME',
      redirectedFrom === undefined
        ? `routine source ${url.href} uses ${url.protocol.replace(/:$/, '')}, not https: serve the file over https and use an https:// URL`
        : `routine source ${origin}: redirect from ${redirectedFrom} to ${url.href} leaves https; point the URL at the final https location`,
      { url: origin, target: url.href },
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw sourceError('SKEIN_ERR_SOURCE_SCHEME', `routine source ${origin}${via} embeds credentials in the URL: remove user:password@ (code hosts must be public)`, {
      url: origin,
    });
  }
  return url;
}

function checkHost(url: URL, s: Settings, redirectedFrom?: string): void {
  const host = bare(url.hostname);
  if (!s.hosts.has(host)) {
    throw sourceError(
      'SKEIN_ERR_SOURCE_HOST',
      redirectedFrom === undefined
        ? `routine source ${url.href}: host "${host}" is not on ${HOSTS_KEY}; add it there or fetch from an allowed host`
        : `routine source ${s.origin}: redirect to ${url.href} is not on ${HOSTS_KEY}; add "${host}" there or point the URL at the final location`,
      { url: s.origin, host, target: url.href },
    );
  }
  // Literal addresses never reach the resolver, so they are checked here.
  if (isIpLiteral(host)) {
    const cls = s.classify(host);
    if (cls !== 'public') {
      throw sourceError('SKEIN_ERR_SOURCE_ADDRESS', `routine source ${url.href}: ${host} is a ${cls} address, not a public one; routine code may only come from public addresses (SSRF guard)`, {
        url: s.origin,
        address: host,
        addressClass: cls,
      });
    }
  }
}

function transportError(err: unknown, url: URL, s: Settings): SkeinError {
  if (err instanceof SkeinError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : 'ERROR';
  const message = e?.message ?? String(err);
  if (isTlsFailure(err)) {
    return sourceError(
      'SKEIN_ERR_SOURCE_TLS',
      `routine source ${url.href}: TLS failed (${code}: ${message}); the host must present a certificate for "${bare(url.hostname)}" from a trusted CA, over TLS 1.2 or later`,
      { url: s.origin, target: url.href, tlsCode: code },
      err,
    );
  }
  return sourceError(
    'SKEIN_ERR_SOURCE_NETWORK',
    `routine source ${url.href}: cannot fetch (${code}: ${message}); check that the host resolves and serves https on port ${url.port || '443'}`,
    { url: s.origin, target: url.href, errno: code },
    err,
  );
}

/** One request/response. Resolves with a redirect or a complete body; rejects with a SkeinError. */
function fetchOnce(url: URL, s: Settings): Promise<Hop> {
  return new Promise<Hop>((resolve, reject) => {
    const remaining = s.deadline - Date.now();
    const timeoutError = () =>
      sourceError('SKEIN_ERR_SOURCE_TIMEOUT', `routine source ${url.href}: no complete response within ${s.timeoutMs} ms; check the host is reachable and fast, or raise the timeout`, {
        url: s.origin,
        target: url.href,
        timeoutMs: s.timeoutMs,
      });
    if (remaining <= 0) {
      reject(timeoutError());
      return;
    }
    let settled = false;
    let refusal: SkeinError | undefined;
    let address: string | undefined;
    let peerChecked = false;
    const host = bare(url.hostname);
    const options: RequestOptions = {
      host,
      port: url.port === '' ? 443 : Number(url.port),
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { host: url.host, 'user-agent': 'skein', accept: '*/*', 'accept-encoding': 'identity' },
      // A private agent: no pooled sockets, no proxy from the environment.
      agent: false,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      lookup: guardedLookup(s.lookup, url.href, s.classify, (err) => {
        refusal = err;
      }),
    };
    if (!isIpLiteral(host)) options.servername = host;
    if (s.ca !== undefined) options.ca = s.ca;

    const req = request(options);
    const timer = setTimeout(() => fail(timeoutError()), remaining);
    const fail = (err: SkeinError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
      req.destroy();
    };
    const succeed = (hop: Hop) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(hop);
    };

    req.on('socket', (socket) => {
      watchPeer(socket, url.href, s.classify, (err, peer) => {
        peerChecked = true;
        if (err) {
          refusal = err;
          fail(err);
        } else {
          address = peer;
        }
      });
    });
    req.on('error', (err) => fail(refusal ?? transportError(err, url, s)));
    req.on('response', (res: IncomingMessage) => {
      // Fail closed if a runtime skipped the 'connect' event the peer check listens for.
      if (!peerChecked) {
        watchPeer(res.socket, url.href, s.classify, (err, peer) => {
          if (err) fail(err);
          else address = peer;
        });
        if (settled) return;
      }
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400) {
        const location = res.headers.location;
        succeed({ kind: 'redirect', status, location });
        req.destroy();
        return;
      }
      if (status < 200 || status >= 300) {
        fail(
          sourceError('SKEIN_ERR_SOURCE_HTTP', `routine source ${url.href}: the server answered ${status} ${res.statusMessage ?? ''}`.trimEnd() + '; check the URL and that the file is published', {
            url: s.origin,
            target: url.href,
            status,
          }),
        );
        return;
      }
      const encoding = res.headers['content-encoding'];
      if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
        fail(
          sourceError('SKEIN_ERR_SOURCE_HTTP', `routine source ${url.href}: the server sent Content-Encoding "${encoding}" although identity was asked for; serve the file uncompressed`, {
            url: s.origin,
            target: url.href,
            status,
            contentEncoding: encoding,
          }),
        );
        return;
      }
      const tooLarge = (size: string) =>
        sourceError('SKEIN_ERR_SOURCE_TOO_LARGE', `routine source ${url.href}: the body is ${size}, over the ${s.maxBytes}-byte limit; shrink the file or raise the source size limit`, {
          url: s.origin,
          target: url.href,
          maxBytes: s.maxBytes,
        });
      const declared = res.headers['content-length'];
      if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > s.maxBytes) {
        fail(tooLarge(`${declared} bytes (Content-Length)`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let ended = false;
      res.on('data', (chunk: Buffer) => {
        if (settled) return;
        size += chunk.length;
        if (size > s.maxBytes) fail(tooLarge(`more than ${s.maxBytes} bytes`));
        else chunks.push(chunk);
      });
      res.on('end', () => {
        ended = true;
        succeed({ kind: 'body', body: Buffer.concat(chunks, size), address: address ?? res.socket?.remoteAddress ?? '' });
      });
      const truncated = (err?: unknown) =>
        fail(
          refusal ??
            sourceError(
              'SKEIN_ERR_SOURCE_NETWORK',
              `routine source ${url.href}: the connection closed before the body was complete; retry, or check the server`,
              { url: s.origin, target: url.href, received: size },
              err,
            ),
        );
      res.on('error', truncated);
      res.on('close', () => {
        if (!ended) truncated();
      });
    });
    req.end();
  });
}

/**
 * Fetches the routine at `opts.url`, following at most `maxRedirects` redirects, and returns
 * its text once its SHA-256 equals the pin. Every failure is a SkeinError whose
 * `details.reason` is a SKEIN_ERR_SOURCE_* code (see errors.ts) and whose message names the URL.
 */
export async function fetchUrlSource(opts: UrlSourceOptions): Promise<FetchedSource> {
  const origin = typeof opts.url === 'string' ? opts.url : String(opts.url);
  let url = parseUrl(origin, origin);
  const pin = opts.sha256 as unknown;
  if (typeof pin !== 'string' || !PIN_RE.test(pin)) {
    throw sourceError(
      'SKEIN_ERR_SOURCE_PIN_MISSING',
      `routine source ${url.href} has ${pin === undefined || pin === '' ? 'no' : 'an invalid'} sha256 pin: set sha256 to the 64 hex characters printed by \`sha256sum <file>\``,
      { url: origin },
    );
  }
  if (!Array.isArray(opts.allowedHosts)) {
    throw new SkeinError('SKEIN_ERR_CONFIG', `routine source ${url.href}: ${HOSTS_KEY} must be a list of host names`, { key: HOSTS_KEY });
  }
  const timeoutMs = optionInteger('timeoutMs', opts.timeoutMs, DEFAULT_TIMEOUT_MS, 1);
  const s: Settings = {
    origin: url.href,
    pin: pin.toLowerCase(),
    hosts: new Set(opts.allowedHosts.map(canonicalHost)),
    maxBytes: optionInteger('maxBytes', opts.maxBytes, DEFAULT_MAX_BYTES, 1),
    maxRedirects: optionInteger('maxRedirects', opts.maxRedirects, DEFAULT_MAX_REDIRECTS, 0),
    timeoutMs,
    deadline: Date.now() + timeoutMs,
    classify: opts.classifyAddress ?? classifyAddress,
    ca: opts.ca === undefined ? undefined : [...rootCertificates, opts.ca],
    lookup: opts.lookup ?? dnsLookup,
  };
  checkHost(url, s);

  // Bounded: one iteration per hop, at most maxRedirects + 1 hops.
  for (let redirects = 0; ; redirects++) {
    const hop = await fetchOnce(url, s);
    if (hop.kind === 'body') return verify(hop, url, s);
    if (redirects >= s.maxRedirects) {
      throw sourceError(
        'SKEIN_ERR_SOURCE_REDIRECT',
        `routine source ${s.origin}: more than ${s.maxRedirects} redirect(s) (last: ${hop.status} from ${url.href}); point the URL at the final location`,
        { url: s.origin, target: url.href, maxRedirects: s.maxRedirects },
      );
    }
    let next: URL;
    try {
      if (hop.location === undefined || hop.location.trim() === '') throw new Error('no Location');
      next = new URL(hop.location, url);
    } catch {
      throw sourceError(
        'SKEIN_ERR_SOURCE_REDIRECT',
        `routine source ${s.origin}: ${url.href} answered ${hop.status} with ${hop.location === undefined ? 'no' : `an invalid (${JSON.stringify(hop.location)})`} Location; point the URL at the file itself`,
        { url: s.origin, target: url.href, status: hop.status },
      );
    }
    const from = url.href;
    url = parseUrl(next.href, s.origin, from);
    checkHost(url, s, from);
  }
}

function verify(hop: { body: Buffer; address: string }, url: URL, s: Settings): FetchedSource {
  const actual = createHash('sha256').update(hop.body).digest('hex');
  if (actual !== s.pin) {
    throw sourceError(
      'SKEIN_ERR_SOURCE_PIN_MISMATCH',
      `routine source ${url.href}: SHA-256 mismatch: expected ${s.pin}, got ${actual}; the file changed or was tampered with — review it, then update sha256`,
      { url: s.origin, target: url.href, expected: s.pin, actual },
    );
  }
  let source: string;
  try {
    source = new TextDecoder('utf-8', { fatal: true }).decode(hop.body);
  } catch (err) {
    throw sourceError('SKEIN_ERR_SOURCE_ENCODING', `routine source ${url.href}: the body is not valid UTF-8; save the file as UTF-8`, { url: s.origin, target: url.href }, err);
  }
  return { source, sha256: actual, finalUrl: url.href, address: hop.address };
}
