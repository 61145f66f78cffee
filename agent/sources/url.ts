/**
 * Fetches routine source code from an https URL, pinned by SHA-256, through the guarded
 * outbound HTTPS client (agent/http, undici). The client enforces the transport rules:
 *
 *  - https only (every redirect hop too), TLS ≥ 1.2 with certificate verification against
 *    the system CAs (plus sandbox.codeCa when set);
 *  - the host of the URL and of every redirect target must be on sandbox.allowedCodeHosts,
 *    compared exactly;
 *  - the "public" address policy, always: the resolved address and the address actually
 *    connected to must be public, IP-literal hosts included (no setting lifts it here);
 *  - size, redirect count and a whole-fetch deadline are bounded.
 *
 * This file adds what is particular to routine code: a mandatory pin, a 2xx answer, a body
 * that hashes to the pin and decodes as UTF-8, and the SKEIN_ERR_SOURCE_* vocabulary: every
 * SKEIN_ERR_HTTP_* failure is mapped onto its source code by one table (SOURCE_CODE_OF).
 *
 * @example
 *   const { source } = await fetchUrlSource({
 *     url: 'https://code.example.com/routines/resize.py',
 *     sha256: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
 *     allowedHosts: ['code.example.com'],
 *   });
 */
import { createHash } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { rootCertificates } from 'node:tls';
import { SkeinError } from '../../common/errors/index.ts';
import { outboundRequest, type Lookup, type OutboundRequest, type OutboundResponse } from '../http/client.ts';
import { httpReason, type HttpReason } from '../http/errors.ts';
import { sourceError, type SourceReason } from './errors.ts';

export interface UrlSourceOptions {
  /** Must be https://. */
  url: string;
  /** Mandatory pin: 64 hex characters; the body must hash to it. */
  sha256: string;
  /** Exact host names (IP literals allowed) the URL and every redirect target must use. */
  allowedHosts: string[];
  /** Default 1 MiB (agent/http DEFAULT_MAX_BYTES); reading stops and the fetch fails once the body exceeds it. */
  maxBytes?: number;
  /** Default 10 000 ms for the whole fetch: every hop's connect, headers and body. */
  timeoutMs?: number;
  /** Default 3; each hop is re-checked (https, allow-list, address). */
  maxRedirects?: number;
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

const LABEL = 'routine source';
const HOSTS_KEY = 'sandbox.allowedCodeHosts';
const PIN_RE = /^[0-9a-fA-F]{64}$/;

/**
 * What each outbound-request failure is called for a routine source: one to one, except that
 * invalid options are a configuration error. SKEIN_ERR_HTTP_BODY is never raised by the
 * client itself (it belongs to callers that parse bodies; the source checks its own: pin, UTF-8).
 */
export const SOURCE_CODE_OF: Record<Exclude<HttpReason, 'SKEIN_ERR_HTTP_BODY'>, SourceReason | 'SKEIN_ERR_CONFIG'> = {
  SKEIN_ERR_HTTP_URL: 'SKEIN_ERR_SOURCE_SCHEME',
  SKEIN_ERR_HTTP_OPTIONS: 'SKEIN_ERR_CONFIG',
  SKEIN_ERR_HTTP_HOST: 'SKEIN_ERR_SOURCE_HOST',
  SKEIN_ERR_HTTP_ADDRESS: 'SKEIN_ERR_SOURCE_ADDRESS',
  SKEIN_ERR_HTTP_REDIRECT: 'SKEIN_ERR_SOURCE_REDIRECT',
  SKEIN_ERR_HTTP_TOO_LARGE: 'SKEIN_ERR_SOURCE_TOO_LARGE',
  SKEIN_ERR_HTTP_TIMEOUT: 'SKEIN_ERR_SOURCE_TIMEOUT',
  SKEIN_ERR_HTTP_STATUS: 'SKEIN_ERR_SOURCE_HTTP',
  SKEIN_ERR_HTTP_TLS: 'SKEIN_ERR_SOURCE_TLS',
  SKEIN_ERR_HTTP_NETWORK: 'SKEIN_ERR_SOURCE_NETWORK',
};

/**
 * The request fetchUrlSource sends for `opts`: always the "public" address policy, with no
 * private-address setting to name. Throws SKEIN_ERR_SOURCE_PIN_MISSING before anything is sent.
 */
export function urlSourceRequest(opts: UrlSourceOptions): OutboundRequest {
  const url = typeof opts.url === 'string' ? opts.url : String(opts.url);
  const pin = opts.sha256 as unknown;
  if (typeof pin !== 'string' || !PIN_RE.test(pin)) {
    throw sourceError(
      'SKEIN_ERR_SOURCE_PIN_MISSING',
      `${LABEL} ${url} has ${pin === undefined || pin === '' ? 'no' : 'an invalid'} sha256 pin: set sha256 to the 64 hex characters printed by \`sha256sum <file>\``,
      { url },
    );
  }
  return {
    url,
    method: 'GET',
    allowedHosts: opts.allowedHosts,
    addressPolicy: 'public',
    label: LABEL,
    settings: { allowedHosts: HOSTS_KEY },
    ...(opts.maxBytes !== undefined ? { maxBytes: opts.maxBytes } : {}),
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.maxRedirects !== undefined ? { maxRedirects: opts.maxRedirects } : {}),
    // The client's `ca` replaces the system CAs; sandbox.codeCa adds one to them.
    ...(opts.ca !== undefined ? { ca: [...rootCertificates, opts.ca] } : {}),
    ...(opts.lookup !== undefined ? { lookup: opts.lookup } : {}),
  };
}

