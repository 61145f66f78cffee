import { createHash } from 'node:crypto';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { rootCertificates } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinError } from '../../common/errors/index.ts';
import { initCa, issueCert } from '../../agent/pki/index.ts';
import { sourceReason, type SourceReason } from '../../agent/sources/errors.ts';
import { outboundRequest, type Lookup } from '../../agent/http/client.ts';
import { HTTP_REASONS, httpError } from '../../agent/http/errors.ts';
import { refusedClass } from '../../agent/http/guard.ts';
import { fetchUrlSource, readSource, SOURCE_CODE_OF, sourceFailure, urlSourceRequest, type UrlSourceOptions } from '../../agent/sources/url.ts';

const GOOD = '# routine: doubles its input — UTF-8 é\ndef main(x):\n    return x * 2\n';
const sha = (body: string | Buffer) => createHash('sha256').update(body).digest('hex');
const GOOD_PIN = sha(GOOD);
const LATIN1 = Buffer.from([0x23, 0x20, 0xe9, 0x0a]); // "# é\n" in Latin-1: not UTF-8

let dir: string;
let ca: string;
let server: Server;
let port: number;
let base: string; // https://code.test:<port>
const hits = new Map<string, number>();
let connections = 0;
const big = { closedEarly: false, finished: false };

/** Resolver stub: answers `ips` for every name (all of them when the caller asks for all). */
function lookupTo(...ips: string[]): Lookup {
  const answers: LookupAddress[] = ips.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  const stub = (_host: string, options: LookupOptions, cb: (err: Error | null, address: string | LookupAddress[], family?: number) => void) => {
    const first = answers[0] as LookupAddress;
    setImmediate(() => (options.all ? cb(null, answers) : cb(null, first.address, first.family)));
  };
  return stub as unknown as Lookup;
}

