/**
 * A request answered before its body ended (a refusal before the body is read; a 413 once
 * limits.maxBodyBytes + 16 MiB were read and dropped), through the compiled binary over mTLS,
 * with the clients users have: Python httpx, curl, node:http2.
 *
 * The agent answers, then resets the stream with NO_ERROR (RFC 9113 §8.1). curl and
 * node:http2 stop sending and keep the answer. httpx (httpcore) reads nothing before its
 * whole body is sent: it waited forever for flow-control credit (regression: until
 * http2.idleTimeoutMs, 2 minutes by default). Now a connection that goes quiet after such an
 * answer is closed with GOAWAY after EARLY_ANSWER_QUIET_MS, so httpx fails at once, while a
 * client still using the connection keeps it, its other streams unharmed.
 */
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type http2 from 'node:http2';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, postJson, request } from '../helpers/h2.ts';
import { pythonModules, requires } from '../helpers/requires.ts';
import { baseConfig, curlMtls, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

const exec = promisify(execFile);
const withHttpx = requires(pythonModules(['httpx', 'h2'], 'python3-httpx python3-h2'));
const MiB = 1024 * 1024;
const LIMIT = 4096;

afterAll(stopAll);

let agent: StartedAgent;
beforeAll(async () => {
  // idleTimeoutMs stays at its default (2 minutes): what the httpx tests must not wait for.
  agent = await startAgent({ config: baseConfig({ workers: { poolSize: 2 }, limits: { maxBodyBytes: LIMIT } }) });
});
afterAll(() => agent?.stop());

/**
 * Posts `size` bytes with httpx (HTTP/2, the dev client certificate), then an `echo` on a new
 * client; prints one JSON line: what the big post gave (status and code, or the error type and
 * text) and how long it took, and the echo's result.
 */
const HTTPX_SCRIPT = `
import httpx, json, sys, time
p, base, routine, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def client():
    return httpx.Client(http2=True, http1=False, verify=p + '/ca.crt', cert=(p + '/client-dev-client.crt', p + '/client-dev-client.key'), timeout=httpx.Timeout(60))
out = {}
start = time.monotonic()
with client() as c:
    try:
        r = c.post(base + routine, content=b' ' * size, headers={'content-type': 'application/json'})
        out['status'] = r.status_code
        out['code'] = r.json().get('code')
    except Exception as e:
        out['error'] = type(e).__name__
        out['text'] = str(e)
out['seconds'] = time.monotonic() - start
with client() as c:
    out['after'] = c.post(base + 'echo', json={'args': ['after']}).json()
print(json.dumps(out))
`;

async function httpxPost(routine: string, size: number): Promise<Record<string, any>> {
  const script = join(tempDir(), 'post.py');
  writeFileSync(script, HTTPX_SCRIPT);
  // Bounded well below http2.idleTimeoutMs: before the fix httpx hung here.
  const { stdout } = await exec('/usr/bin/python3', [script, agent.pki.dir, `https://127.0.0.1:${agent.port}/v1/dispatch/`, routine, String(size)], { timeout: 90_000 });
  return JSON.parse(stdout) as Record<string, any>;
}

describe('Python httpx, which writes its whole body before it reads the answer', () => {
  withHttpx.it(
    'refused before the body is read (404) with 1 MiB it cannot send: fails within seconds, and the agent serves the next client',
    async () => {
      const from = agent.logs.length;
      const r = await httpxPost('missing', MiB);
      expect(r).toMatchObject({ error: 'RemoteProtocolError', text: expect.stringMatching(/ConnectionTerminated error_code:(0|ErrorCodes.NO_ERROR)/) });
      expect(r.seconds).toBeLessThan(10);
      expect(r.after).toEqual({ result: 'after' });
      await agent.waitForLog((l) => l.msg === 'session closed: a request was answered before its body ended and the client went quiet' && agent.logs.indexOf(l) >= from);
    },
    100_000,
  );

  withHttpx.it(
    'a body more than 16 MiB over limits.maxBodyBytes: the 413 cannot reach httpx, which now fails promptly instead of hanging',
    async () => {
      const r = await httpxPost('echo', LIMIT + 20 * MiB);
      expect(r).toMatchObject({ error: 'RemoteProtocolError', text: expect.stringMatching(/ConnectionTerminated/) });
      // Sending the 16 MiB the agent reads and drops takes httpx ~10 s on a shared 2-core box;
      // then the connection goes quiet and is closed EARLY_ANSWER_QUIET_MS later.
      expect(r.seconds).toBeLessThan(60);
      expect(r.after).toEqual({ result: 'after' });
    },
    100_000,
  );

  withHttpx.it(
    'up to 16 MiB over the limit httpx still gets its 413 (read and dropped)',
    async () => {
      const r = await httpxPost('echo', 2 * MiB);
      expect(r).toMatchObject({ status: 413, code: 'SKEIN_ERR_BODY_TOO_LARGE' });
      expect(r.after).toEqual({ result: 'after' });
    },
    100_000,
  );
});

describe('curl, which reads the answer while it sends', () => {
  async function curlPost(routine: string, size: number): Promise<{ code: number | null; stdout: string; ms: number }> {
    const started = Date.now();
    return new Promise((resolve) => {
      const proc = spawn('curl', [
        '--silent',
        '--show-error',
        '--http2',
        '--max-time',
        '30',
        ...curlMtls(agent),
        '-H',
        'content-type: application/json',
        '--data-binary',
        '@-',
        '-w',
        '\n%{http_code} %{size_upload}',
        `https://127.0.0.1:${agent.port}/v1/dispatch/${routine}`,
      ]);
      let stdout = '';
      proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      proc.stdin.on('error', () => {}); // curl stops reading its input once answered
      proc.on('close', (code) => resolve({ code, stdout, ms: Date.now() - started }));
      const chunk = Buffer.alloc(MiB, 0x20);
      let left = Math.ceil(size / MiB);
      const pump = () => {
        while (left > 0) {
          left--;
          if (!proc.stdin.write(chunk)) return void proc.stdin.once('drain', pump);
        }
        proc.stdin.end();
      };
      pump();
    });
  }

  it.each([
    ['a 404 before the body is read', 'missing', 404, 1],
    ['a 413 past what is read and dropped', 'echo', 413, 18],
  ])('%s: curl gets the answer at once and stops sending', { timeout: 40_000 }, async (_name, routine, status, maxMiB) => {
    const r = await curlPost(routine, 40 * MiB);
    expect(r.code).toBe(0);
    const [statusText, uploaded] = r.stdout.trim().split('\n').at(-1)!.split(' ');
    expect(Number(statusText)).toBe(status);
    expect(Number(uploaded)).toBeLessThan(maxMiB * MiB);
    expect(r.ms).toBeLessThan(15_000);
  });
});

describe('node:http2, which stops sending on the reset: the connection keeps serving', () => {
  let session: http2.ClientHttp2Session;
  beforeAll(() => {
    session = connect(agent.port, agent.pki);
  });
  afterAll(() => session?.close());

  /** Posts `size` bytes in 1 MiB writes until the stream closes; resolves with the status. */
  function sendUntilClosed(path: string, size: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json' });
      let status = 0;
      let sent = 0;
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('error', reject);
      stream.resume();
      stream.on('close', () => resolve(status));
      const chunk = Buffer.alloc(MiB, 0x20);
      const pump = () => {
        while (!stream.closed && sent < size) {
          sent += chunk.length;
          if (!stream.write(chunk)) return void stream.once('drain', pump);
        }
        if (!stream.closed) stream.end();
      };
      pump();
    });
  }

  it('a call in flight on the same connection finishes; new streams keep being served while it is used; GOAWAY only once it went quiet', { timeout: 30_000 }, async () => {
    let goaway = false;
    session.once('goaway', () => (goaway = true));
    const slow = postJson(session, 'sleep', { args: [1.5] });
    expect(await sendUntilClosed('/v1/dispatch/echo', 24 * MiB)).toBe(413);
    expect(await sendUntilClosed('/v1/dispatch/missing', 8 * MiB)).toBe(404);
    // Used every 300 ms for 2.5 s (longer than the quiet period): the connection stays.
    for (let i = 0; i < 8; i++) {
      expect((await postJson(session, 'echo', { args: [i] })).json).toEqual({ result: i });
      await new Promise((r) => setTimeout(r, 300));
    }
    expect((await slow).json).toEqual({ result: 1.5 });
    expect(goaway).toBe(false);
    // Quiet: closed gracefully (GOAWAY NO_ERROR) soon after.
    const code = await new Promise<number>((resolve) => session.once('goaway', (c) => resolve(c)));
    expect(code).toBe(0);
    // Other connections were never affected.
    const other = connect(agent.port, agent.pki);
    try {
      expect((await request(other, { ':method': 'GET', ':path': '/healthz' })).status).toBe(200);
    } finally {
      other.close();
    }
  });
});
