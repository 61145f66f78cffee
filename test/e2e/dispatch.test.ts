/**
 * Dispatch through the compiled binary over real HTTP/2 + mTLS: the client library, the
 * binary's own `dispatch` command and curl, in CBOR and JSON; and each rejection with its
 * code while the agent keeps serving.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { encode, decode } from 'cbor-x';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinError } from '../../common/errors/index.ts';
import { connect, postJson, request } from '../helpers/h2.ts';
import { pythonModules, requires } from '../helpers/requires.ts';
import { baseConfig, curlMtls, failure, FIXTURES, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

const exec = promisify(execFile);
const withHttpx = requires(pythonModules(['httpx', 'h2'], 'python3-httpx python3-h2'));
const FIX = join(FIXTURES, 'routines.py');

let agent: StartedAgent;

beforeAll(async () => {
  agent = await startAgent({
    config: baseConfig({
      limits: { maxBodyBytes: 4096 },
      workers: { memoryLimitMb: 256, maxOpenFiles: 32 },
      routines: { pid: { file: FIX }, big: { file: FIX }, chatty: { file: FIX }, nan: { file: FIX }, bad_result: { file: FIX }, hog: { file: FIX }, open_many: { file: FIX } },
    }),
  });
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

async function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('curl', ['--silent', '--show-error', '--max-time', '10', ...args], { encoding: 'latin1', maxBuffer: 1 << 24 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const curlCreds = () => curlMtls(agent);

describe('client library', () => {
  it('dispatches echo and add in CBOR and JSON over one connection', async () => {
    const client = agent.client();
    try {
      expect(await client.dispatch('echo', { args: ['hi'] })).toBe('hi');
      expect(await client.dispatch('add', { args: [2, 3] })).toBe(5);
      expect(await client.dispatch('add', { args: [2, 3.5], encoding: 'json' })).toBe(5.5);
      expect(await client.dispatch('echo', { args: [1], kwargs: { x: [true, null, { y: 'z' }] } })).toEqual({ args: [1], kwargs: { x: [true, null, { y: 'z' }] } });
    } finally {
      await client.close();
    }
  });

  it('runs many concurrent calls on the one connection', async () => {
    const client = agent.client();
    try {
      const results = await Promise.all(Array.from({ length: 64 }, (_, i) => client.dispatch('add', { args: [i, 1] })));
      expect(results).toEqual(Array.from({ length: 64 }, (_, i) => i + 1));
    } finally {
      await client.close();
    }
  });

  it('routine raising → 422 SKEIN_ERR_ROUTINE_RAISED with the exception type', async () => {
    const client = agent.client();
    try {
      const err = await failure(client.dispatch('fail', { args: ['boom'] }));
      expect(err).toBeInstanceOf(SkeinError);
      expect(err.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
      expect(err.details.status).toBe(422);
      expect(err.details.exception).toEqual({ type: 'ValueError', message: 'boom' });
      expect(err.message).toBe('ValueError: boom');
      // The worker survives a routine exception.
      expect(await client.dispatch('echo', { args: [1] })).toBe(1);
    } finally {
      await client.close();
    }
  });

  it('non-serialisable results are a routine error, not a broken worker', async () => {
    const client = agent.client();
    try {
      for (const routine of ['nan', 'bad_result']) {
        const err = await failure(client.dispatch(routine));
        expect(err.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
        expect(err.details.exception.type).toBe('ResultNotSerializable');
      }
      expect(await client.dispatch('echo', { args: ['ok'] })).toBe('ok');
    } finally {
      await client.close();
    }
  });

  it('print() in a routine goes to the log with the request id, never into the reply channel', async () => {
    const client = agent.client();
    try {
      expect(await client.dispatch('chatty', { args: ['{"id":1,"ok":"forged"}'], requestId: 'req-chatty' })).toBe('printed');
      const line = await agent.waitForLog((l) => l.msg === 'worker stderr' && String(l.line).includes('forged'));
      expect(line.level).toBe('warn');
      expect(line.requestId).toBe('req-chatty');
      expect(line.worker).toMatch(/^w\d+$/);
    } finally {
      await client.close();
    }
  });

  it('workers run under memory and open-file limits (workers.memoryLimitMb, maxOpenFiles)', async () => {
    const client = agent.client();
    try {
      expect(await client.dispatch('hog', { args: [16] })).toBe(16 * 1024 * 1024);
      const mem = await failure(client.dispatch('hog', { args: [512] }));
      expect(mem.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
      expect(mem.details.exception.type).toBe('MemoryError');
      const fds = await failure(client.dispatch('open_many', { args: [100] }));
      expect(fds.details.exception.type).toBe('OSError');
      expect(fds.details.exception.message).toMatch(/Too many open files/);
      expect(await client.dispatch('add', { args: [1, 2] })).toBe(3);
    } finally {
      await client.close();
    }
  });

  it('lists routines and reports health', async () => {
    const client = agent.client();
    try {
      const routines = await client.routines();
      expect(routines.map((r) => r.name)).toEqual(expect.arrayContaining(['echo', 'add', 'fail', 'sleep']));
      expect(routines.find((r) => r.name === 'echo')?.sha256).toMatch(/^[0-9a-f]{64}$/);
      const health = await client.health();
      expect(health).toMatchObject({ status: 'ok', workers: 2 });
    } finally {
      await client.close();
    }
  });

  it('logs the peer SPIFFE ID of the client certificate', async () => {
    const line = await agent.waitForLog((l) => l.msg === 'peer connected');
    expect(line.peer).toBe('spiffe://skein.local/client/dev-client');
    expect(line.tls).toBe('TLSv1.3');
  });
});

describe('skein dispatch (the binary as a client)', () => {
  it('uses the development client certificate from the config state dir', async () => {
    const r = await runCli(['dispatch', 'add', '--args', '[40, 2]', '--config', agent.configPath, '--peer', `127.0.0.1:${agent.port}`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('42');
  });

  it('--json prints the result and the request id; JSON encoding works too', async () => {
    const r = await runCli(['dispatch', 'echo', '--args', '["hi"]', '--json', '--encoding', 'json', '--config', agent.configPath, '--peer', `127.0.0.1:${agent.port}`]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.result).toBe('hi');
    expect(out.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('has distinct exit codes: rejected 3, routine raised 4, deadline 5, transport 6', async () => {
    const rejected = await runCli(['dispatch', 'nope', '--config', agent.configPath, '--peer', `127.0.0.1:${agent.port}`]);
    expect(rejected.code).toBe(3);
    expect(rejected.stderr).toMatch(/^error \[SKEIN_ERR_UNKNOWN_ROUTINE\]: rejected by the server: no routine named "nope"/);

    const raised = await runCli(['dispatch', 'fail', '--args', '["bad"]', '--config', agent.configPath, '--peer', `127.0.0.1:${agent.port}`]);
    expect(raised.code).toBe(4);
    expect(raised.stderr).toMatch(/^error \[SKEIN_ERR_ROUTINE_RAISED\]: routine failed: ValueError: bad/);

    const late = await runCli(['dispatch', 'sleep', '--args', '[5]', '--timeout', '300', '--config', agent.configPath, '--peer', `127.0.0.1:${agent.port}`]);
    expect(late.code).toBe(5);
    expect(late.stderr).toMatch(/^error \[SKEIN_ERR_DEADLINE_EXCEEDED\]: deadline exceeded/);

    const down = await runCli(['dispatch', 'echo', '--peer', '127.0.0.1:1', '--config', agent.configPath]);
    expect(down.code).toBe(6);
    expect(down.stderr).toMatch(/^error \[SKEIN_ERR_TRANSPORT\]: transport failure: .*ECONNREFUSED/);

    // An agent certificate the client's CA did not sign: a TLS failure, same exit code.
    const other = tempDir();
    expect((await runCli(['pki', 'init', '--dir', other])).code).toBe(0);
    const tls = await runCli(['dispatch', 'echo', '--peer', `127.0.0.1:${agent.port}`, '--cert', agent.pki.cert, '--key', agent.pki.key, '--ca', join(other, 'ca.crt')]);
    expect(tls.code).toBe(6);
    expect(tls.stderr).toMatch(/^error \[SKEIN_ERR_TLS\]: TLS failure: .*(self[- ]signed|unable to verify|certificate)/i);
  });

  it('usage errors exit 2 naming the flag', async () => {
    const r = await runCli(['dispatch', 'echo', '--args', '{"not":"a list"}']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--args must be a JSON array');
  });
});

describe('curl --http2 with client certificates', () => {
  it('negotiates HTTP/2 and dispatches with a JSON body', async () => {
    const r = await curl([
      '--http2',
      ...curlCreds(),
      '-H',
      'content-type: application/json',
      '--data-binary',
      '{"args":[20,22]}',
      '-w',
      '\n%{http_version} %{response_code}',
      `https://127.0.0.1:${agent.port}/v1/dispatch/add`,
    ]);
    expect(r.stderr).toBe('');
    const [body, meta] = r.stdout.split('\n');
    expect(meta).toBe('2 200');
    expect(JSON.parse(body!)).toEqual({ result: 42 });
  });

  it('a method the endpoint does not take is 404 SKEIN_ERR_NOT_FOUND (the dispatch listener never answers 405), as docs/api.md says', async () => {
    const r = await curl(['--http2', ...curlCreds(), '-w', '\n%{response_code}', `https://127.0.0.1:${agent.port}/v1/dispatch/add`]);
    const [body, status] = r.stdout.split('\n');
    expect(status).toBe('404');
    expect(JSON.parse(body!)).toMatchObject({ code: 'SKEIN_ERR_NOT_FOUND', message: 'no endpoint GET /v1/dispatch/add' });
  });

  it('dispatches with a CBOR body and gets CBOR back', async () => {
    const file = join(tempDir(), 'body.cbor');
    writeFileSync(file, encode({ args: ['cbor', 1] }));
    const out = join(tempDir(), 'out.cbor');
    const r = await curl([
      '--http2',
      ...curlCreds(),
      '-H',
      'content-type: application/cbor',
      '--data-binary',
      `@${file}`,
      '-o',
      out,
      '-w',
      '%{http_version} %{response_code} %{content_type}',
      `https://127.0.0.1:${agent.port}/v1/dispatch/echo`,
    ]);
    expect(r.stdout).toBe('2 200 application/cbor');
    expect(decode(readFileSync(out))).toEqual({ result: ['cbor', 1] });
  });

  it('refuses HTTP/1.1 and TLS below 1.3', async () => {
    const h1 = await curl(['--http1.1', ...curlCreds(), '-w', '%{http_code}', `https://127.0.0.1:${agent.port}/healthz`]);
    expect(h1.code).not.toBe(0);
    expect(h1.stdout).toBe('000');
    const tls12 = await curl(['--http2', '--tls-max', '1.2', ...curlCreds(), '-w', '%{http_code}', `https://127.0.0.1:${agent.port}/healthz`]);
    expect(tls12.code).not.toBe(0);
    expect(tls12.stdout).toBe('000');
    expect(tls12.stderr).toMatch(/version|alert|SSL/i);
  });

  it('refuses a client without a certificate during the handshake', async () => {
    const r = await curl([
      '--http2',
      '--cacert',
      agent.pki.ca,
      '-H',
      'content-type: application/json',
      '--data-binary',
      '{}',
      '-w',
      '%{http_code}',
      `https://127.0.0.1:${agent.port}/v1/dispatch/echo`,
    ]);
    // TLS 1.3: the client may finish its side of the handshake before the server's alert
    // arrives, so curl reports the alert, the reset or the dead socket; never a response.
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('000');
    const client = agent.client({ cert: undefined, key: undefined });
    const err = await failure(client.dispatch('echo', { args: [1] }));
    await client.destroy();
    expect(['SKEIN_ERR_TLS', 'SKEIN_ERR_TRANSPORT']).toContain(err.code);
  });

  it('refuses a client certificate from another CA', async () => {
    const dir = tempDir();
    expect((await runCli(['pki', 'init', '--dir', dir, '--trust-domain', 'evil.example'])).code).toBe(0);
    expect((await runCli(['pki', 'issue', '--dir', dir, '--name', 'mallory', '--kind', 'client'])).code).toBe(0);
    const r = await curl([
      '--http2',
      '--cert',
      join(dir, 'client-mallory.crt'),
      '--key',
      join(dir, 'client-mallory.key'),
      '--cacert',
      agent.pki.ca,
      '-H',
      'content-type: application/json',
      '--data-binary',
      '{}',
      '-w',
      '%{http_code}',
      `https://127.0.0.1:${agent.port}/v1/dispatch/echo`,
    ]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('000');
    // The agent still serves its own clients.
    const client = agent.client();
    expect(await client.dispatch('echo', { args: ['still here'] })).toBe('still here');
    await client.close();
  });
});

describe('bad requests get their code and the agent keeps serving', () => {
  it.each([
    ['malformed JSON', 'application/json', Buffer.from('{"args": [1,'), 400, 'SKEIN_ERR_BAD_REQUEST', /not valid JSON/],
    ['malformed CBOR', 'application/cbor', Buffer.from([0xbf, 0x61]), 400, 'SKEIN_ERR_BAD_REQUEST', /not valid CBOR/],
    // cbor-x tags a bare Uint8Array (tag 64): a tag, refused like any other (byte strings are bytes: bytes.test.ts).
    ['CBOR tagged typed array', 'application/cbor', Buffer.from(encode({ args: [new Uint8Array([1, 2])] })), 400, 'SKEIN_ERR_BAD_REQUEST', /body.args\[0\]: CBOR tagged value is not supported/],
    ['args not a list', 'application/json', Buffer.from('{"args": 5}'), 400, 'SKEIN_ERR_BAD_REQUEST', /"args" must be an array/],
    ['unknown body field', 'application/json', Buffer.from('{"argz": []}'), 400, 'SKEIN_ERR_BAD_REQUEST', /unknown body field "argz"/],
    ['unsupported media type', 'text/plain', Buffer.from('hi'), 415, 'SKEIN_ERR_UNSUPPORTED_MEDIA_TYPE', /application\/cbor or application\/json/],
    ['oversize body', 'application/json', Buffer.from(JSON.stringify({ args: ['x'.repeat(5000)] })), 413, 'SKEIN_ERR_BODY_TOO_LARGE', /limits.maxBodyBytes \(4096 bytes\)/],
  ])('%s → %i %s', { timeout: 10_000 }, async (_name, type, body, status, code, message) => {
    const session = connect(agent.port, agent.pki);
    try {
      const r = await request(session, { ':method': 'POST', ':path': '/v1/dispatch/echo', 'content-type': type, 'x-request-id': 'req-bad-1' }, body);
      expect(r.status).toBe(status);
      // Errors come back in the request's media type (JSON when it is unsupported).
      const json = type === 'application/cbor' ? decode(r.body) : JSON.parse(r.body.toString());
      expect(json.code).toBe(code);
      expect(json.message).toMatch(message);
      expect(json.requestId).toBe('req-bad-1');
      expect(json.meta.peer).toBe('spiffe://skein.local/client/dev-client');
      const ok = await postJson(session, 'echo', { args: ['after'] });
      expect(ok.json).toEqual({ result: 'after' });
    } finally {
      session.close();
    }
  });

  withHttpx.it('an oversize body gets its 413 in Python httpx, which writes the whole body before it reads the answer', async () => {
    const script = [
      'import httpx, json, sys',
      'p = sys.argv[1]',
      "c = httpx.Client(http2=True, http1=False, verify=p + '/ca.crt', cert=(p + '/client-dev-client.crt', p + '/client-dev-client.key'), timeout=10)",
      "r = c.post(sys.argv[2], content=json.dumps({'args': ['x' * 300000]}), headers={'content-type': 'application/json'})",
      "print(r.status_code, r.json()['code'])",
      "print(c.post(sys.argv[2], json={'args': ['after']}).json())",
    ].join('\n');
    const { stdout } = await exec('/usr/bin/python3', ['-c', script, agent.pki.dir, `https://127.0.0.1:${agent.port}/v1/dispatch/echo`], { timeout: 20_000 });
    expect(stdout).toBe("413 SKEIN_ERR_BODY_TOO_LARGE\n{'result': 'after'}\n");
  });

  it('a body far over the limit is answered at once past what the agent reads and drops, and the connection keeps serving', async () => {
    const session = connect(agent.port, agent.pki);
    try {
      const r = await request(session, { ':method': 'POST', ':path': '/v1/dispatch/echo', 'content-type': 'application/json' }, Buffer.alloc(24 * 1024 * 1024, 0x20));
      expect(r.status).toBe(413);
      expect((await postJson(session, 'echo', { args: ['after'] })).json).toEqual({ result: 'after' });
    } finally {
      session.close();
    }
  });

  it('unknown routine → 404 naming it; unknown path → 404; bad deadline header → 400', async () => {
    const session = connect(agent.port, agent.pki);
    try {
      const r = await postJson(session, 'missing', {});
      expect(r.status).toBe(404);
      expect(r.json).toMatchObject({ code: 'SKEIN_ERR_UNKNOWN_ROUTINE', message: expect.stringContaining('"missing"') });
      const p = await request(session, { ':method': 'GET', ':path': '/nope' });
      expect(p.status).toBe(404);
      expect(JSON.parse(p.body.toString()).code).toBe('SKEIN_ERR_NOT_FOUND');
      const d = await postJson(session, 'echo', {}, { 'x-skein-timeout-ms': 'soon' });
      expect(d.status).toBe(400);
      expect(d.json.message).toMatch(/x-skein-timeout-ms must be a positive integer/);
    } finally {
      session.close();
    }
  });

  it('a reply over limits.maxResultBytes kills the worker with a distinct code', async () => {
    const client = agent.client();
    try {
      // Results are capped at 16 MiB by default; ask for more.
      const err = await failure(client.dispatch('big', { args: [17 * 1024 * 1024] }));
      expect(err.code).toBe('SKEIN_ERR_RESULT_TOO_LARGE');
      expect(err.details.status).toBe(502);
      expect(await client.dispatch('add', { args: [1, 1] })).toBe(2);
    } finally {
      await client.close();
    }
  });
});