async function streamBig(res: ServerResponse): Promise<void> {
  res.on('close', () => {
    big.closedEarly = !res.writableFinished;
  });
  res.writeHead(200, { 'content-type': 'text/plain' }); // no Content-Length: chunked
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  for (let i = 0; i < 64 && !res.destroyed; i++) {
    if (!res.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }
  if (!res.destroyed) res.end(() => (big.finished = true));
}

function route(req: IncomingMessage, res: ServerResponse): void {
  const path = req.url ?? '/';
  hits.set(path, (hits.get(path) ?? 0) + 1);
  const redirect = (status: number, location?: string) => {
    res.writeHead(status, location === undefined ? {} : { location });
    res.end();
  };
  const delayed = /^\/delay\/(\d+)$/.exec(path);
  const chain = /^\/chain\/(\d+)$/.exec(path);
  if (path === '/good' || path === '/rebind') {
    res.writeHead(200, { 'content-type': 'text/x-python', 'content-length': Buffer.byteLength(GOOD) });
    res.end(GOOD);
  } else if (path === '/latin1') {
    res.end(LATIN1);
  } else if (path === '/redirect-ok') redirect(302, `https://mirror.test:${port}/good`);
  else if (path === '/redirect-relative') redirect(301, '/good');
  else if (path === '/redirect-evil') redirect(302, `https://evil.test:${port}/good`);
  else if (path === '/redirect-http') redirect(302, `http://code.test:${port}/good`);
  else if (path === '/redirect-none') redirect(302);
  else if (path === '/redirect-invalid') redirect(307, 'https://[::bad/x');
  else if (path === '/loop') redirect(302, '/loop');
  else if (chain) redirect(302, Number(chain[1]) > 0 ? `/chain/${Number(chain[1]) - 1}` : '/good');
  else if (delayed) {
    // Each hop is fast enough on its own; together they exceed the whole-fetch deadline.
    const n = Number(delayed[1]);
    const timer = setTimeout(() => redirect(302, n > 0 ? `/delay/${n - 1}` : '/good'), 150);
    res.on('close', () => clearTimeout(timer));
  } else if (path === '/big-chunked') void streamBig(res);
  else if (path === '/big-length') {
    res.writeHead(200, { 'content-length': 2 * 1024 * 1024 });
    res.write('x'); // and never finish: the client must not wait for the rest
  } else if (path === '/slow-body') {
    res.writeHead(200, { 'content-type': 'text/x-python' });
    res.write('def main():\n'); // the rest never comes
  } else if (path === '/slow-headers') {
    // never answers
  } else if (path === '/gzip') {
    res.writeHead(200, { 'content-encoding': 'gzip' });
    res.end(GOOD);
  } else if (path === '/error') {
    res.writeHead(500);
    res.end('boom');
  } else {
    res.writeHead(404);
    res.end();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'skein-sources-'));
  await initCa(dir, 'sources.test');
  const paths = await issueCert(dir, { name: 'code', kind: 'agent', hosts: ['127.0.0.1', 'localhost', 'code.test', 'mirror.test', 'evil.test'] });
  ca = readFileSync(paths.ca, 'utf8');
  server = createServer({ cert: readFileSync(paths.cert), key: readFileSync(paths.key) }, route);
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  base = `https://code.test:${port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/**
 * fetchUrlSource's own steps, except that the request goes out under the "private" address
 * policy: the loopback test server stands in for a public code host. fetchUrlSource itself
 * has no such switch (its request is always "public", tested below); the public-policy
 * refusals run through fetchUrlSource, and test/e2e/sources.test.ts fetches from a public
 * address in a network namespace through the binary.
 */
async function fetchFromLoopback(opts: UrlSourceOptions) {
  const request = urlSourceRequest(opts);
  const res = await outboundRequest({ ...request, addressPolicy: 'private' }).catch((err: unknown) => {
    throw sourceFailure(err);
  });
  return readSource(res, opts);
}

/** Options for a fetch from the loopback test server (fetchFromLoopback). */
const loopback = (path: string, extra: Partial<UrlSourceOptions> = {}): UrlSourceOptions => ({
  url: `${base}${path}`,
  sha256: GOOD_PIN,
  allowedHosts: ['code.test', 'mirror.test'],
  ca,
  lookup: lookupTo('127.0.0.1'),
  ...extra,
});

async function failure(opts: UrlSourceOptions, reason: SourceReason, fetch: (o: UrlSourceOptions) => Promise<unknown> = fetchFromLoopback): Promise<SkeinError> {
  let caught: unknown;
  try {
    await fetch(opts);
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${reason}`).toBeInstanceOf(SkeinError);
  const err = caught as SkeinError;
  expect(err.code).toBe(reason);
  expect({ reason: sourceReason(err), message: err.message }).toMatchObject({ reason });
  return err;
}

describe('fetchUrlSource: success', () => {
  it('fetches a pinned routine and reports where it came from', async () => {
    const got = await fetchFromLoopback(loopback('/good'));
    expect(got).toEqual({ source: GOOD, sha256: GOOD_PIN, finalUrl: `${base}/good`, address: '127.0.0.1' });
  });

  it('accepts an upper-case pin, a Buffer CA and an allow-list entry in upper case', async () => {
    const got = await fetchFromLoopback(loopback('/good', { sha256: GOOD_PIN.toUpperCase(), ca: Buffer.from(ca), allowedHosts: ['CODE.TEST'] }));
    expect(got.source).toBe(GOOD);
  });

  it('fetches from an IP literal the address policy admits', async () => {
    const got = await fetchFromLoopback({ url: `https://127.0.0.1:${port}/good`, sha256: GOOD_PIN, allowedHosts: ['127.0.0.1'], ca });
    expect(got.address).toBe('127.0.0.1');
  });

  it('follows a redirect to another allowed host and reports the final URL', async () => {
    const got = await fetchFromLoopback(loopback('/redirect-ok'));
    expect(got.finalUrl).toBe(`https://mirror.test:${port}/good`);
    expect(got.source).toBe(GOOD);
  });

  it('follows a relative redirect', async () => {
    expect((await fetchFromLoopback(loopback('/redirect-relative'))).finalUrl).toBe(`${base}/good`);
  });

  it('follows exactly maxRedirects redirects', async () => {
    expect((await fetchFromLoopback(loopback('/chain/2', { maxRedirects: 3 }))).finalUrl).toBe(`${base}/good`);
  });
});

