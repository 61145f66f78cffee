/**
 * The one SPIFFE ID parser: the agent's client identities, the certificates it pins when it
 * dials a discovered peer, the SPIFFE IDs advertisements and endorsements carry, and the
 * trust domain a CA names all go through `parseSpiffeId`.
 *
 * Rules (SPIFFE ID spec, https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md,
 * and X509-SVID spec §2 and §4):
 *   - scheme exactly "spiffe://" (go-spiffe refuses "SPIFFE://" too);
 *   - trust domain: 1–255 of a-z 0-9 . - _ (lower case only); no port, no user info;
 *   - path: "/"-separated segments of A-Z a-z 0-9 . - _; no empty segment (so no "//" and
 *     no trailing "/"), no "." or ".." segment; empty only for a trust domain's own ID;
 *   - no query, no fragment, no percent-encoding; at most 2048 bytes in all.
 * A leaf certificate (a workload: a client or an agent) must have a path; a signing (CA)
 * certificate's ID is the bare trust domain "spiffe://example.org".
 *
 * @example
 *   parseSpiffeId('spiffe://skein.local/client/ops')
 *   // { ok: true, id: 'spiffe://skein.local/client/ops', trustDomain: 'skein.local', path: '/client/ops' }
 *   parseSpiffeId('spiffe://skein.local/a/../b')
 *   // { ok: false, problem: 'dot-segment', message: 'the path segment ".." is not allowed (SPIFFE IDs are never normalized)' }
 */

/** Stable names of what is wrong with a SPIFFE ID (tests and callers match on these). */
export type SpiffeProblem =
  | 'empty'
  | 'too-long'
  | 'scheme'
  | 'trust-domain-missing'
  | 'trust-domain-case'
  | 'trust-domain-chars'
  | 'trust-domain-too-long'
  | 'port'
  | 'userinfo'
  | 'percent-encoding'
  | 'query'
  | 'fragment'
  | 'path-missing'
  | 'path-not-allowed'
  | 'empty-segment'
  | 'dot-segment'
  | 'segment-chars';

export type SpiffeParse = { ok: true; id: string; trustDomain: string; path: string } | { ok: false; problem: SpiffeProblem; message: string };

export const SPIFFE_SCHEME = 'spiffe://';
/** SPIFFE ID spec §2.3: "URIs with a maximum length of 2048 bytes". */
export const MAX_SPIFFE_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN = 255;
const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
/** A whole trust domain name (the config schema validates tls.trustDomains with it). */
export const TRUST_DOMAIN_PATTERN = /^[a-z0-9._-]{1,255}$/;
const SEGMENT_CHARS = /^[A-Za-z0-9._-]+$/;

const fail = (problem: SpiffeProblem, message: string): SpiffeParse => ({ ok: false, problem, message });

/**
 * Parses a SPIFFE ID. `kind` "workload" (the default) requires a path, as every leaf
 * certificate (X509-SVID §2) and every advertised agent does; "trust-domain" requires none,
 * as a CA certificate's ID (spiffe://example.org) has.
 */
export function parseSpiffeId(text: unknown, kind: 'workload' | 'trust-domain' = 'workload'): SpiffeParse {
  if (typeof text !== 'string' || text.length === 0) return fail('empty', 'it is empty');
  if (Buffer.byteLength(text) > MAX_SPIFFE_ID_BYTES) return fail('too-long', `it is longer than ${MAX_SPIFFE_ID_BYTES} bytes`);
  if (!text.startsWith(SPIFFE_SCHEME)) {
    return text.toLowerCase().startsWith(SPIFFE_SCHEME) ? fail('scheme', 'the scheme must be "spiffe://" in lower case') : fail('scheme', 'it does not start with "spiffe://"');
  }
  // Query and fragment are checked on the whole rest, so "spiffe://td?x" names the query, not
  // a bad trust domain character.
  const rest = text.slice(SPIFFE_SCHEME.length);
  if (rest.includes('?')) return fail('query', 'it must not have a query ("?")');
  if (rest.includes('#')) return fail('fragment', 'it must not have a fragment ("#")');
  if (rest.includes('%')) return fail('percent-encoding', 'it must not contain percent-encoding ("%")');
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  if (trustDomain.length === 0) return fail('trust-domain-missing', 'it has no trust domain');
  if (trustDomain.includes('@')) return fail('userinfo', 'it must not carry user info ("user@") before the trust domain');
  if (trustDomain.includes(':')) return fail('port', 'the trust domain must not carry a port');
  if (trustDomain.length > MAX_TRUST_DOMAIN) return fail('trust-domain-too-long', `the trust domain is longer than ${MAX_TRUST_DOMAIN} characters`);
  if (!TRUST_DOMAIN_CHARS.test(trustDomain)) {
    return TRUST_DOMAIN_CHARS.test(trustDomain.toLowerCase())
      ? fail('trust-domain-case', `the trust domain "${trustDomain}" must be lower case`)
      : fail('trust-domain-chars', `the trust domain "${trustDomain}" may hold only a-z, 0-9, ".", "-" and "_"`);
  }
  if (path === '') {
    if (kind === 'workload') return fail('path-missing', `it has no path: spiffe://${trustDomain} names a trust domain, not a workload`);
    return { ok: true, id: text, trustDomain, path };
  }
  if (kind === 'trust-domain') return fail('path-not-allowed', 'a trust domain ID has no path');
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') return fail('empty-segment', 'the path has an empty segment ("//" or a trailing "/")');
    if (segment === '.' || segment === '..') return fail('dot-segment', `the path segment "${segment}" is not allowed (SPIFFE IDs are never normalized)`);
    if (!SEGMENT_CHARS.test(segment)) return fail('segment-chars', `the path segment "${segment}" may hold only A-Z, a-z, 0-9, ".", "-" and "_"`);
  }
  return { ok: true, id: text, trustDomain, path };
}

/** True for a valid workload SPIFFE ID (spiffe://<trust domain>/<path>). */
export function isSpiffeId(text: unknown): text is string {
  return parseSpiffeId(text).ok;
}