/**
 * An outbound-request failure in the routine-source vocabulary (SOURCE_CODE_OF). The message
 * keeps the client's words, which already name the URL, the host or address and the fix;
 * the http error stays reachable as `cause`. Anything else is rethrown unchanged.
 */
export function sourceFailure(err: unknown): unknown {
  const reason = httpReason(err);
  if (reason === undefined || reason === 'SKEIN_ERR_HTTP_BODY') return err;
  const e = err as SkeinError;
  // "routine source: https://…" → "routine source https://…", the wording users already know.
  const message = e.message.startsWith(`${LABEL}: `) ? `${LABEL} ${e.message.slice(LABEL.length + 2)}` : e.message;
  const code = SOURCE_CODE_OF[reason];
  if (code === 'SKEIN_ERR_CONFIG') {
    const option = e.details.option;
    return new SkeinError('SKEIN_ERR_CONFIG', message, { key: option === 'allowedHosts' ? HOSTS_KEY : option }, { cause: err });
  }
  const { reason: _http, ...details } = e.details;
  return sourceError(code, message, details, err);
}

/** Checks a fetched response: a 2xx status, the pin, UTF-8. */
export function readSource(res: OutboundResponse, opts: Pick<UrlSourceOptions, 'url' | 'sha256'>): FetchedSource {
  const origin = new URL(opts.url).href;
  const pin = opts.sha256.toLowerCase();
  if (res.status < 200 || res.status >= 300) {
    throw sourceError(
      'SKEIN_ERR_SOURCE_HTTP',
      `${LABEL} ${res.url}: the server answered ${res.status} ${STATUS_CODES[res.status] ?? ''}`.trimEnd() + '; check the URL and that the file is published',
      { url: origin, target: res.url, status: res.status },
    );
  }
  const actual = createHash('sha256').update(res.body).digest('hex');
  if (actual !== pin) {
    throw sourceError('SKEIN_ERR_SOURCE_PIN_MISMATCH', `${LABEL} ${res.url}: SHA-256 mismatch: expected ${pin}, got ${actual}; the file changed or was tampered with — review it, then update sha256`, {
      url: origin,
      target: res.url,
      expected: pin,
      actual,
    });
  }
  let source: string;
  try {
    source = new TextDecoder('utf-8', { fatal: true }).decode(res.body);
  } catch (err) {
    throw sourceError('SKEIN_ERR_SOURCE_ENCODING', `${LABEL} ${res.url}: the body is not valid UTF-8; save the file as UTF-8`, { url: origin, target: res.url }, err);
  }
  return { source, sha256: actual, finalUrl: res.url, address: res.address };
}

/**
 * Fetches the routine at `opts.url`, following at most `maxRedirects` redirects, and returns
 * its text once its SHA-256 equals the pin. Every failure is a SkeinError whose
 * `details.reason` is a SKEIN_ERR_SOURCE_* code (see errors.ts) and whose message names the URL.
 */
export async function fetchUrlSource(opts: UrlSourceOptions): Promise<FetchedSource> {
  const request = urlSourceRequest(opts);
  let res: OutboundResponse;
  try {
    res = await outboundRequest(request);
  } catch (err) {
    throw sourceFailure(err);
  }
  return readSource(res, opts);
}
