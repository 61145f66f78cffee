/**
 * The callers' side of every call shape (docs/calls.md) against the compiled binary: the
 * TypeScript client's stream() iterator, priority and bytes, and the CLI's --stream,
 * --priority, --async and `skein calls`. The generators of test/fixtures/http-streams.py print
 * their progress and their `finally` to stderr, which the agent relays to its log: that is
 * how a test sees a generator stop without asking the worker running it.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, BINARY, DEV_CLIENT, failure, FIXTURES, runCli, startAgent, stopAll, tempDir, workerStderr, type StartedAgent } from '../helpers/agent.ts';

const STREAMS = join(FIXTURES, 'http-streams.py');
const BYTES = join(FIXTURES, 'bytes_routines.py');
const routines = {
  ...Object.fromEntries(['countdown', 'endless', 'raises_after', 'slow', 'plain'].map((r) => [r, { file: STREAMS }])),
  utf8: { file: BYTES },
  blob: { file: BYTES },
};
const blob = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i % 256));

let agent: StartedAgent;

beforeAll(async () => {
  agent = await startAgent({
    // 1 MiB of bytes plus the body's envelope.
    config: baseConfig({
      workers: { poolSize: 2, isolation: 'shared' },
      limits: { maxBodyBytes: 2 * 1024 * 1024 },
      routines,
      authorization: { allow: [{ identities: [DEV_CLIENT], routines: ['*'] }] },
    }),
  });
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

const target = () => ['--peer', `127.0.0.1:${agent.port}`, '--cert', agent.pki.cert, '--key', agent.pki.key, '--ca', agent.pki.ca];
const stderrLine = (text: string) => agent.waitForLog((l) => workerStderr(l).some((line) => line.startsWith(text)), 15_000);

/** Runs the binary in a shell pipeline (`pipefail` carries its exit code out). */
function pipeline(args: string[], reader: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const quoted = [BINARY, ...args].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
  return new Promise((resolve) => {
    execFile('bash', ['-o', 'pipefail', '-c', `${quoted} | ${reader}`], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

describe('TypeScript client: stream()', () => {
  it.each(['cbor', 'json'] as const)('%s: items arrive while the generator still runs, then the iterator ends', async (encoding) => {
    const client = agent.client();
    try {
      const started = Date.now();
      const seen: Array<{ item: number; at: number }> = [];
      for await (const item of client.stream<number>('slow', { args: [4, 0.3], encoding })) seen.push({ item, at: Date.now() - started });
      expect(seen.map((s) => s.item)).toEqual([0, 1, 2, 3]);
      // The generator sleeps 0.3 s before each item: the first is in hand ~0.9 s before the last.
      expect(seen[3]!.at - seen[0]!.at).toBeGreaterThan(600);
    } finally {
      await client.close();
    }
  });

  it('breaking out of the loop stops the generator on the agent: its finally runs', async () => {
    const client = agent.client();
    try {
      let n = 0;
      for await (const item of client.stream<string>('endless', { args: [100, 'ts-break'] })) {
        expect(item).toHaveLength(100);
        if (++n === 3) break;
      }
      expect(await stderrLine('ts-break finally ran after')).toBeDefined();
      // The worker serves the next call.
      expect(await client.dispatch('countdown', { args: [2] })).toEqual([2, 1]);
    } finally {
      await client.close();
    }
  });

  it('an error after the first item throws the routine error, after the items before it', async () => {
    const client = agent.client();
    const seen: number[] = [];
    const err = await failure(
      (async () => {
        for await (const item of client.stream<number>('raises_after', { args: [2] })) seen.push(item);
      })(),
    );
    await client.close();
    expect(seen).toEqual([0, 1]);
    expect(err).toMatchObject({ code: 'SKEIN_ERR_ROUTINE_RAISED', message: 'ValueError: gave up after 2' });
    expect(err.details.requestId).toMatch(/./);
  });

  it('a failure before the first frame (unknown routine) throws its code', async () => {
    const client = agent.client();
    const err = await failure(client.stream('nope').next());
    await client.close();
    expect(err).toMatchObject({ code: 'SKEIN_ERR_UNKNOWN_ROUTINE', details: { status: 404 } });
  });
});

describe('TypeScript client: priority and bytes', () => {
  it('priority travels as x-skein-priority (the audit line names it); an unknown level is refused before sending', async () => {
    const client = agent.client();
    try {
      expect(await client.dispatch('add', { args: [1, 2], priority: 'low', requestId: 'prio-low-1' })).toBe(3);
      expect(await agent.waitForAudit((l) => l.event === 'call.submitted' && l.requestId === 'prio-low-1')).toMatchObject({ priority: 'low' });
      const err = await failure(client.dispatch('add', { args: [1], priority: 'urgent' as never }));
      expect(err).toMatchObject({ code: 'SKEIN_ERR_USAGE', message: 'priority must be one of high, normal, low, got "urgent"' });
    } finally {
      await client.close();
    }
  });

  it('bytes both ways in CBOR: 1 MiB Uint8Array in, Uint8Array out; a JSON caller gets {"$bytes"}', async () => {
    const client = agent.client();
    try {
      const sent = new Uint8Array(blob(1 << 20));
      const back = await client.dispatch<Uint8Array>('echo', { args: [sent] });
      expect(back).toBeInstanceOf(Uint8Array);
      expect(Buffer.compare(Buffer.from(back), Buffer.from(sent))).toBe(0);
      expect(await client.dispatch('utf8', { args: ['hé'], encoding: 'json' })).toEqual({ $bytes: Buffer.from('hé').toString('base64') });
      // Items of a stream too.
      const items: unknown[] = [];
      for await (const item of client.stream('echo', { args: [new Uint8Array([0, 255])] })) items.push(item);
      expect(items).toEqual([new Uint8Array([0, 255])]);
    } finally {
      await client.close();
    }
  });

  it('a Uint8Array in a JSON-encoded call is refused client-side, naming where it is', async () => {
    const client = agent.client({ encoding: 'json' });
    try {
      const err = await failure(client.dispatch('echo', { args: ['x', { blob: new Uint8Array([1, 2]) }], requestId: 'json-bytes-1' }));
      expect(err.code).toBe('SKEIN_ERR_USAGE');
      expect(err.message).toBe('args[1].blob is binary data (Uint8Array), which JSON cannot carry: send the call with encoding "cbor" (the default), where it travels as a CBOR byte string');
      // stream() checks its arguments when called, before any iteration.
      expect(() => client.stream('countdown', { kwargs: { n: Buffer.from('x') } })).toThrow(/^kwargs\.n is binary data \(Buffer\)/);
      // Nothing reached the agent.
      expect(agent.logs.some((l) => l.requestId === 'json-bytes-1')).toBe(false);
    } finally {
      await client.close();
    }
  });
});

describe('skein dispatch --stream / --priority (the compiled binary)', () => {
  it('--stream into a pipe prints one JSON line per item, whole, and exits 0', async () => {
    const r = await pipeline(['dispatch', 'countdown', '--args', '[3]', '--stream', ...target()], 'cat');
    expect(r).toMatchObject({ code: 0, stdout: '3\n2\n1\n', stderr: '' });
  });

  it('--stream: the last frame decides the exit code (an error frame: its code through the errors table)', async () => {
    const r = await runCli(['dispatch', 'raises_after', '--args', '[2]', '--stream', ...target()]);
    expect(r.stdout).toBe('0\n1\n');
    expect(r.stderr).toMatch(/^error \[SKEIN_ERR_ROUTINE_RAISED\]: routine failed: ValueError: gave up after 2/);
    expect(r.code).toBe(4);
  });

  it('--stream into a reader that goes away stops the generator and exits 1 with SKEIN_ERR_OUTPUT', async () => {
    const r = await pipeline(['dispatch', 'endless', '--args', '[1000, "cli-epipe"]', '--stream', ...target()], 'head -c 5000 >/dev/null');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error \[SKEIN_ERR_OUTPUT\]: cannot write standard output: EPIPE/);
    expect(await stderrLine('cli-epipe finally ran after')).toBeDefined();
  });

  it('a bad --priority is a usage error naming the levels; a good one reaches the agent', async () => {
    const bad = await runCli(['dispatch', 'add', '--priority', 'urgent', ...target()]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('error [SKEIN_ERR_USAGE]: --priority must be one of high, normal, low, got "urgent"\n');
    const good = await runCli(['dispatch', 'add', '--args', '[2, 3]', '--priority', 'high', '--json', ...target()]);
    expect(good.code).toBe(0);
    const { requestId } = JSON.parse(good.stdout);
    expect(await agent.waitForAudit((l) => l.event === 'call.submitted' && l.requestId === requestId)).toMatchObject({ priority: 'high' });
  });

  it('--stream, --async and --output are one shape each: combining them is a usage error', async () => {
    const r = await runCli(['dispatch', 'add', '--stream', '--async', ...target()]);
    expect(r).toMatchObject({ code: 2, stderr: 'error [SKEIN_ERR_USAGE]: --stream and --async cannot be combined\n' });
  });
});

describe('bytes on the command line', () => {
  it('a bytes result prints as {"$bytes": base64} whichever encoding carried it; --output FILE writes it raw', async () => {
    const expected = blob(300);
    for (const encoding of ['cbor', 'json']) {
      const r = await runCli(['dispatch', 'blob', '--args', '[300]', '--encoding', encoding, ...target()]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ $bytes: expected.toString('base64') });
    }
    const file = join(tempDir(), 'out.bin');
    const r = await runCli(['dispatch', 'blob', '--args', '[300]', '--output', file, ...target()]);
    expect(r).toMatchObject({ code: 0, stdout: '' });
    expect(readFileSync(file)).toEqual(expected);
  });
});

describe('async calls: TypeScript client and skein calls', () => {
  it('client: submit → wait, call with waitMs, cancel, calls (newest first), an unknown id', async () => {
    const client = agent.client();
    try {
      const submitted = await client.submit('add', { args: [2, 3], priority: 'high' });
      expect(submitted).toMatchObject({ id: expect.any(String), status: 'queued' });
      expect(await client.wait(submitted.id, { timeoutMs: 10_000 })).toMatchObject({ id: submitted.id, routine: 'add', status: 'succeeded', priority: 'high', result: 5 });
      expect(await client.call(submitted.id, { waitMs: 10 })).toMatchObject({ status: 'succeeded', result: 5 });
      const slow = await client.submit('sleep', { args: [5] });
      expect(await client.cancel(slow.id)).toMatchObject({ id: slow.id, status: 'cancelled' });
      const ids = (await client.calls({ limit: 10 })).map((c) => c.id);
      expect(ids.indexOf(slow.id)).toBeLessThan(ids.indexOf(submitted.id));
      expect((await client.calls({ status: 'cancelled' })).map((c) => c.id)).toContain(slow.id);
      expect(await failure(client.call('AAAAAAAAAAAAAAAAAAAAAAAA'))).toMatchObject({ code: 'SKEIN_ERR_CALL_NOT_FOUND', details: { status: 404 } });
      // An id that cannot be one is a request error, not a lookup.
      expect(await failure(client.call('no-such-call'))).toMatchObject({ code: 'SKEIN_ERR_BAD_REQUEST', details: { status: 400 } });
      const waiting = await client.submit('sleep', { args: [3] });
      const late = await failure(client.wait(waiting.id, { timeoutMs: 300, sliceMs: 100 }));
      expect(late).toMatchObject({ code: 'SKEIN_ERR_CLIENT_TIMEOUT', details: { id: waiting.id } });
      expect(late.message).toMatch(new RegExp(`^call ${waiting.id} is still (queued|running) after 300 ms$`));
      await client.cancel(waiting.id);
      expect(await failure(client.call('../etc'))).toMatchObject({ code: 'SKEIN_ERR_USAGE' });
    } finally {
      await client.close();
    }
  });

  it('skein dispatch --async prints the id; calls wait prints the result; get/cancel/list; exit codes', async () => {
    const submitted = await runCli(['dispatch', 'add', '--args', '[2, 3]', '--async', ...target()]);
    expect(submitted.code, submitted.stderr).toBe(0);
    const id = submitted.stdout.trim();
    expect(id).toMatch(/^[A-Za-z0-9._~-]+$/);
    expect(await runCli(['calls', 'wait', id, '--timeout', '10000', ...target()])).toMatchObject({ code: 0, stdout: '5\n' });
    const got = await runCli(['calls', 'get', id, '--json', ...target()]);
    expect(JSON.parse(got.stdout)).toMatchObject({ id, routine: 'add', status: 'succeeded', result: 5 });

    const json = await runCli(['dispatch', 'sleep', '--args', '[5]', '--async', '--json', ...target()]);
    const slow = JSON.parse(json.stdout);
    expect(slow).toMatchObject({ id: expect.any(String), status: 'queued' });
    const cancelled = await runCli(['calls', 'cancel', slow.id, ...target()]);
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ id: slow.id, status: 'cancelled' });
    const waited = await runCli(['calls', 'wait', slow.id, ...target()]);
    expect(waited.code).toBe(3);
    expect(waited.stderr).toMatch(/^error \[SKEIN_ERR_CALL_CANCELLED\]: .*call \S+ \(sleep\) was cancelled/);

    const list = await runCli(['calls', 'list', '--status', 'cancelled', ...target()]);
    expect(list.stdout).toMatch(/^ID\s+ROUTINE\s+STATUS\s+PRIORITY\s+SUBMITTED\n/);
    expect(list.stdout).toContain(slow.id);
    const unknown = await runCli(['calls', 'get', 'AAAAAAAAAAAAAAAAAAAAAAAA', ...target()]);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/^error \[SKEIN_ERR_CALL_NOT_FOUND\]/);
    const badStatus = await runCli(['calls', 'list', '--status', 'done', ...target()]);
    expect(badStatus).toMatchObject({ code: 2, stderr: 'error [SKEIN_ERR_USAGE]: --status must be one of queued, running, succeeded, failed, cancelled, interrupted, got "done"\n' });
  });

  it('calls wait on a failed call exits with the error code of its stored error', async () => {
    const id = (await runCli(['dispatch', 'fail', '--args', '["stored"]', '--async', ...target()])).stdout.trim();
    const r = await runCli(['calls', 'wait', id, ...target()]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^error \[SKEIN_ERR_ROUTINE_RAISED\]: routine failed: ValueError: stored/);
  });
});