describe('fetchUrlSource: refusals before any connection', () => {
  it.each([['http://code.test/good'], ['file:///etc/passwd'], ['ftp://code.test/good'], ['not a url'], ['https://user:secret@code.test/good']])('SKEIN_ERR_SOURCE_SCHEME for %s', async (url) => {
    const before = connections;
    const err = await failure({ ...loopback('/good'), url }, 'SKEIN_ERR_SOURCE_SCHEME', fetchUrlSource);
    // The secret is never echoed into a message (it would land in logs); the origin names the URL.
    if (url.startsWith('https://user')) expect(err.message).toMatch(/^routine source https:\/\/code\.test embeds credentials/);
    else expect(err.message).toContain(url);
    expect(err.message).not.toContain('secret');
    expect(connections).toBe(before);
  });

  it('SKEIN_ERR_SOURCE_HOST for a host off the allow-list, naming the config key', async () => {
    const err = await failure(loopback('/good', { allowedHosts: ['mirror.test'] }), 'SKEIN_ERR_SOURCE_HOST', fetchUrlSource);
    expect(err.message).toContain(`${base}/good`);
    expect(err.message).toContain('sandbox.allowedCodeHosts');
  });

  it('matches allowed hosts exactly (no suffix or subdomain matching)', async () => {
    await failure(loopback('/good', { url: `https://sub.code.test:${port}/good` }), 'SKEIN_ERR_SOURCE_HOST', fetchUrlSource);
    await failure(loopback('/good', { allowedHosts: ['test'] }), 'SKEIN_ERR_SOURCE_HOST', fetchUrlSource);
  });

  it.each([[undefined], [''], ['abc'], ['z'.repeat(64)], [GOOD_PIN.slice(1)], [`${GOOD_PIN}0`]])('SKEIN_ERR_SOURCE_PIN_MISSING for pin %j', async (pin) => {
    const err = await failure(loopback('/good', { sha256: pin as unknown as string }), 'SKEIN_ERR_SOURCE_PIN_MISSING', fetchUrlSource);
    expect(err.message).toContain(`${base}/good`);
    expect(err.message).toContain('sha256sum');
  });

  it('refuses out-of-range options with SKEIN_ERR_CONFIG', async () => {
    for (const extra of [{ maxBytes: 0 }, { timeoutMs: -1 }, { maxRedirects: 1.5 }]) {
      await expect(fetchUrlSource(loopback('/good', extra))).rejects.toMatchObject({ code: 'SKEIN_ERR_CONFIG' });
    }
  });
});

