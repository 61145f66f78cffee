/**
 * The guarded outbound HTTPS client (agent/http) against a real HTTPS server on loopback with
 * a test CA: success paths, every refusal with its code, the SSRF guard on resolved and
 * connected addresses under both policies, limits, redirects hop by hop, and CA pinning.
 * (Through the compiled binary, where undici must be the real package: test/e2e/jwks-url.test.ts.)
 */
import type { LookupAddress, LookupOptions } from 'node:dns';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinError } from '../../common/errors/index.ts';
import { initCa, issueCert } from '../../agent/pki/index.ts';
import { outboundRequest, type OutboundRequest } from '../../agent/http/client.ts';
import { httpReason, type HttpReason } from '../../agent/http/errors.ts';
import { checkPeer, refusedClass, type Lookup } from '../../agent/http/guard.ts';

let dir: string;
let ca: string;
let otherCa: string;
let server: Server;
let port: number;
let base: string; // https://code.test:<port>
let connections = 0;
let open = 0;
const seen: Array<{ path: string; method: string; headers: IncomingMessage['headers']; body: string }> = [];

/** Resolver stub: answers `ips` for every name. */
function lookupTo(...ips: string[]): Lookup {
  const answers: LookupAddress[] = ips.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  const stub = (_host: string, options: LookupOptions, cb: (err: Error | null, address: string | LookupAddress[], family?: number) => void) => {
    const first = answers[0] as LookupAddress;
    setImmediate(() => (options.all ? cb(null, answers) : cb(null, first.address, first.family)));
  };
  return stub as unknown as Lookup;
}

function route(req: IncomingMessage, res: ServerResponse, body: string): void {
  const path = req.url ?? '/';
  seen.push({ path, method: req.method ?? '', headers: req.headers, body });
  const redirect = (status: number, location?: string) => {
    res.writeHead(status, location === undefined ? {} : { location });
    res.end();
  };
  const chain = /^\/chain\/(\d+)$/.exec(path);
  if (path === '/json') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  } else if (path === '/echo') {
    res.writeHead(201, { 'content-type': 'application/json', 'x-seen': req.method ?? '' });
    res.end(JSON.stringify({ method: req.method, body, auth: req.headers.authorization ?? null }));
  } else if (path === '/to-mirror') redirect(302, `https://mirror.test:${port}/echo`);
  else if (path === '/to-self') redirect(307, '/echo');
  else if (path === '/to-evil') redirect(302, `https://evil.test:${port}/json`);
  else if (path === '/to-http') redirect(302, `http://code.test:${port}/json`);
  else if (path === '/to-metadata') redirect(302, `https://169.254.169.254:${port}/latest/meta-data/`);
  else if (path === '/to-none') redirect(302);
  else if (path === '/loop') redirect(302, '/loop');
  else if (chain) redirect(302, Number(chain[1]) > 0 ? `/chain/${Number(chain[1]) - 1}` : '/json');
  else if (path === '/big-length') {
    res.writeHead(200, { 'content-length': 2 * 1024 * 1024 });
    res.write('x');
  } else if (path === '/big-chunked') {
    res.writeHead(200);
    const chunk = Buffer.alloc(16 * 1024, 0x61);
    for (let i = 0; i < 16; i++) res.write(chunk);
    res.end();
  } else if (path === '/slow-headers') {
    // never answers
  } else if (path === '/slow-body') {
    res.writeHead(200);
    res.write('{"partial":'); // the rest never comes
  } else if (path === '/gzip') {
    res.writeHead(200, { 'content-encoding': 'gzip' });
    res.end('x');
  } else if (path === '/status/503') {
    res.writeHead(503);
    res.end('down');
  } else {
    res.writeHead(404);
    res.end();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'skein-http-'));
  await initCa(join(dir, 'ca'), 'http.test');
  await initCa(join(dir, 'other'), 'other.test');
  const paths = await issueCert(join(dir, 'ca'), { name: 'srv', kind: 'agent', hosts: ['127.0.0.1', 'localhost', 'code.test', 'mirror.test', 'evil.test'] });
  ca = readFileSync(paths.ca, 'utf8');
  otherCa = readFileSync(join(dir, 'other', 'ca.crt'), 'utf8');
  server = createServer({ cert: readFileSync(paths.cert), key: readFileSync(paths.key) }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => route(req, res, body));
  });
  server.on('connection', (socket) => {
    connections++;
    open++;
    socket.on('close', () => open--);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  base = `https://code.test:${port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/** A request to the loopback test server: needs the "private" policy and the test CA pinned. */
const loopback = (path: string, extra: Partial<OutboundRequest> = {}): OutboundRequest => ({
  url: `${base}${path}`,
  allowedHosts: ['code.test', 'mirror.test'],
  addressPolicy: 'private',
  ca,
  lookup: lookupTo('127.0.0.1'),
  label: 'test',
  settings: { allowedHosts: 'test.allowedHosts', allowPrivate: 'test.allowPrivate' },
  ...extra,
});

async function failure(req: OutboundRequest, reason: HttpReason): Promise<SkeinError> {
  let caught: unknown;
  try {
    await outboundRequest(req);
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${reason}`).toBeInstanceOf(SkeinError);
  const err = caught as SkeinError;
  expect({ code: err.code, reason: httpReason(err), details: err.details.reason }).toEqual({ code: reason, reason, details: reason });
  expect(err.message).toMatch(/^test: /);
  return err;
}

