/**
 * Tokens in the client library and `skein dispatch --token/--token-file`, against a real
 * node:http2 TLS server that answers every request with the headers it received.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDispatch } from '../../agent/cli/dispatch.ts';
import { authorizationHeader, SkeinClient } from '../../agent/client/index.ts';
import { initCa, issueCert, type IssuedPaths } from '../../agent/pki/index.ts';
import { expectCode, memoryIo, removeTempDirs, tempDir } from './io.ts';

describe('authorizationHeader', () => {
  it.each([
    ['x', 'Bearer x'],
    ['eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln', 'Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln'],
    ['SkeinNonce abc', 'SkeinNonce abc'],
    ['Bearer already', 'Bearer already'],
  ])('%j → %j', (token, header) => {
    expect(authorizationHeader(token)).toBe(header);
  });

  it.each([[''], ['   '], ['a\nb'], ['abc\r'], ['a\u0000b']])('refuses %j without echoing it', async (token) => {
    const err = await expectCode(() => authorizationHeader(token), 'SKEIN_ERR_USAGE');
    if (token.trim()) expect(err.message).not.toContain(token);
  });
});

describe('tokens on the wire', () => {
  let server: http2.Http2SecureServer;
  let peer: string;
  let ca: Buffer;
  let client: IssuedPaths;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir();
    const pki = join(dir, 'pki');
    await initCa(pki, 'test.local');
    const agent = await issueCert(pki, { name: 'echo', kind: 'agent' });
    client = await issueCert(pki, { name: 'ops', kind: 'client' });
    ca = readFileSync(agent.ca);
    // One-way TLS, as with tls.clientCerts: "optional"; the body reports what arrived.
    server = http2.createSecureServer({ cert: readFileSync(agent.cert), key: readFileSync(agent.key), ca, allowHTTP1: false });
    server.on('stream', (stream, headers) => {
      stream.on('data', () => {});
      stream.on('end', () => {
        const auth = Object.entries(headers)
          .filter(([k]) => k.toLowerCase() === 'authorization')
          .map(([, v]) => v);
        stream.respond({ ':status': 200, 'content-type': 'application/json' });
        stream.end(JSON.stringify({ result: { authorization: auth, path: headers[':path'] }, routines: [{ name: String(auth[0] ?? '') }] }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    peer = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    removeTempDirs();
  });

  const seen = async (c: SkeinClient, options: Parameters<SkeinClient['dispatch']>[1] = {}) =>
    ((await c.dispatch('echo', { encoding: 'json', ...options })) as { authorization: string[] }).authorization;

  it('sends no authorization without a token (unchanged behaviour)', async () => {
    const c = new SkeinClient({ peer, ca });
    expect(await seen(c)).toEqual([]);
    await c.destroy();
  });

  it('sends a plain client token as Bearer, and a per-call token verbatim when it has a space', async () => {
    const c = new SkeinClient({ peer, ca, token: 'x' });
    expect(await seen(c)).toEqual(['Bearer x']);
    expect(await seen(c, { token: 'SkeinNonce abc' })).toEqual(['SkeinNonce abc']);
    await c.destroy();
  });

  it('lets the most specific one win: call token > call header > client token > client header', async () => {
    const c = new SkeinClient({ peer, ca, token: 'client-token', headers: { Authorization: 'Basic client-header' } });
    expect(await seen(c)).toEqual(['Bearer client-token']);
    expect(await seen(c, { headers: { AUTHORIZATION: 'Basic call-header' } })).toEqual(['Basic call-header']);
    expect(await seen(c, { headers: { authorization: 'Basic call-header' }, token: 'call-token' })).toEqual(['Bearer call-token']);
    const plain = new SkeinClient({ peer, ca, headers: { Authorization: 'Basic client-header' } });
    expect(await seen(plain)).toEqual(['Basic client-header']);
    await Promise.all([c.destroy(), plain.destroy()]);
  });

  it('sends the client token on routines() too', async () => {
    const c = new SkeinClient({ peer, ca, token: 't1' });
    expect((await c.routines())[0]!.name).toBe('Bearer t1');
    await c.destroy();
  });

  it('fails a bad token before sending anything', async () => {
    expect(() => new SkeinClient({ peer, ca, token: 'a\nb' })).toThrow(/control character/);
    const c = new SkeinClient({ peer, ca });
    await expectCode(() => c.dispatch('echo', { token: '' }), 'SKEIN_ERR_USAGE');
    await c.destroy();
  });

  const dispatchArgs = () => ['echo', '--peer', peer, '--cert', client.cert, '--key', client.key, '--ca', client.ca, '--encoding', 'json', '--json'];

  it('skein dispatch --token sends Bearer T', async () => {
    const t = memoryIo();
    expect(await runDispatch([...dispatchArgs(), '--token', 'x'], t.io)).toBe(0);
    expect(JSON.parse(t.out[0]!).result.authorization).toEqual(['Bearer x']);
  });

  it('skein dispatch --token-file reads and trims the file; a spaced token goes verbatim', async () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'SkeinNonce abc\n', { mode: 0o600 });
    const t = memoryIo();
    expect(await runDispatch([...dispatchArgs(), '--token-file', file], t.io)).toBe(0);
    expect(JSON.parse(t.out[0]!).result.authorization).toEqual(['SkeinNonce abc']);
  });

  it('skein dispatch without a token sends none', async () => {
    const t = memoryIo();
    expect(await runDispatch(dispatchArgs(), t.io)).toBe(0);
    expect(JSON.parse(t.out[0]!).result.authorization).toEqual([]);
  });

  it.each([
    [['--token', 'x', '--token-file', 'f'], /together/],
    [['--token-file', '/nonexistent/token'], /cannot read --token-file/],
    [['--token', ''], /--token: token must be a non-empty/],
    [['--token', 'a\nb'], /control character/],
    [['--token-file', 'EMPTY'], /--token-file .*non-empty/],
  ])('skein dispatch %j is a usage error', async (extra, message) => {
    const empty = join(dir, 'empty-token');
    writeFileSync(empty, '  \n');
    const args = [...dispatchArgs(), ...extra.map((a) => (a === 'EMPTY' ? empty : a))];
    const err = await expectCode(() => runDispatch(args, memoryIo().io), 'SKEIN_ERR_USAGE');
    expect(err.message).toMatch(message);
  });

  it('documents both flags in the usage', async () => {
    const t = memoryIo();
    await runDispatch(['--help'], t.io);
    expect(t.text()).toMatch(/--token T/);
    expect(t.text()).toMatch(/--token-file F/);
  });
});
