// The attacker's server, run by Node inside the attacker namespace: an HTTP/2 + TLS listener
// (the certificate it is given) that records every TCP connection, TLS handshake, HTTP/2
// session and request stream it sees, so the test can prove it never received a dispatch.
// One JSON argument: { host, port, cert, key } (cert/key are file paths).
// stdout JSON lines: ready, tcp, tls, session, stream (with the request headers), error.
// Exits when stdin closes (or on SIGTERM).
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';

const cfg = JSON.parse(process.argv[2] ?? '{}');
const out = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const server = http2.createSecureServer({
  cert: readFileSync(cfg.cert),
  key: readFileSync(cfg.key),
  allowHTTP1: true, // an HTTP/1.1 request would be counted too (as a stream)
  ALPNProtocols: ['h2', 'http/1.1'],
});
server.on('connection', (socket) => {
  out({ event: 'tcp', from: socket.remoteAddress });
  socket.on('close', () => out({ event: 'tcp-closed' }));
  socket.on('error', () => {});
});
server.on('secureConnection', (tls) => out({ event: 'tls', alpn: tls.alpnProtocol || null }));
server.on('tlsClientError', (err) => out({ event: 'tls-error', message: err.message }));
server.on('session', (session) => {
  out({ event: 'session' });
  session.on('error', () => {});
});
server.on('stream', (stream, headers) => {
  out({ event: 'stream', headers: { ':method': headers[':method'], ':path': headers[':path'] } });
  stream.on('error', () => {});
  stream.respond({ ':status': 500, 'content-type': 'application/json' });
  stream.end('{"error":"honeypot"}');
});
server.on('request', (req) => {
  if (req.httpVersion === '1.1') out({ event: 'stream', headers: { ':method': req.method, ':path': req.url }, http1: true });
});
server.on('error', (err) => {
  out({ event: 'error', message: err.message });
  process.exit(1);
});
server.listen(cfg.port, cfg.host, () => out({ event: 'ready', address: server.address() }));

const stop = () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
};
process.stdin.on('end', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
