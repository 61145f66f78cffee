/**
 * The protocol version, both ways: the agent refuses a worker whose hello names another
 * version, and the bootstrap refuses an init that is not a v2 frame (a v1 agent's JSON line,
 * or a v2 frame saying another version) with a ProtocolVersion error instead of guessing.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../agent/log/index.ts';
import { ENC, encodeFrame, KIND } from '../../agent/workers/frames.ts';
import { StderrBudget } from '../../agent/workers/stderr.ts';
import { Worker } from '../../agent/workers/worker.ts';
import BOOTSTRAP from '../../agent/workers/bootstrap.py';

const log = createLogger({ level: 'error', write: () => {} });

/** Runs the real bootstrap, feeds it `input`, returns what it wrote on its protocol descriptor (fd 1) and its exit code. */
function bootstrap(input: Buffer): Promise<{ out: Buffer; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn('python3', ['-I', '-S', '-u', '-c', BOOTSTRAP], { stdio: ['pipe', 'pipe', 'ignore'] });
    const parts: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => parts.push(c));
    child.on('exit', (code) => resolve({ out: Buffer.concat(parts), code }));
    child.stdin.end(input);
  });
}

describe('worker protocol version', () => {
  it('the agent refuses a worker whose hello is another version', async () => {
    // A stand-in worker: python3 -c <script> ignores the bootstrap it is handed as arguments.
    const script = [
      'import os, struct, json',
      'p = json.dumps({"ready": True, "v": 1, "pid": os.getpid(), "python": "3", "layers": []}).encode()',
      'os.write(1, struct.pack(">IBBI", len(p), 0x48, 0x6a, 0) + p)',
      'import time; time.sleep(5)',
    ].join('\n');
    const worker = new Worker(
      'w1',
      {
        launcher: { command: 'python3', prefix: ['-c', script], wrapped: false },
        cwd: '/',
        routines: {},
        limits: {},
        maxReplyBytes: 1 << 20,
        startTimeoutMs: 5000,
        streamBufferItems: 4,
      },
      log,
      new StderrBudget({ linesPerSecond: 20, bytesPerSecond: 32 * 1024 }, 1),
    );
    const err = await worker.ready().then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string },
    );
    expect(err?.code).toBe('SKEIN_ERR_WORKER_PROTOCOL');
    expect(err?.message).toBe('worker w1 sent an invalid hello: the worker speaks protocol v1, the agent v2 (a bootstrap from another skein version?)');
  });

  it('the bootstrap answers a v1 init line with a ProtocolVersion error a v1 agent can read, and exits', async () => {
    const { out, code } = await bootstrap(Buffer.from('{"v":1,"worker":"w1","routines":{},"limits":{}}\n'));
    expect(code).toBe(3);
    expect(JSON.parse(out.toString())).toEqual({
      ready: false,
      error: { routine: null, type: 'ProtocolVersion', message: 'this worker speaks protocol v2; the agent sent something else' },
    });
  });

  it('the bootstrap answers a v2 init frame naming another version with a framed ProtocolVersion hello', async () => {
    const { out, code } = await bootstrap(encodeFrame(KIND.INIT, ENC.JSON, 0, JSON.stringify({ v: 3, worker: 'w1', routines: {}, limits: {} })));
    expect(code).toBe(3);
    expect(out.readUInt32BE(0)).toBe(out.length - 10);
    expect([out[4], out[5], out.readUInt32BE(6)]).toEqual([KIND.HELLO, ENC.JSON, 0]);
    expect(JSON.parse(out.subarray(10).toString())).toEqual({
      ready: false,
      v: 2,
      error: { routine: null, type: 'ProtocolVersion', message: 'the agent speaks protocol v3, this worker v2' },
    });
  });
});