describe('outboundRequest: success', () => {
  it('GETs from a server whose CA is pinned, and reports status, headers, body, URL and address', async () => {
    const res = await outboundRequest(loopback('/json'));
    expect({ status: res.status, type: res.headers['content-type'], body: res.body.toString(), url: res.url, address: res.address }).toEqual({
      status: 200,
      type: 'application/json',
      body: '{"ok":true}',
      url: `${base}/json`,
      address: '127.0.0.1',
    });
  });

  it('POSTs a body with headers, and returns any status', async () => {
    const res = await outboundRequest(loopback('/echo', { method: 'POST', body: 'token=abc', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: 'Basic eDp5' } }));
    expect(res.status).toBe(201);
    expect(JSON.parse(res.body.toString())).toEqual({ method: 'POST', body: 'token=abc', auth: 'Basic eDp5' });
    expect((await outboundRequest(loopback('/status/503'))).status).toBe(503);
  });

  it('follows redirects hop by hop, relative and to another allowed host, up to maxRedirects', async () => {
    expect((await outboundRequest(loopback('/to-mirror'))).url).toBe(`https://mirror.test:${port}/echo`);
    expect((await outboundRequest(loopback('/to-self'))).url).toBe(`${base}/echo`);
    expect((await outboundRequest(loopback('/chain/2', { maxRedirects: 3 }))).url).toBe(`${base}/json`);
  });

  it('keeps Authorization on a same-origin redirect and drops it on a cross-origin one', async () => {
    const same = await outboundRequest(loopback('/to-self', { headers: { authorization: 'Bearer s3cret' } }));
    expect(JSON.parse(same.body.toString()).auth).toBe('Bearer s3cret');
    const cross = await outboundRequest(loopback('/to-mirror', { headers: { authorization: 'Bearer s3cret', cookie: 'a=b', 'x-keep': '1' } }));
    expect(JSON.parse(cross.body.toString()).auth).toBeNull();
    const last = seen.at(-1)!;
    expect(last.headers.cookie).toBeUndefined();
    expect(last.headers['x-keep']).toBe('1');
  });

  it("returns a POST's redirect instead of replaying the request elsewhere", async () => {
    const res = await outboundRequest(loopback('/to-mirror', { method: 'POST', body: 'x' }));
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe(`https://mirror.test:${port}/echo`);
  });

  it('ignores proxy settings in the environment and keeps no connection open', async () => {
    const saved = process.env.HTTPS_PROXY;
    process.env.HTTPS_PROXY = 'http://127.0.0.1:9';
    try {
      expect((await outboundRequest(loopback('/json'))).status).toBe(200);
    } finally {
      if (saved === undefined) delete process.env.HTTPS_PROXY;
      else process.env.HTTPS_PROXY = saved;
    }
    for (let i = 0; i < 100 && open > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(open).toBe(0);
  });
});

