/**
 * A bare HTTP/2 + mTLS client for the calls benches: one session, CBOR bodies, the status and
 * bytes of each answer; no client library between the bench and the wire. Also the two loops
 * the async measurements share: a rate at CONCURRENCY in flight, and waiting for the agent to
 * have run its async backlog.
 */
import http2 from 'node:http2';
import { Decoder, Encoder } from 'cbor-x';
import type { AgentHandle } from './skein.ts';
import { CONCURRENCY } from './workload.ts';

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
export const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

export class Raw {
  #s: http2.ClientHttp2Session;
  constructor(port: number, creds: AgentHandle['creds']) {
    this.#s = http2.connect(`https://127.0.0.1:${port}`, { ...creds, ALPNProtocols: ['h2'] });
  }
  request(path: string, body: unknown, headers: Record<string, string> = {}, method = 'POST'): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = this.#s.request({ ':method': method, ':path': path, 'content-type': 'application/cbor', ...headers });
      const chunks: Buffer[] = [];
      let status = 0;
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve({ status, body: Buffer.concat(chunks) }));
      req.on('error', reject);
      req.end(method === 'POST' ? encoder.encode(body) : undefined);
    });
  }
  close(): void {
    this.#s.close();
  }
}

/** POSTs {args} and checks the status it must answer; resolves with the body. */
export async function call(raw: Raw, path: string, args: unknown[], want: number, headers?: Record<string, string>): Promise<Buffer> {
  const res = await raw.request(path, { args }, headers);
  if (res.status !== want) throw new Error(`${path}: status ${res.status}: ${res.body.toString().slice(0, 300)}`);
  return res.body;
}

/**
 * Waits until the agent has run every async call submitted (they run after their 202, on
 * the same machine): the next measurement must not share the CPU with this one's backlog.
 */
export async function backlogRun(raw: Raw): Promise<void> {
  const until = performance.now() + 300_000;
  while (performance.now() < until) {
    const left = await Promise.all(
      ['queued', 'running'].map(
        async (status) => (decoder.decode((await raw.request(`/v1/calls?status=${status}&limit=1`, undefined, { accept: 'application/cbor' }, 'GET')).body) as { calls: unknown[] }).calls.length,
      ),
    );
    if (left.every((n) => n === 0)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the async backlog did not run within 300 s');
}

/** Completions per second of `one` with CONCURRENCY in flight until n have completed. */
export async function rate(n: number, one: () => Promise<unknown>): Promise<number> {
  let issued = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (issued < n) {
        issued++;
        await one();
      }
    }),
  );
  return n / ((performance.now() - t) / 1000);
}