describe('fetchUrlSource: SSRF guard', () => {
  it('refuses "localhost" resolved to loopback by the real resolver', async () => {
    const before = connections;
    const err = await failure({ url: `https://localhost:${port}/good`, sha256: GOOD_PIN, allowedHosts: ['localhost'], ca }, 'SKEIN_ERR_SOURCE_ADDRESS', fetchUrlSource);
    expect(err.message).toContain(`https://localhost:${port}/good`);
    expect(err.message).toMatch(/resolves to (127\.0\.0\.1|::1) \(loopback\)/);
    expect(connections).toBe(before);
  });

  it.each([['127.0.0.1'], ['[::1]']])('refuses the IP literal %s without connecting', async (host) => {
    const before = connections;
    const err = await failure({ url: `https://${host}:${port}/good`, sha256: GOOD_PIN, allowedHosts: [host], ca }, 'SKEIN_ERR_SOURCE_ADDRESS', fetchUrlSource);
    expect(err.message).toContain('loopback');
    expect(connections).toBe(before);
  });

  it('refuses a literal that only looks public after URL normalisation (decimal 127.0.0.1)', async () => {
    await failure({ url: `https://2130706433:${port}/good`, sha256: GOOD_PIN, allowedHosts: ['127.0.0.1'], ca }, 'SKEIN_ERR_SOURCE_ADDRESS', fetchUrlSource);
  });

  it.each([['127.0.0.1'], ['10.0.0.7'], ['169.254.169.254'], ['::ffff:127.0.0.1'], ['64:ff9b::7f00:1']])('DNS rebinding: an allowed name answering %s is refused before connecting', async (ip) => {
    const before = connections;
    const hitsBefore = hits.get('/rebind') ?? 0;
    const err = await failure(loopback('/rebind', { lookup: lookupTo(ip) }), 'SKEIN_ERR_SOURCE_ADDRESS', fetchUrlSource);
    expect(err.details).toMatchObject({ host: 'code.test', address: ip });
    expect(connections).toBe(before);
    expect(hits.get('/rebind') ?? 0).toBe(hitsBefore);
  });

  it('DNS rebinding: a mixed answer (public + loopback) is refused as a whole', async () => {
    const before = connections;
    await failure(loopback('/rebind', { lookup: lookupTo('93.184.216.34', '127.0.0.1') }), 'SKEIN_ERR_SOURCE_ADDRESS', fetchUrlSource);
    expect(connections).toBe(before);
  });
});

describe('address policy and error mapping', () => {
  it('the request is always under the "public" policy, names no private-address setting, and adds sandbox.codeCa to the system CAs', () => {
    const req = urlSourceRequest({ url: `${base}/good`, sha256: GOOD_PIN, allowedHosts: ['code.test'], ca });
    expect(req).toMatchObject({ addressPolicy: 'public', label: 'routine source', settings: { allowedHosts: 'sandbox.allowedCodeHosts' } });
    expect(req.settings?.allowPrivate).toBeUndefined();
    // The client's `ca` replaces the system CAs: a codeCa must extend them, not pin to itself.
    expect(req.ca).toEqual([...rootCertificates, ca]);
    expect(urlSourceRequest({ url: `${base}/good`, sha256: GOOD_PIN, allowedHosts: ['code.test'] }).ca).toBeUndefined();
  });

  it.each([
    ['127.0.0.1', 'loopback'],
    ['::1', 'loopback'],
    ['::ffff:10.0.0.1', 'ipv4-mapped-private'],
    ['192.168.0.10', 'private'],
    ['fe80::1%eth0', 'link-local'],
  ])('the "public" policy refuses a connection that reached %s (%s), whatever the resolver claimed', (ip, cls) => {
    // The verdict the client's connector applies to socket.remoteAddress (test/http/client.test.ts: checkPeer).
    expect(refusedClass(ip, 'public')).toBe(cls);
  });

  it('a refused address names no setting to lift it, since routine code has none', async () => {
    const err = await failure({ url: `https://localhost:${port}/good`, sha256: GOOD_PIN, allowedHosts: ['localhost'], ca }, 'SKEIN_ERR_SOURCE_ADDRESS', fetchUrlSource);
    expect(err.message).toMatch(/^routine source https:\/\/localhost:/);
    expect(err.message).toContain('no setting lifts that');
    expect(err.message).not.toMatch(/allowPrivate|set sandbox/);
  });

  it('maps every SKEIN_ERR_HTTP_* failure one to one onto a source code (options → SKEIN_ERR_CONFIG), keeping the words and the cause', () => {
    const mapped = HTTP_REASONS.filter((r) => r !== 'SKEIN_ERR_HTTP_BODY').map((r) => SOURCE_CODE_OF[r as keyof typeof SOURCE_CODE_OF]);
    expect(new Set(mapped).size).toBe(mapped.length);
    expect(mapped.filter((c) => !c.startsWith('SKEIN_ERR_SOURCE_'))).toEqual(['SKEIN_ERR_CONFIG']);
    for (const reason of HTTP_REASONS) {
      if (reason === 'SKEIN_ERR_HTTP_BODY') continue;
      const http = httpError(reason, 'routine source: https://code.test/x.py: what happened; the fix', { url: 'https://code.test/x.py', option: 'maxBytes' });
      const err = sourceFailure(http) as SkeinError;
      const code = SOURCE_CODE_OF[reason as keyof typeof SOURCE_CODE_OF];
      expect(err.code).toBe(code);
      expect(err.message).toBe('routine source https://code.test/x.py: what happened; the fix');
      expect(err.cause).toBe(http);
      if (code === 'SKEIN_ERR_CONFIG') expect(err.details).toEqual({ key: 'maxBytes' });
      else expect(sourceReason(err)).toBe(code);
    }
    const other = new Error('not an outbound failure');
    expect(sourceFailure(other)).toBe(other);
  });
});

