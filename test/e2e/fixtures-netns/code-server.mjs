// A routine-code host, run by Node inside a test namespace on the namespace's (public)
// address: HTTPS with the certificate it is given, serving
//   /examples.py    the code file
//   /redirect-away  a 302 to https://evil.example/examples.py (a host off any allow-list)
//   /huge.py        2 MiB of "#"
// One JSON argument: { host, port, cert, key, code } (cert/key/code are file paths).
// stdout JSON lines: ready, request. Exits when stdin closes (or on SIGTERM).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

const cfg = JSON.parse(process.argv[2] ?? '{}');
const out = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const code = readFileSync(cfg.code);

const server = createServer({ cert: readFileSync(cfg.cert), key: readFileSync(cfg.key) }, (req, res) => {
  out({ event: 'request', path: req.url, from: req.socket.remoteAddress });
  if (req.url === '/examples.py') return res.end(code);
  if (req.url === '/redirect-away') {
    res.writeHead(302, { location: 'https://evil.example/examples.py' });
    return res.end();
  }
  if (req.url === '/huge.py') return res.end('#'.repeat(2 * 1024 * 1024));
  res.writeHead(404).end();
});
server.on('error', (err) => {
  out({ event: 'error', message: err.message });
  process.exit(1);
});
server.listen(cfg.port, cfg.host, () => out({ event: 'ready', port: server.address().port }));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
