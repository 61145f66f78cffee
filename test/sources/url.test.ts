import { createHash } from 'node:crypto';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinError } from '../../common/errors/index.ts';
import { initCa, issueCert } from '../../agent/pki/index.ts';
import { sourceReason, type SourceReason } from '../../agent/sources/errors.ts';
import { classifyAddress } from '../../agent/http/address.ts';
import { assertPublicPeer, watchPeer, type Classify, type Lookup } from '../../agent/sources/guard.ts';
import { fetchUrlSource, type UrlSourceOptions } from '../../agent/sources/url.ts';

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
 * The shipped SSRF verdict, except that the test server's own address counts as public: the
 * server stands in for a public code host (the guard is injected; the agent has no switch).
 */
const serverIsPublic: Classify = (address) => (address === '127.0.0.1' ? 'public' : classifyAddress(address));

/** Options for a fetch from the loopback test server, judged by serverIsPublic. */
const loopback = (path: string, extra: Partial<UrlSourceOptions> = {}): UrlSourceOptions => ({
  url: `${base}${path}`,
  sha256: GOOD_PIN,
  allowedHosts: ['code.test', 'mirror.test'],
  classifyAddress: serverIsPublic,
  ca,
  lookup: lookupTo('127.0.0.1'),
  ...extra,
});

async function failure(opts: UrlSourceOptions, reason: SourceReason): Promise<SkeinError> {
  let caught: unknown;
  try {
    await fetchUrlSource(opts);
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
    const got = await fetchUrlSource(loopback('/good'));
    expect(got).toEqual({ source: GOOD, sha256: GOOD_PIN, finalUrl: `${base}/good`, address: '127.0.0.1' });
  });

  it('accepts an upper-case pin, a Buffer CA and an allow-list entry in upper case', async () => {
    const got = await fetchUrlSource(loopback('/good', { sha256: GOOD_PIN.toUpperCase(), ca: Buffer.from(ca), allowedHosts: ['CODE.TEST'] }));
    expect(got.source).toBe(GOOD);
  });

  it('fetches from an IP literal the guard judges public', async () => {
    const got = await fetchUrlSource({ url: `https://127.0.0.1:${port}/good`, sha256: GOOD_PIN, allowedHosts: ['127.0.0.1'], classifyAddress: serverIsPublic, ca });
    expect(got.address).toBe('127.0.0.1');
  });

  it('follows a redirect to another allowed host and reports the final URL', async () => {
    const got = await fetchUrlSource(loopback('/redirect-ok'));
    expect(got.finalUrl).toBe(`https://mirror.test:${port}/good`);
    expect(got.source).toBe(GOOD);
  });

  it('follows a relative redirect', async () => {
    expect((await fetchUrlSource(loopback('/redirect-relative'))).finalUrl).toBe(`${base}/good`);
  });

  it('follows exactly maxRedirects redirects', async () => {
    expect((await fetchUrlSource(loopback('/chain/2', { maxRedirects: 3 }))).finalUrl).toBe(`${base}/good`);
  });
});

