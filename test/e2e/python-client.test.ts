/**
 * The Python client (clients/python, skein_client) against the compiled binary: Debian's
 * /usr/bin/python3 with httpx + h2 + cbor2, PYTHONPATH=clients/python, no build step. Each case
 * is a function of test/e2e/python-client/cases.py that prints JSON; the assertions are here.
 * Sync and asyncio calls, every failure kind as its typed exception, one HTTP/2 connection
 * per client (counted on the agent's "peer connected" lines), the CLI's SKEIN_* and profile
 * lookup, JWTs minted by PyJWT for the bearer-jwt plugin, and client-certificate identities.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_TABLE } from '../../common/errors/index.ts';
import { baseConfig, FIXTURES, ROOT, runCli, startAgent, stopAll, tempDir, workerStderr, type StartedAgent } from '../helpers/agent.ts';

const run = promisify(execFile);
const CASES = join(ROOT, 'test/e2e/python-client/cases.py');
const DEV = 'spiffe://skein.local/client/dev-client';
const OPS = 'spiffe://skein.local/client/ops';

let home: string; // HOME of every Python run: empty, so no profile of the person running the suite leaks in

/** Runs one case with a clean environment (PATH, HOME, PYTHONPATH and `env` only); returns its JSON. */
async function py(kase: string, params: Record<string, unknown> = {}, env: Record<string, string> = {}): Promise<any> {
  try {
    const { stdout } = await run('/usr/bin/python3', [CASES, kase, JSON.stringify(params)], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, PYTHONPATH: join(ROOT, 'clients/python'), PYTHONDONTWRITEBYTECODE: '1', ...env },
      timeout: 30_000,
    });
    return JSON.parse(stdout);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`python case ${kase} failed: ${e.stderr || e.message}`, { cause: err });
  }
}

const creds = (agent: StartedAgent, name = 'dev-client') => ({
  peer: `127.0.0.1:${agent.port}`,
  cert: join(agent.pki.dir, `client-${name}.crt`),
  key: join(agent.pki.dir, `client-${name}.key`),
  ca: agent.pki.ca,
});
const connections = (agent: StartedAgent) => agent.logs.filter((l) => l.msg === 'peer connected').length;

let mtls: StartedAgent;
beforeAll(async () => {
  home = tempDir();
  mtls = await startAgent();
});
afterAll(async () => {
  await mtls?.stop();
  await stopAll();
});