describe('outboundRequest: refusals before any connection', () => {
  it.each([['http://code.test/json'], ['file:///etc/passwd'], ['not a url'], ['https://user:secret@code.test/json']])('SKEIN_ERR_HTTP_URL for %s', async (url) => {
    const before = connections;
    const err = await failure({ ...loopback('/json'), url }, 'SKEIN_ERR_HTTP_URL');
    expect(err.message).not.toContain('secret');
    expect(connections).toBe(before);
  });

  it('SKEIN_ERR_HTTP_HOST for a host off the list (exact match only), naming the setting', async () => {
    const err = await failure(loopback('/json', { allowedHosts: ['mirror.test'] }), 'SKEIN_ERR_HTTP_HOST');
    expect(err.message).toContain('test.allowedHosts');
    await failure(loopback('/json', { url: `https://sub.code.test:${port}/json` }), 'SKEIN_ERR_HTTP_HOST');
    await failure(loopback('/json', { allowedHosts: [] }), 'SKEIN_ERR_HTTP_HOST');
  });

  it.each([
    [{ maxBytes: 0 }],
    [{ timeoutMs: 999_999 }],
    [{ maxRedirects: 1.5 }],
    [{ method: 'TRACE' as 'GET' }],
    [{ headers: { host: 'evil.test' } }],
    [{ headers: { 'content-length': '5' } }],
    [{ headers: { 'x-a': 'b\r\nx-injected: 1' } }],
    [{ body: 'x' }],
    [{ ca: '' }],
  ])('SKEIN_ERR_HTTP_OPTIONS for %j', async (extra) => {
    await failure(loopback('/json', extra as Partial<OutboundRequest>), 'SKEIN_ERR_HTTP_OPTIONS');
  });
});

describe('outboundRequest: SSRF guard', () => {
  it('policy "public" refuses "localhost" resolved to loopback by the real resolver, naming the setting', async () => {
    const before = connections;
    const err = await failure({ url: `https://localhost:${port}/json`, allowedHosts: ['localhost'], ca, label: 'test', settings: { allowPrivate: 'test.allowPrivate' } }, 'SKEIN_ERR_HTTP_ADDRESS');
    expect(err.message).toMatch(/resolves to (127\.0\.0\.1|::1) \(loopback\)/);
    expect(err.message).toContain('test.allowPrivate');
    expect(connections).toBe(before);
  });

  it.each([['127.0.0.1'], ['[::1]'], ['2130706433']])('policy "public" refuses the IP literal %s without connecting', async (host) => {
    const before = connections;
    await failure({ url: `https://${host}:${port}/json`, allowedHosts: ['127.0.0.1', '::1'], ca, label: 'test' }, 'SKEIN_ERR_HTTP_ADDRESS');
    expect(connections).toBe(before);
  });

  it.each([['127.0.0.1'], ['10.0.0.7'], ['169.254.169.254'], ['::ffff:127.0.0.1'], ['64:ff9b::7f00:1']])('policy "public": a name resolving to %s is refused before connecting', async (ip) => {
    const before = connections;
    const err = await failure(loopback('/json', { addressPolicy: 'public', lookup: lookupTo(ip) }), 'SKEIN_ERR_HTTP_ADDRESS');
    expect(err.details).toMatchObject({ host: 'code.test', address: ip });
    expect(connections).toBe(before);
  });

  it('a mixed answer (public and loopback) is refused: that is how rebinding looks', async () => {
    await failure(loopback('/json', { addressPolicy: 'public', lookup: lookupTo('93.184.216.34', '127.0.0.1') }), 'SKEIN_ERR_HTTP_ADDRESS');
  });

  it.each([['169.254.169.254'], ['::ffff:169.254.169.254'], ['::ffff:a9fe:a9fe'], ['fe80::1'], ['0.0.0.0'], ['224.0.0.1']])(
    'policy "private" still refuses %s (link-local metadata, unspecified, multicast)',
    async (ip) => {
      const before = connections;
      const err = await failure(loopback('/json', { lookup: lookupTo(ip) }), 'SKEIN_ERR_HTTP_ADDRESS');
      expect(err.message).toContain('never reachable');
      expect(connections).toBe(before);
    },
  );

  it('policy "private" refuses a redirect to the metadata address without connecting to it', async () => {
    const err = await failure(loopback('/to-metadata', { allowedHosts: ['code.test', '169.254.169.254'] }), 'SKEIN_ERR_HTTP_ADDRESS');
    expect(err.message).toContain('169.254.169.254 (link-local)');
  });

  it('refusedClass: what each policy admits', () => {
    expect(refusedClass('93.184.216.34', 'public')).toBeUndefined();
    expect(refusedClass('10.1.2.3', 'public')).toBe('private');
    expect(refusedClass('10.1.2.3', 'private')).toBeUndefined();
    expect(refusedClass('::ffff:10.1.2.3', 'private')).toBeUndefined();
    expect(refusedClass('fd00::1', 'private')).toBeUndefined();
    expect(refusedClass('100.64.0.1', 'private')).toBeUndefined();
    expect(refusedClass('169.254.169.254', 'private')).toBe('link-local');
    expect(refusedClass('192.0.2.1', 'private')).toBe('documentation');
    expect(refusedClass('not-an-ip', 'private')).toBe('invalid');
  });

  it('checkPeer judges the address a socket actually reached', async () => {
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    try {
      const ctx = { label: 'test', url: 'https://x.test/', privateSetting: 'p' };
      expect(() => checkPeer(socket, 'public', ctx)).toThrow(expect.objectContaining({ code: 'SKEIN_ERR_HTTP_ADDRESS' }));
      expect(checkPeer(socket, 'private', ctx)).toBe('127.0.0.1');
    } finally {
      socket.destroy();
    }
  });
});