describe('fetchUrlSource: redirects', () => {
  it('SKEIN_ERR_SOURCE_HOST for a redirect to a host off the allow-list', async () => {
    const err = await failure(loopback('/redirect-evil'), 'SKEIN_ERR_SOURCE_HOST');
    expect(err.message).toContain(`redirect to https://evil.test:${port}/good is not on sandbox.allowedCodeHosts`);
    expect(err.message).toContain(`${base}/redirect-evil`);
  });

  it('SKEIN_ERR_SOURCE_SCHEME for a redirect from https to http', async () => {
    const err = await failure(loopback('/redirect-http'), 'SKEIN_ERR_SOURCE_SCHEME');
    expect(err.message).toContain(`http://code.test:${port}/good`);
  });

  it('SKEIN_ERR_SOURCE_REDIRECT for a redirect loop', async () => {
    const before = hits.get('/loop') ?? 0;
    const err = await failure(loopback('/loop'), 'SKEIN_ERR_SOURCE_REDIRECT');
    expect(err.message).toContain('more than 3 redirect(s)');
    expect((hits.get('/loop') ?? 0) - before).toBe(4); // the first request and 3 redirects
  });

  it('SKEIN_ERR_SOURCE_REDIRECT when the chain is one longer than maxRedirects', async () => {
    await failure(loopback('/chain/3', { maxRedirects: 3 }), 'SKEIN_ERR_SOURCE_REDIRECT');
    await failure(loopback('/redirect-relative', { maxRedirects: 0 }), 'SKEIN_ERR_SOURCE_REDIRECT');
  });

  it.each([
    ['/redirect-none', 'no Location'],
    ['/redirect-invalid', 'invalid'],
  ])('SKEIN_ERR_SOURCE_REDIRECT for %s', async (path, words) => {
    const err = await failure(loopback(path), 'SKEIN_ERR_SOURCE_REDIRECT');
    expect(err.message).toContain(words);
    expect(err.message).toContain(`${base}${path}`);
  });
});