describe('Python client: calls and typed errors (mTLS)', () => {
  it('sync Client: dispatch, call with deadline/request id/JSON, routines, peers, and each failure as its class', async () => {
    const r = await py('sync_basics', { client: creds(mtls) });
    expect(r).toMatchObject({ add: 5, echo: 'hi', json: 'via json', call: 6, after_deadline: 42, peers: { enabled: false, peers: [] } });
    expect(r.kwargs).toEqual({ args: [1], kwargs: { routine: 'r', timeout_ms: 5, args: [7] } });
    expect(r.routines).toEqual(['add', 'echo', 'fail', 'sleep']);
    expect(r.raised).toMatchObject({
      class: 'RoutineRaised',
      code: 'SKEIN_ERR_ROUTINE_RAISED',
      exception_type: 'ValueError',
      exception_message: 'boom',
      status: 422,
      request_id: 'py-raised-1',
      peer: DEV,
    });
    expect(r.deadline).toMatchObject({ class: 'DeadlineExceeded', code: 'SKEIN_ERR_DEADLINE_EXCEEDED', status: 504 });
    expect(r.deadline.message).toMatch(/deadline/);
    expect(r.unknown).toMatchObject({ class: 'UnknownRoutine', code: 'SKEIN_ERR_UNKNOWN_ROUTINE', routine: 'no_such_routine', status: 404 });
    expect(r.unknown.bases).toContain('NotFound');
    expect(r.bad_timeout).toMatchObject({ class: 'UsageError', code: 'SKEIN_ERR_USAGE', message: 'timeout_ms must be a positive integer of milliseconds, got 1.5' });
    expect(r.bad_timeout.bases).toContain('ValueError');
    expect(r.bad_request_id).toMatchObject({ class: 'UsageError', message: "request_id must match [A-Za-z0-9._:-]{1,128}, got 'has space'" });
    expect(r.unencodable).toMatchObject({ class: 'UsageError' });
    expect(r.unencodable.message).toMatch(/^arguments cannot be encoded as application\/cbor/);
    expect(r.bytes).toEqual({ type: 'bytes', hex: '72617700ff' });
    // The request id the caller chose is the one on the agent's log line.
    expect(await mtls.waitForLog((l) => l.msg === 'routine raised' && l.requestId === 'py-raised-1')).toMatchObject({ peer: DEV });
  });

  it('AsyncClient: concurrent dispatches, and the same typed errors', async () => {
    const r = await py('async_basics', { client: creds(mtls) });
    expect(r.sums).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(r.echo).toEqual({ args: ['hi'], kwargs: { x: 1 } });
    expect(r.routines).toEqual(['add', 'echo', 'fail', 'sleep']);
    expect(r.raised).toMatchObject({ class: 'RoutineRaised', exception_type: 'ValueError', exception_message: 'async boom' });
    expect(r.deadline).toMatchObject({ class: 'DeadlineExceeded', code: 'SKEIN_ERR_DEADLINE_EXCEEDED' });
    expect(r.unknown).toMatchObject({ class: 'UnknownRoutine', code: 'SKEIN_ERR_UNKNOWN_ROUTINE' });
  });

  it('a cancelled asyncio call reaches the agent: its worker is killed, and the client goes on', async () => {
    const before = connections(mtls);
    expect(await py('cancel', { client: creds(mtls) })).toEqual({ cancelled: true, after: 3 });
    expect(connections(mtls) - before).toBe(1);
    await mtls.waitForAudit((l) => l.event === 'worker.kill' && l.requestId === 'py-cancelled-1');
  });

  it('one HTTP/2 connection per client, however many calls (sequential or concurrent)', async () => {
    const before = connections(mtls);
    const r = await py('many', { client: creds(mtls), n: 50 });
    const expected = Array.from({ length: 50 }, (_, i) => i + 1);
    expect(r).toEqual({ sequential: expected, concurrent: expected });
    // Two clients (one Client, one AsyncClient): two connections for 100 calls.
    expect(connections(mtls) - before).toBe(2);
  });

  it('a closed client refuses calls with TransportError (sent: false)', async () => {
    expect(await py('closed', { client: creds(mtls) })).toMatchObject({ class: 'TransportError', code: 'SKEIN_ERR_TRANSPORT', message: 'the client is closed', details: { sent: false } });
  });

  it('no client certificate for an agent that requires one → TLSError no-certificate', async () => {
    const { cert: _c, key: _k, ...noCert } = creds(mtls);
    const r = await py('dispatch', { client: noCert, routine: 'add', args: [1] });
    expect(r).toMatchObject({ class: 'TLSError', code: 'SKEIN_ERR_TLS', reason: 'no-certificate', details: { sent: false } });
    expect(r.bases).toContain('TransportError');
  });

  it('a certificate from another CA → TLSError, and the agent logs why', async () => {
    const other = tempDir();
    expect((await runCli(['pki', 'init', '--dir', other])).code).toBe(0);
    expect((await runCli(['pki', 'issue', '--name', 'stranger', '--kind', 'client', '--dir', other])).code).toBe(0);
    const r = await py('dispatch', { client: { ...creds(mtls), cert: join(other, 'client-stranger.crt'), key: join(other, 'client-stranger.key') }, routine: 'add', args: [1] });
    expect(r).toMatchObject({ class: 'TLSError', code: 'SKEIN_ERR_TLS', details: { sent: false } });
    expect(r.message).toMatch(/^the agent refused the client certificate/);
    await mtls.waitForLog((l) => l.msg === 'TLS handshake refused');
  });

  it('an agent CA the client does not trust → TLSError naming the verification failure', async () => {
    const other = tempDir();
    expect((await runCli(['pki', 'init', '--dir', other])).code).toBe(0);
    const r = await py('dispatch', { client: { ...creds(mtls), ca: join(other, 'ca.crt') }, routine: 'add', args: [1] });
    expect(r).toMatchObject({ class: 'TLSError', code: 'SKEIN_ERR_TLS', details: { cause: 'CERTIFICATE_VERIFY_FAILED', sent: false } });
  });

  it('unreadable certificate files → UsageError naming them, before any connection', async () => {
    const r = await py('dispatch', { client: { ...creds(mtls), key: '/nonexistent/client.key' }, routine: 'add', args: [1] });
    expect(r).toMatchObject({ class: 'UsageError', code: 'SKEIN_ERR_USAGE' });
    expect(r.message).toBe(`cert= / key=: cannot use ${creds(mtls).cert}, /nonexistent/client.key: No such file or directory`);
    const ca = await py('dispatch', { routine: 'add', args: [1] }, { SKEIN_PEER: `127.0.0.1:${mtls.port}`, SKEIN_CA: '/nonexistent/ca.crt' });
    expect(ca).toMatchObject({ class: 'UsageError', message: 'SKEIN_CA: cannot use /nonexistent/ca.crt: No such file or directory' });
  });

  it('nothing listening → TransportError, nothing sent', async () => {
    const r = await py('dispatch', { client: { ...creds(mtls), peer: '127.0.0.1:1' }, routine: 'add', args: [1] });
    expect(r).toMatchObject({ class: 'TransportError', code: 'SKEIN_ERR_TRANSPORT', details: { sent: false } });
    expect(r.message).toMatch(/^127\.0\.0\.1:1: ConnectError/);
  });

  it('a server that never answers: ClientTimeout after the deadline + 2 s, or the timeout; a handshake that never ends: TransportError', async () => {
    const r = await py('silent', { ca: mtls.pki.ca });
    expect(r.deadline).toMatchObject({ class: 'ClientTimeout', code: 'SKEIN_ERR_CLIENT_TIMEOUT', message: expect.stringMatching(/within 2\.1 s \(100 ms deadline \+ 2 s\)$/) });
    expect(r.deadline.waited).toBeGreaterThanOrEqual(2);
    expect(r.deadline.waited).toBeLessThan(5);
    expect(r.routines).toMatchObject({ class: 'ClientTimeout', message: expect.stringMatching(/within 0\.5 s$/) });
    expect(r.handshake).toMatchObject({
      class: 'TransportError',
      code: 'SKEIN_ERR_TRANSPORT',
      message: expect.stringMatching(/^no connection to 127\.0\.0\.1:\d+ within 0\.5 s$/),
      details: { sent: false },
    });
  });

  it('every code of common/errors/index.ts with an HTTP status has its own class, with that status', async () => {
    const table: Record<string, { class: string; status: number; bases: string[] }> = await py('error_table');
    const served = Object.entries(ERROR_TABLE).filter(([, row]) => row.status !== 0);
    expect(served.length).toBeGreaterThan(10);
    for (const [code, row] of served) {
      expect(table[code], code).toBeDefined();
      expect(table[code]!.class, code).not.toBe('SkeinError');
      expect(table[code]!.status, code).toBe(row.status);
      expect(table[code]!.bases, code).toContain('SkeinError');
    }
    // The client's own codes are rows of the same table (never invented), and none is sent by a server.
    for (const [code, entry] of Object.entries(table)) {
      expect(ERROR_TABLE, code).toHaveProperty(code);
      expect(entry.status, code).toBe(ERROR_TABLE[code as keyof typeof ERROR_TABLE].status);
    }
    const classes = Object.values(table).map((e) => e.class);
    expect(new Set(classes).size).toBe(classes.length);
    expect(table).toMatchObject({
      SKEIN_ERR_ROUTINE_RAISED: { class: 'RoutineRaised' },
      SKEIN_ERR_DEADLINE_EXCEEDED: { class: 'DeadlineExceeded' },
      SKEIN_ERR_UNAUTHENTICATED: { class: 'Unauthenticated' },
      SKEIN_ERR_FORBIDDEN: { class: 'Forbidden' },
      SKEIN_ERR_OVERLOADED: { class: 'Overloaded' },
      SKEIN_ERR_UNKNOWN_ROUTINE: { class: 'UnknownRoutine' },
      SKEIN_ERR_BAD_REQUEST: { class: 'BadRequest' },
      SKEIN_ERR_TRANSPORT: { class: 'TransportError' },
      SKEIN_ERR_TLS: { class: 'TLSError' },
      SKEIN_ERR_CLIENT_TIMEOUT: { class: 'ClientTimeout' },
      SKEIN_ERR_BAD_RESPONSE: { class: 'BadResponse' },
      SKEIN_ERR_USAGE: { class: 'UsageError' },
    });
  });
});

