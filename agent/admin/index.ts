/**
 * The admin listener: plain HTTP/1.1, separate from the dispatch listener, serving
 *
 *   GET /metrics   Prometheus text exposition
 *   GET /healthz   200 {status: "ok" | "draining", workers, idle, queued, inFlight, posture}
 *   GET /readyz    200 when workers are up and the agent is not draining, else 503
 *
 * Loopback by default. Off loopback the config requires admin.token (checked when the config
 * is loaded) and every request must then carry `Authorization: Bearer <token>`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log/index.ts';
import type { Posture } from '../security/posture.ts';
import type { AgentMetrics } from '../metrics/index.ts';

export interface AdminOptions {
  host: string;
  port: number;
  token?: string;
  metrics: AgentMetrics;
  stats: () => { workers: number; idle: number; queued: number; inFlight: number };
  isDraining: () => boolean;
  /** The dispatch listener's security posture (security/posture.ts), reported by /healthz. */
  posture?: () => Posture;
  log: Logger;
}

export interface AdminListener {
  address: { host: string; port: number };
  close(): Promise<void>;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export async function startAdmin(opts: AdminOptions): Promise<AdminListener> {
  const { metrics, stats, isDraining, log } = opts;
  // Compare digests: equal lengths for timingSafeEqual, and the token's length is not leaked.
  const expected = opts.token === undefined ? undefined : digest(`Bearer ${opts.token}`);

  const send = (res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...extra });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  };
  const json = (res: ServerResponse, status: number, value: unknown, extra?: Record<string, string>) => send(res, status, 'application/json', JSON.stringify(value), extra);

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (expected) {
      const given = req.headers.authorization;
      if (typeof given !== 'string' || !timingSafeEqual(digest(given), expected)) {
        return json(res, 401, { code: 'SKEIN_ERR_UNAUTHENTICATED', message: 'the admin endpoints need Authorization: Bearer <admin.token>' }, { 'www-authenticate': 'Bearer realm="skein-admin"' });
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { code: 'SKEIN_ERR_METHOD_NOT_ALLOWED', message: 'the admin endpoints accept GET and HEAD' }, { allow: 'GET, HEAD' });
    const path = (req.url ?? '/').split('?', 1)[0];
    switch (path) {
      case '/metrics':
        return send(res, 200, metrics.contentType, await metrics.text());
      case '/healthz': {
        const draining = isDraining();
        return json(res, 200, { status: draining ? 'draining' : 'ok', ...stats(), ...(opts.posture ? { posture: opts.posture() } : {}) });
      }
      case '/readyz': {
        const s = stats();
        const draining = isDraining();
        const ready = !draining && s.workers > 0;
        return json(res, ready ? 200 : 503, { status: ready ? 'ready' : draining ? 'draining' : 'no workers', ...s });
      }
      default:
        return json(res, 404, { code: 'SKEIN_ERR_NOT_FOUND', message: `no admin endpoint ${path}` });
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      log.error('admin request failed', { path: req.url, error: (err as Error).message });
      if (!res.headersSent) json(res, 500, { code: 'SKEIN_ERR_INTERNAL', message: 'internal error' });
      else res.destroy();
    });
  });
  // Small, slow-client-proof limits: the admin plane serves a handful of scrapers.
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;
  server.maxConnections = 64;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.warn('admin listener error', { error: err.message }));
  const a = server.address() as AddressInfo;
  const address = { host: a.address, port: a.port };

  let closing: Promise<void> | undefined;
  return {
    address,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
      return closing;
    },
  };
}