describe('fetchUrlSource: refusals before any connection', () => {
  it.each([['http://code.test/good'], ['file:///etc/passwd'], ['ftp://code.test/good'], ['not a url'], ['https://user:secret@code.test/good']])('SKEIN_ERR_SOURCE_SCHEME for %s', async (url) => {
    const before = connections;
    const err = await failure({ ...loopback('/good'), url }, 'SKEIN_ERR_SOURCE_SCHEME');
    expect(err.message).toContain(url.startsWith('https://user') ? 'https://user:secret@code.test/good' : url);
    expect(connections).toBe(before);
  });

  it('SKEIN_ERR_SOURCE_HOST for a host off the allow-list, naming the config key', async () => {
    const err = await failure(loopback('/good', { allowedHosts: ['mirror.test'] }), 'SKEIN_ERR_SOURCE_HOST');
    expect(err.message).toContain(`${base}/good`);
    expect(err.message).toContain('sandbox.allowedCodeHosts');
  });

  it('matches allowed hosts exactly (no suffix or subdomain matching)', async () => {
    await failure(loopback('/good', { url: `https://sub.code.test:${port}/good` }), 'SKEIN_ERR_SOURCE_HOST');
    await failure(loopback('/good', { allowedHosts: ['test'] }), 'SKEIN_ERR_SOURCE_HOST');
  });

  it.each([[undefined], [''], ['abc'], ['z'.repeat(64)], [GOOD_PIN.slice(1)], [`${GOOD_PIN}0`]])('SKEIN_ERR_SOURCE_PIN_MISSING for pin %j', async (pin) => {
    const err = await failure(loopback('/good', { sha256: pin as unknown as string }), 'SKEIN_ERR_SOURCE_PIN_MISSING');
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
    const err = await failure({ url: `https://localhost:${port}/good`, sha256: GOOD_PIN, allowedHosts: ['localhost'], ca }, 'SKEIN_ERR_SOURCE_ADDRESS');
    expect(err.message).toContain(`https://localhost:${port}/good`);
    expect(err.message).toMatch(/resolves to (127\.0\.0\.1|::1) \(loopback\)/);
    expect(connections).toBe(before);
  });

  it.each([['127.0.0.1'], ['[::1]']])('refuses the IP literal %s without connecting', async (host) => {
    const before = connections;
    const err = await failure({ url: `https://${host}:${port}/good`, sha256: GOOD_PIN, allowedHosts: [host], ca }, 'SKEIN_ERR_SOURCE_ADDRESS');
    expect(err.message).toContain('loopback');
    expect(connections).toBe(before);
  });

  it('refuses a literal that only looks public after URL normalisation (decimal 127.0.0.1)', async () => {
    await failure({ url: `https://2130706433:${port}/good`, sha256: GOOD_PIN, allowedHosts: ['127.0.0.1'], ca }, 'SKEIN_ERR_SOURCE_ADDRESS');
  });

  it.each([['127.0.0.1'], ['10.0.0.7'], ['169.254.169.254'], ['::ffff:127.0.0.1'], ['64:ff9b::7f00:1']])('DNS rebinding: an allowed name answering %s is refused before connecting', async (ip) => {
    const before = connections;
    const hitsBefore = hits.get('/rebind') ?? 0;
    const err = await failure(loopback('/rebind', { classifyAddress, lookup: lookupTo(ip) }), 'SKEIN_ERR_SOURCE_ADDRESS');
    expect(err.details).toMatchObject({ host: 'code.test', address: ip });
    expect(connections).toBe(before);
    expect(hits.get('/rebind') ?? 0).toBe(hitsBefore);
  });

  it('DNS rebinding: a mixed answer (public + loopback) is refused as a whole', async () => {
    const before = connections;
    await failure(loopback('/rebind', { classifyAddress, lookup: lookupTo('93.184.216.34', '127.0.0.1') }), 'SKEIN_ERR_SOURCE_ADDRESS');
    expect(connections).toBe(before);
  });
});

describe('post-connect peer check', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['::1', 'loopback'],
    ['::ffff:10.0.0.1', 'ipv4-mapped-private'],
    ['192.168.0.10', 'private'],
    ['fe80::1%eth0', 'link-local'],
  ])('assertPublicPeer refuses %s (%s) whatever the resolver claimed', (ip, cls) => {
    let caught: unknown;
    try {
      assertPublicPeer(ip, 'https://code.test/x.py');
    } catch (err) {
      caught = err;
    }
    expect(sourceReason(caught)).toBe('SKEIN_ERR_SOURCE_ADDRESS');
    expect((caught as SkeinError).details).toMatchObject({ address: ip, addressClass: cls });
    expect((caught as SkeinError).message).toContain('https://code.test/x.py');
  });

  it('assertPublicPeer fails closed when the runtime reports no address', () => {
    expect(() => assertPublicPeer(undefined, 'https://code.test/x.py')).toThrow(/did not report/);
  });

  it('assertPublicPeer passes a public address through', () => {
    expect(assertPublicPeer('8.8.8.8', 'https://code.test/x.py')).toBe('8.8.8.8');
    expect(assertPublicPeer('2606:4700::1111', 'https://code.test/x.py')).toBe('2606:4700::1111');
  });

  const outcome = (socket: Socket, classify: Classify) =>
    new Promise<{ err: SkeinError | null; address?: string }>((resolve) => {
      socket.on('error', () => undefined); // watchPeer destroys the socket with its refusal
      watchPeer(socket, 'https://code.test/x.py', classify, (err, address) => resolve({ err, address }));
    });

  it('watchPeer destroys a real socket that connected to loopback', async () => {
    const socket = connect(port, '127.0.0.1');
    const { err } = await outcome(socket, classifyAddress);
    expect(sourceReason(err)).toBe('SKEIN_ERR_SOURCE_ADDRESS');
    expect(socket.destroyed).toBe(true);
  });

  it('watchPeer checks a socket that is already connected', async () => {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const { err } = await outcome(socket, classifyAddress);
    expect(sourceReason(err)).toBe('SKEIN_ERR_SOURCE_ADDRESS');
    expect(socket.destroyed).toBe(true);
  });

  it('watchPeer reports the address and leaves the socket open when the guard judges it public', async () => {
    const socket = connect(port, '127.0.0.1');
    const { err, address } = await outcome(socket, serverIsPublic);
    expect(err).toBeNull();
    expect(address).toBe('127.0.0.1');
    expect(socket.destroyed).toBe(false);
    socket.destroy();
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
    const got = await fetchUrlSource(loopback('/good', { maxBytes: Buffer.byteLength(GOOD) }));
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
    expect((await fetchUrlSource(loopback('/delay/1', { timeoutMs: 5_000 }))).finalUrl).toBe(`${base}/good`);
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
  });
});