describe('Python client: every call shape (docs/calls.md)', () => {
  let calls: StartedAgent;
  beforeAll(async () => {
    const streams = join(FIXTURES, 'http-streams.py');
    const bytes = join(FIXTURES, 'bytes_routines.py');
    calls = await startAgent({
      config: baseConfig({
        // 1 MiB of bytes plus the body's envelope.
        limits: { maxBodyBytes: 2 * 1024 * 1024 },
        routines: {
          ...Object.fromEntries(['countdown', 'endless', 'raises_after', 'slow'].map((r) => [r, { file: streams }])),
          utf8: { file: bytes },
          blob: { file: bytes },
        },
      }),
    });
  });
  afterAll(() => calls?.stop());
  const finallyRan = (tag: string) => calls.waitForLog((l) => workerStderr(l).some((line) => line.startsWith(`${tag} finally ran after`)));

  it('Client.stream: items as they are produced, an error frame after items, and leaving the loop stops the generator', async () => {
    const r = await py('stream_basics', { client: creds(calls) });
    expect(r.items).toEqual([0, 1, 2, 3]);
    // 0.3 s between items: the first was in hand ~0.9 s before the last.
    expect(r.spread).toBeGreaterThan(0.6);
    expect(r.raised).toMatchObject({ items: [0, 1], class: 'RoutineRaised', code: 'SKEIN_ERR_ROUTINE_RAISED', message: 'ValueError: gave up after 2' });
    expect(r.broke).toEqual([100, 100, 100]);
    expect(r.after).toEqual([2, 1]);
    expect(r.unknown).toMatchObject({ class: 'UnknownRoutine', status: 404 });
    expect(r.bad_priority).toMatchObject({ class: 'UsageError', message: "priority must be one of high, normal, low, got 'urgent'" });
    await finallyRan('py-break');
  });

  it('AsyncClient.stream: items, and an aclosing block left early stops the generator', async () => {
    expect(await py('async_stream', { client: creds(calls) })).toEqual({ items: [3, 2, 1], got: [100, 100], after: 3 });
    await finallyRan('py-abreak');
  });

  it('priority travels as x-skein-priority; a bad level and bytes in a JSON call are refused before sending', async () => {
    const r = await py('priority', { client: creds(calls) });
    expect(r.value).toBe(3);
    expect(await calls.waitForAudit((l) => l.event === 'call.submitted' && l.requestId === 'py-prio-1')).toMatchObject({ priority: 'low' });
    expect(r.bad).toMatchObject({ class: 'UsageError', code: 'SKEIN_ERR_USAGE' });
    expect(r.json_bytes).toMatchObject({
      class: 'UsageError',
      message: 'args[0][\'blob\'] (bytes) is bytes, which JSON cannot carry: send the call with encoding="cbor" (the default), where it travels as a CBOR byte string',
    });
    expect(calls.logs.some((l) => l.requestId === 'py-json-bytes')).toBe(false);
  });

  it('bytes both ways in CBOR (1 MiB), and a bytes result as {"$bytes"} in JSON', async () => {
    expect(await py('bytes_roundtrip', { client: creds(calls), size: 1 << 20 })).toEqual({
      same: true,
      type: 'bytes',
      len: 1 << 20,
      made: true,
      json: { $bytes: Buffer.from('hé').toString('base64') },
    });
  });

  it('a body far over limits.maxBodyBytes on a new connection fails promptly as a transport error (GOAWAY), not as a refused certificate', async () => {
    // 2 MiB limit + the 16 MiB the agent reads and drops before it stops reading (docs/api.md).
    const r = await py('far_over_limit', { client: creds(calls), size: 19 * 1024 * 1024 });
    expect(r.failed).toMatchObject({ class: 'TransportError', code: 'SKEIN_ERR_TRANSPORT', details: { goaway: true, sent: true } });
    expect(r.failed.message).toMatch(/the agent closed the connection \(GOAWAY NO_ERROR\) before this call was answered$/);
    // Without the GOAWAY it hung until limits.idleTimeoutMs (120 s).
    expect(r.seconds).toBeLessThan(60);
    expect(r.next).toEqual([0, 1, 2]);
  }, 120_000);

  it('submit → wait, cancel, get with wait_ms, calls(), and an unknown id as CallNotFound', async () => {
    const r = await py('async_calls', { client: creds(calls) });
    expect(r.submitted).toMatchObject({ id: expect.any(String), status: 'queued' });
    expect(r.done).toMatchObject({ id: r.submitted.id, routine: 'add', status: 'succeeded', priority: 'high', result: 5 });
    expect(r.cancelled).toMatchObject({ routine: 'sleep', status: 'cancelled' });
    expect(r.got).toMatchObject({ id: r.submitted.id, status: 'succeeded' });
    expect(r.listed).toEqual(expect.arrayContaining([r.submitted.id, r.cancelled.id]));
    expect(r.listed.indexOf(r.cancelled.id)).toBeLessThan(r.listed.indexOf(r.submitted.id)); // newest first
    expect(r.cancelled_ids).toContain(r.cancelled.id);
    expect(r.unknown).toMatchObject({ class: 'CallNotFound', code: 'SKEIN_ERR_CALL_NOT_FOUND', status: 404 });
    expect(r.unknown.bases).toContain('NotFound');
    expect(r.bad_id).toMatchObject({ class: 'UsageError' });
    expect(r.timeout).toMatchObject({ class: 'ClientTimeout', code: 'SKEIN_ERR_CLIENT_TIMEOUT', details: { status: expect.stringMatching(/^(queued|running)$/) } });
  });
});