describe('fetchUrlSource: body limits and content', () => {
  it('SKEIN_ERR_SOURCE_TOO_LARGE for a chunked body over the default 1 MiB, aborting the transfer', async () => {
    big.closedEarly = false;
    big.finished = false;
    const err = await failure(loopback('/big-chunked'), 'SKEIN_ERR_SOURCE_TOO_LARGE');
    expect(err.message).toContain(`${base}/big-chunked`);
    expect(err.details).toMatchObject({ maxBytes: 1024 * 1024 });
    for (let i = 0; i < 50 && !big.closedEarly; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(big.closedEarly).toBe(true);
    expect(big.finished).toBe(false);
  });

  it('SKEIN_ERR_SOURCE_TOO_LARGE for a small limit on a chunked body', async () => {
    await failure(loopback('/big-chunked', { maxBytes: 1000 }), 'SKEIN_ERR_SOURCE_TOO_LARGE');
  });

  it('SKEIN_ERR_SOURCE_TOO_LARGE from Content-Length without waiting for the body', async () => {
    const started = Date.now();
    const err = await failure(loopback('/big-length', { timeoutMs: 5_000 }), 'SKEIN_ERR_SOURCE_TOO_LARGE');
    expect(err.message).toContain('2097152 bytes (Content-Length)');
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('accepts a body of exactly maxBytes', async () => {
    const got = await fetchFromLoopback(loopback('/good', { maxBytes: Buffer.byteLength(GOOD) }));
    expect(got.source).toBe(GOOD);
    await failure(loopback('/good', { maxBytes: Buffer.byteLength(GOOD) - 1 }), 'SKEIN_ERR_SOURCE_TOO_LARGE');
  });

  it('SKEIN_ERR_SOURCE_PIN_MISMATCH shows expected and actual digests', async () => {
    const wrong = sha('something else');
    const err = await failure(loopback('/good', { sha256: wrong }), 'SKEIN_ERR_SOURCE_PIN_MISMATCH');
    expect(err.message).toContain(`expected ${wrong}`);
    expect(err.message).toContain(`got ${GOOD_PIN}`);
    expect(err.message).toContain(`${base}/good`);
  });

  it('SKEIN_ERR_SOURCE_ENCODING for a pinned body that is not UTF-8', async () => {
    const err = await failure(loopback('/latin1', { sha256: sha(LATIN1) }), 'SKEIN_ERR_SOURCE_ENCODING');
    expect(err.message).toContain(`${base}/latin1`);
  });

  it('SKEIN_ERR_SOURCE_HTTP for a 500 and a 404', async () => {
    const err = await failure(loopback('/error'), 'SKEIN_ERR_SOURCE_HTTP');
    expect(err.message).toContain(`${base}/error`);
    expect(err.message).toContain('500');
    expect(err.details).toMatchObject({ status: 500 });
    await failure(loopback('/missing'), 'SKEIN_ERR_SOURCE_HTTP');
  });

  it('SKEIN_ERR_SOURCE_HTTP for a compressed body it did not ask for', async () => {
    const err = await failure(loopback('/gzip'), 'SKEIN_ERR_SOURCE_HTTP');
    expect(err.message).toContain('gzip');
  });
});

describe('fetchUrlSource: deadline, TLS and network', () => {
  it('SKEIN_ERR_SOURCE_TIMEOUT for a body that never completes', async () => {
    const started = Date.now();
    const err = await failure(loopback('/slow-body', { timeoutMs: 300 }), 'SKEIN_ERR_SOURCE_TIMEOUT');
    expect(err.message).toContain(`${base}/slow-body`);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('SKEIN_ERR_SOURCE_TIMEOUT for headers that never come', async () => {
    await failure(loopback('/slow-headers', { timeoutMs: 300 }), 'SKEIN_ERR_SOURCE_TIMEOUT');
  });

  it('the deadline covers the whole fetch, redirects included', async () => {
    // 4 hops of 150 ms each: every hop is under the 400 ms deadline, the whole is not.
    await failure(loopback('/delay/3', { timeoutMs: 400 }), 'SKEIN_ERR_SOURCE_TIMEOUT');
    expect((await fetchFromLoopback(loopback('/delay/1', { timeoutMs: 5_000 }))).finalUrl).toBe(`${base}/good`);
  });

  it('SKEIN_ERR_SOURCE_TLS when the certificate is not from a trusted CA', async () => {
    const { ca: _ca, ...untrusted } = loopback('/good');
    const err = await failure(untrusted, 'SKEIN_ERR_SOURCE_TLS');
    expect(err.message).toContain(`${base}/good`);
  });

  it('SKEIN_ERR_SOURCE_TLS when the certificate does not name the host', async () => {
    const err = await failure(loopback('/good', { url: `https://wrong.test:${port}/good`, allowedHosts: ['wrong.test'] }), 'SKEIN_ERR_SOURCE_TLS');
    expect(err.details).toMatchObject({ tlsCode: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });

  it('SKEIN_ERR_SOURCE_NETWORK when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const freePort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await failure(loopback('/good', { url: `https://code.test:${freePort}/good` }), 'SKEIN_ERR_SOURCE_NETWORK');
    expect(err.message).toContain('ECONNREFUSED');
    expect(err.message).toContain(`https://code.test:${freePort}/good`);
  });
});
