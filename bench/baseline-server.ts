/**
 * The raw baseline: a bare node:http2 + mTLS server under Bun that answers a dispatch-shaped
 * CBOR request with its first argument, with no routing, no Python and no pool. Driven by the
 * same client as the agent, it shows what the transport alone costs in the same run.
 * A request with `accept: application/cbor-seq` is answered like a streamed call instead:
 * args [n, size] → n frames {item: <size bytes>} and a done frame, written with back-pressure
 * (the transport's share of the calls bench, bench/calls.ts).
 * Usage: bun bench/baseline-server.ts CERT KEY CA [--one-way] → prints the port, serves until
 * SIGTERM. `--one-way`: no client certificate asked for (the h2load comparison: h2load has none).
 */
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { Decoder, Encoder } from 'cbor-x';

const [cert, key, ca, mode] = process.argv.slice(2);
const mutual = mode !== '--one-way';
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true });
const server = http2.createSecureServer({
  cert: readFileSync(cert!),
  key: readFileSync(key!),
  ca: readFileSync(ca!),
  requestCert: mutual,
  rejectUnauthorized: mutual,
  allowHTTP1: false,
  minVersion: 'TLSv1.3',
});
server.on('stream', (stream, headers) => {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => {
    const body = decoder.decode(Buffer.concat(chunks)) as { args?: unknown[] };
    if (headers.accept === 'application/cbor-seq') return streamItems(stream, body.args as [number, number]);
    stream.respond({ ':status': 200, 'content-type': 'application/cbor', 'x-request-id': 'baseline' });
    stream.end(encoder.encode({ result: body.args?.[0] ?? null }));
  });
});
function streamItems(stream: http2.ServerHttp2Stream, [n, size]: [number, number]): void {
  stream.respond({ ':status': 200, 'content-type': 'application/cbor-seq', 'x-request-id': 'baseline' });
  const frame = encoder.encode({ item: new Uint8Array(size).fill(120) });
  let sent = 0;
  const pump = () => {
    while (sent < n) {
      sent++;
      if (!stream.write(frame)) return void stream.once('drain', pump);
    }
    stream.end(encoder.encode({ done: true, items: n }));
  };
  pump();
}

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