describe('Python client: the package', () => {
  it('type-checks under mypy --strict (it ships py.typed)', async () => {
    const cache = tempDir();
    const r = await run('/usr/bin/python3', ['-m', 'mypy', '--strict', '--cache-dir', cache, '-p', 'skein_client'], {
      cwd: join(ROOT, 'clients/python'),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, MYPYPATH: '' },
      timeout: 110_000,
    }).catch((e) => e);
    expect(r.stdout, r.stderr).toMatch(/^Success: no issues found in \d+ source files/);
  }, 120_000);
});

describe('Python client: where calls go (the CLI lookup)', () => {
  const envFor = (agent: StartedAgent) => {
    const c = creds(agent);
    return { SKEIN_PEER: c.peer, SKEIN_CERT: c.cert, SKEIN_KEY: c.key, SKEIN_CA: c.ca };
  };
  /** A profile file with a "good" profile (paths relative to the file) and a "broken" one (closed port). */
  const profileFile = (agent: StartedAgent, extra: Record<string, unknown> = {}): string => {
    const dir = tempDir();
    const c = creds(agent);
    const rel = (p: string) => relative(dir, p);
    const file = join(dir, 'client.json');
    const doc = {
      default: 'good',
      profiles: { good: { peer: c.peer, cert: rel(c.cert), key: rel(c.key), ca: rel(c.ca) }, broken: { peer: '127.0.0.1:1', cert: c.cert, key: c.key, ca: c.ca }, ...extra },
    };
    writeFileSync(file, `// skein client profiles\n${JSON.stringify(doc, null, 2).replace(/\n}$/, ', // trailing comma\n}')}\n`);
    return file;
  };

  it('Client() with SKEIN_PEER, SKEIN_CERT, SKEIN_KEY and SKEIN_CA', async () => {
    expect(await py('dispatch', { routine: 'add', args: [2, 3] }, envFor(mtls))).toEqual({ value: { result: 5, peer: `127.0.0.1:${mtls.port}` } });
  });

  it('Client() with the default profile of $SKEIN_CLIENT_CONFIG (JSONC, paths relative to the file)', async () => {
    expect(await py('dispatch', { routine: 'add', args: [2, 3] }, { SKEIN_CLIENT_CONFIG: profileFile(mtls) })).toMatchObject({ value: { result: 5 } });
  });

  it('Client() with the profile file at $XDG_CONFIG_HOME/skein/client.json, and at ~/.config/skein/client.json', async () => {
    const xdg = tempDir();
    mkdirSync(join(xdg, 'skein'));
    writeFileSync(join(xdg, 'skein', 'client.json'), JSON.stringify({ default: 'p', profiles: { p: creds(mtls) } }));
    expect(await py('dispatch', { routine: 'add', args: [1, 1] }, { XDG_CONFIG_HOME: xdg })).toMatchObject({ value: { result: 2 } });
    const userHome = tempDir();
    mkdirSync(join(userHome, '.config', 'skein'), { recursive: true });
    writeFileSync(join(userHome, '.config', 'skein', 'client.json'), JSON.stringify({ default: 'p', profiles: { p: creds(mtls) } }));
    expect(await py('dispatch', { routine: 'add', args: [1, 2] }, { HOME: userHome })).toMatchObject({ value: { result: 3 } });
  });

  it('precedence: argument > environment > profile; SKEIN_PROFILE and profile= select', async () => {
    const file = profileFile(mtls);
    // The environment beats the selected profile: its closed port is never dialled.
    expect(await py('dispatch', { client: { profile: 'broken' }, routine: 'add', args: [1, 1] }, { SKEIN_CLIENT_CONFIG: file, SKEIN_PEER: `127.0.0.1:${mtls.port}` })).toMatchObject({
      value: { result: 2 },
    });
    // SKEIN_PROFILE selects like profile=.
    expect(await py('dispatch', { routine: 'add', args: [1] }, { SKEIN_CLIENT_CONFIG: file, SKEIN_PROFILE: 'broken' })).toMatchObject({
      class: 'TransportError',
      message: expect.stringMatching(/^127\.0\.0\.1:1:/),
    });
    // profile= beats SKEIN_PROFILE.
    expect(await py('dispatch', { client: { profile: 'good' }, routine: 'add', args: [2, 2] }, { SKEIN_CLIENT_CONFIG: file, SKEIN_PROFILE: 'broken' })).toMatchObject({ value: { result: 4 } });
    // An argument beats the environment.
    expect(await py('dispatch', { client: { peer: '127.0.0.1:1' }, routine: 'add', args: [1] }, envFor(mtls))).toMatchObject({ class: 'TransportError' });
  });

  it.each([
    ['a peer without a port dials 7443', { args: { peer: 'edge-1.example.org' } }, {}, { value: { peer: 'edge-1.example.org:7443' } }],
    ['an IPv6 peer in brackets', { args: { peer: 'https://[::1]' } }, {}, { value: { peer: '[::1]:7443' } }],
    ['profile paths resolve against the profile file', { args: {} }, 'profile', { value: { cert: { source: expect.stringMatching(/^profile "good" key "cert" \(/) } } }],
    ['an empty SKEIN_PEER is unset', { args: { peer: 'a' } }, { SKEIN_PEER: '' }, { value: { peer: 'a:7443' } }],
    ['SKEIN_TOKEN_FILE (trimmed)', { args: { peer: 'a' } }, 'tokenFile', { value: { token: 'file-token' } }],
    ['token= beats SKEIN_TOKEN_FILE', { args: { peer: 'a', token: 'arg-token' } }, 'tokenFile', { value: { token: 'arg-token' } }],
    ['SKEIN_TOKEN beats a profile tokenFile', { args: {} }, 'profileToken', { value: { token: 'env-token' } }],
  ])('%s', async (_name, params, env, expected) => {
    const dir = tempDir();
    const tokenPath = join(dir, 'token');
    writeFileSync(tokenPath, '  file-token\n');
    const environment =
      env === 'profile'
        ? { SKEIN_CLIENT_CONFIG: profileFile(mtls) }
        : env === 'tokenFile'
          ? { SKEIN_TOKEN_FILE: tokenPath }
          : env === 'profileToken'
            ? { SKEIN_CLIENT_CONFIG: profileFile(mtls, { t: { peer: 'a', tokenFile: tokenPath } }), SKEIN_PROFILE: 't', SKEIN_TOKEN: 'env-token' }
            : (env as Record<string, string>);
    const r = await py('target', params, environment);
    expect(r).toMatchObject(expected);
  });

  it.each([
    ['no peer anywhere', {}, {}, /^no peer to call: pass peer=HOST\[:PORT\], set SKEIN_PEER, or give a client profile/],
    ['a certificate without its key', { peer: 'a', cert: '/x.crt' }, {}, /^a client certificate needs its key: cert= is set but not key= \/ SKEIN_KEY$/],
    ['an IPv6 address without brackets', { peer: '::1:7443' }, {}, /is not HOST\[:PORT\] \(write an IPv6 address in brackets: \[::1\]:7443\)$/],
    ['a port out of range', {}, { SKEIN_PEER: 'a:70000' }, /^SKEIN_PEER: port 70000 is out of range \(1-65535\)$/],
    ['http:// without plaintext', { peer: 'http://a:1' }, {}, /^peer=: http:\/\/a:1 is plaintext http:\/\/: pass plaintext=True/],
    ['plaintext with a certificate', { peer: 'a', plaintext: true, cert: '/c', key: '/k' }, {}, /^plaintext=True sends no client certificate and checks none: drop cert=, key=$/],
    ['token and token_file together', { peer: 'a', token: 't', token_file: '/f' }, {}, /^token= and token_file= cannot be given together$/],
    ['a token with a newline', { peer: 'a' }, { SKEIN_TOKEN: 'a\nb' }, /^SKEIN_TOKEN: the token contains a control character/],
    ['an unreadable token file', { peer: 'a' }, { SKEIN_TOKEN_FILE: '/nonexistent/token' }, /^SKEIN_TOKEN_FILE: cannot read \/nonexistent\/token: No such file or directory$/],
    ['a missing SKEIN_CLIENT_CONFIG', {}, { SKEIN_CLIENT_CONFIG: '/nonexistent/client.json' }, /^SKEIN_CLIENT_CONFIG: \/nonexistent\/client\.json does not exist$/],
    ['a profile asked for with no profile file', { profile: 'lab' }, {}, /^profile "lab" asked for, but there is no client profile file at .*\/\.config\/skein\/client\.json$/],
    ['an unknown profile', { profile: 'nope' }, 'profile', /: no profile named "nope" \(profiles: good, broken, typo\)$/],
    ['an unknown profile key', { profile: 'typo' }, 'profile', /: profile "typo": unknown key "certificate" \(known: peer, cert, key, ca, token, tokenFile, plaintext\)$/],
    ['a syntax error in the profile file', {}, 'broken-json', /^client profile file .*: line 2 column 3: Expecting property name enclosed in double quotes$/],
  ])('%s → UsageError naming where the setting came from', async (_name, args, env, message) => {
    let environment = env as Record<string, string>;
    if (env === 'profile') environment = { SKEIN_CLIENT_CONFIG: profileFile(mtls, { typo: { certificate: 'x' } }) };
    if (env === 'broken-json') {
      const file = join(tempDir(), 'client.json');
      writeFileSync(file, '{\n  peer: "a"\n}\n');
      environment = { SKEIN_CLIENT_CONFIG: file };
    }
    const r = await py('target', { args }, environment);
    expect(r).toMatchObject({ class: 'UsageError', code: 'SKEIN_ERR_USAGE' });
    expect(r.message).toMatch(message);
  });
});

describe('Python client: tokens (bearer-jwt, PyJWT) and certificate identities', () => {
  let agent: StartedAgent;
  const es = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signingKey = String(es.privateKey.export({ type: 'pkcs8', format: 'pem' }));

  beforeAll(async () => {
    agent = await startAgent({
      config: baseConfig({
        // One-way TLS: a caller may authenticate with a token alone.
        tls: { clientCerts: 'optional' },
        plugins: {
          enabled: [
            { name: 'bearer-jwt', options: { algorithms: ['ES256'], keys: [String(es.publicKey.export({ type: 'spki', format: 'pem' }))], issuer: 'https://issuer.test', audience: 'skein' } },
            {
              name: 'routine-policy',
              options: {
                rules: [
                  { effect: 'allow', identities: ['jwt:*'], routines: ['echo'] },
                  { effect: 'allow', identities: ['jwt:alice', OPS], routines: ['*'] },
                ],
                default: 'deny',
              },
            },
          ],
        },
      }),
    });
    expect((await runCli(['pki', 'issue', '--name', 'ops', '--kind', 'client', '--dir', agent.pki.dir])).code).toBe(0);
  });
  afterAll(async () => {
    await agent?.stop();
  });

  const oneWay = () => ({ peer: `127.0.0.1:${agent.port}`, ca: agent.pki.ca });

  it('a JWT minted by PyJWT authenticates over one-way TLS (token=)', async () => {
    expect(await py('jwt_call', { client: oneWay(), signing_key: signingKey, claims: { sub: 'alice' }, routine: 'add', args: [2, 3] })).toMatchObject({ value: { result: 5 } });
    expect(await py('jwt_call', { client: oneWay(), signing_key: signingKey, claims: { sub: 'bob' }, routine: 'echo', args: ['hi'] })).toMatchObject({ value: { result: 'hi' } });
  });

  it('an expired JWT → Unauthenticated with reason JWT_EXPIRED and the plugin', async () => {
    const r = await py('jwt_call', { client: oneWay(), signing_key: signingKey, claims: { sub: 'alice', exp: Math.floor(Date.now() / 1000) - 600 }, routine: 'add', args: [1] });
    expect(r).toMatchObject({ class: 'Unauthenticated', code: 'SKEIN_ERR_UNAUTHENTICATED', status: 401, reason: 'JWT_EXPIRED', plugin: 'bearer-jwt', peer: 'anonymous' });
  });

  it('a bad token (SKEIN_TOKEN) → Unauthenticated JWT_MALFORMED; no credential at all → CREDENTIAL_REQUIRED', async () => {
    const c = oneWay();
    expect(await py('dispatch', { routine: 'echo', args: [1] }, { SKEIN_PEER: c.peer, SKEIN_CA: c.ca, SKEIN_TOKEN: 'not.a.jwt' })).toMatchObject({
      class: 'Unauthenticated',
      reason: 'JWT_MALFORMED',
      plugin: 'bearer-jwt',
    });
    expect(await py('dispatch', { client: c, routine: 'echo', args: [1] })).toMatchObject({ class: 'Unauthenticated', reason: 'CREDENTIAL_REQUIRED' });
  });

  it('a JWT identity the policy does not allow → Forbidden with the reason', async () => {
    const r = await py('jwt_call', { client: oneWay(), signing_key: signingKey, claims: { sub: 'bob' }, routine: 'add', args: [1] });
    expect(r).toMatchObject({ class: 'Forbidden', code: 'SKEIN_ERR_FORBIDDEN', status: 403, plugin: 'routine-policy', reason: 'POLICY_DEFAULT_DENY' });
    expect(r.message).toMatch(/^jwt:bob may not run routine "add"/);
  });

  it('the client certificate is the identity: ops may run add, dev-client may not', async () => {
    expect(await py('dispatch', { client: creds(agent, 'ops'), routine: 'add', args: [2, 3] })).toMatchObject({ value: { result: 5 } });
    expect(await py('dispatch', { client: creds(agent, 'ops'), routine: 'fail', args: ['x'] })).toMatchObject({ class: 'RoutineRaised', peer: OPS });
    expect(await py('dispatch', { client: creds(agent), routine: 'add', args: [1] })).toMatchObject({ class: 'Forbidden', peer: DEV });
  });
});

describe('Python client: plaintext h2c (tls.plaintext) with a token', () => {
  let agent: StartedAgent;
  const es = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signingKey = String(es.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  beforeAll(async () => {
    agent = await startAgent({
      config: baseConfig({
        tls: { plaintext: true },
        http2: { idleTimeoutMs: 500 },
        authorization: { allow: [{ identities: ['jwt:alice'], routines: ['*'] }] },
        plugins: {
          enabled: [{ name: 'bearer-jwt', options: { algorithms: ['ES256'], keys: [String(es.publicKey.export({ type: 'spki', format: 'pem' }))], issuer: 'https://issuer.test', audience: 'skein' } }],
        },
      }),
    });
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('plaintext=True speaks h2c, and a connection the agent closed when idle is replaced', async () => {
    const before = connections(agent);
    const r = await py('idle', { client: { peer: `http://127.0.0.1:${agent.port}`, plaintext: true }, signing_key: signingKey, claims: { sub: 'alice' }, pause: 1.5 });
    expect(r).toEqual({ sync: [2, 4], async: [2, 4, 6, 8], plaintext: true });
    // Each client: its first connection, closed by the agent when idle, then one more.
    expect(connections(agent) - before).toBe(4);
    expect(agent.logs.filter((l) => l.msg === 'peer connected').at(-1)).toMatchObject({ tls: 'none (h2c)' });
  });

  it('a profile with "plaintext": true, and an http:// peer without it is refused', async () => {
    const file = join(tempDir(), 'client.json');
    writeFileSync(file, JSON.stringify({ default: 'h2c', profiles: { h2c: { peer: `127.0.0.1:${agent.port}`, plaintext: true } } }));
    expect(await py('jwt_call', { signing_key: signingKey, claims: { sub: 'alice' }, routine: 'add', args: [3, 4] }, { SKEIN_CLIENT_CONFIG: file })).toMatchObject({ value: { result: 7 } });
    const refused = await py('jwt_call', { client: { peer: `http://127.0.0.1:${agent.port}` }, signing_key: signingKey, claims: { sub: 'alice' }, routine: 'add', args: [1] });
    expect(refused).toMatchObject({ class: 'UsageError', message: `peer=: http://127.0.0.1:${agent.port} is plaintext http://: pass plaintext=True to send calls and tokens unencrypted` });
  });
});

describe('Python client: backpressure', () => {
  it('a full agent → Overloaded with retry_after from Retry-After, and the call in progress completes', async () => {
    const agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1 }, limits: { queueSize: 0 } }) });
    try {
      const r = await py('overloaded', { client: creds(agent) });
      expect(r.refused).toMatchObject({ class: 'Overloaded', code: 'SKEIN_ERR_OVERLOADED', status: 503, retry_after: 1 });
      expect(r.refused.bases).toContain('Unavailable');
      expect(r.busy).toBe(1);
    } finally {
      await agent.stop();
    }
  });
});