describe('outboundRequest: redirects, limits and TLS', () => {
  it.each([
    ['/to-evil', 'SKEIN_ERR_HTTP_HOST'],
    ['/to-http', 'SKEIN_ERR_HTTP_URL'],
    ['/to-none', 'SKEIN_ERR_HTTP_REDIRECT'],
    ['/loop', 'SKEIN_ERR_HTTP_REDIRECT'],
    ['/big-length', 'SKEIN_ERR_HTTP_TOO_LARGE'],
    ['/big-chunked', 'SKEIN_ERR_HTTP_TOO_LARGE'],
    ['/gzip', 'SKEIN_ERR_HTTP_STATUS'],
  ] as const)('%s → %s', async (path, reason) => {
    await failure(loopback(path, { maxBytes: 64 * 1024 }), reason);
  });

  it('too many redirects is refused at maxRedirects', async () => {
    const err = await failure(loopback('/chain/3', { maxRedirects: 2 }), 'SKEIN_ERR_HTTP_REDIRECT');
    expect(err.message).toContain('more than 2 redirect(s)');
  });

  it.each([['/slow-headers'], ['/slow-body']])('%s → SKEIN_ERR_HTTP_TIMEOUT at the deadline', async (path) => {
    const started = Date.now();
    const err = await failure(loopback(path, { timeoutMs: 300 }), 'SKEIN_ERR_HTTP_TIMEOUT');
    expect(err.message).toContain('300 ms');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('the deadline ends a request stuck in the TLS handshake (the connector answers undici when its socket is destroyed)', async () => {
    // Regression: the deadline destroyed the socket without an error, the connector never called back, and the request hung.
    const accepted = new Set<import('node:net').Socket>();
    const silent = createNetServer((socket) => {
      accepted.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as AddressInfo).port;
    try {
      const started = Date.now();
      await failure(loopback('/json', { url: `https://code.test:${silentPort}/json`, timeoutMs: 300 }), 'SKEIN_ERR_HTTP_TIMEOUT');
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      for (const socket of accepted) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  }, 10_000);

  it('a CA other than the pinned one is refused (SKEIN_ERR_HTTP_TLS), and so are the system CAs for a private CA', async () => {
    const pinned = await failure(loopback('/json', { ca: otherCa }), 'SKEIN_ERR_HTTP_TLS');
    expect(pinned.message).toContain('the pinned CA');
    const { ca: _ca, ...unpinned } = loopback('/json');
    await failure(unpinned, 'SKEIN_ERR_HTTP_TLS');
  });

  it('a certificate for another name is refused', async () => {
    const err = await failure(loopback('/json', { url: `https://other.test:${port}/json`, allowedHosts: ['other.test'] }), 'SKEIN_ERR_HTTP_TLS');
    // The connector only sees the origin; the message still names the URL asked for.
    expect(err.message).toContain(`https://other.test:${port}/json: TLS failed`);
  });

  it('a closed port is SKEIN_ERR_HTTP_NETWORK', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const free = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await failure(loopback('/json', { url: `https://code.test:${free}/json` }), 'SKEIN_ERR_HTTP_NETWORK');
  });
});
