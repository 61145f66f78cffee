/**
 * The admin listener: plain HTTP/1.1, separate from the dispatch listener, serving
 *
 *   GET /metrics   Prometheus text exposition
 *   GET /healthz   200 {status: "ok" | "draining", workers, idle, queued, inFlight, posture}
 *   GET /readyz    200 when workers are up and the agent is not draining, else 503
 *
 * Loopback by default. Off loopback the config requires admin.token (checked when the config
 * is loaded) and every request must then carry `Authorization: Bearer <token>`.
 *
 * Errors are SkeinErrors answered as `{code, message}` with the status from the one errors
 * table (common/errors). Lifecycle (agent/lifecycle): close() stops accepting and lets
 * requests in progress finish (at most CLOSE_WAIT_MS), destroy() drops every connection.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log/index.ts';
import type { Posture } from '../security/posture.ts';
import type { AgentMetrics } from '../metrics/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';

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

export interface AdminListener extends Component {
  address: { host: string; port: number };
}

/** How long close() lets admin requests in progress finish (scrapes take milliseconds). */
const CLOSE_WAIT_MS = 1000;

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
  /** An error as the dispatch listener answers it: its code, message and table status. */
  const fail = (res: ServerResponse, err: SkeinError, extra?: Record<string, string>) => json(res, err.status, { code: err.code, message: err.message }, extra);

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (expected) {
      const given = req.headers.authorization;
      if (typeof given !== 'string' || !timingSafeEqual(digest(given), expected)) {
        return fail(res, new SkeinError('SKEIN_ERR_UNAUTHENTICATED', 'the admin endpoints need Authorization: Bearer <admin.token>'), { 'www-authenticate': 'Bearer realm="skein-admin"' });
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(res, new SkeinError('SKEIN_ERR_METHOD_NOT_ALLOWED', 'the admin endpoints accept GET and HEAD'), { allow: 'GET, HEAD' });
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
        return fail(res, new SkeinError('SKEIN_ERR_NOT_FOUND', `no admin endpoint ${path}`));
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      log.error('admin request failed', { path: req.url, error: (err as Error).message });
      // The cause is in the log line above; the caller learns only that it was internal.
      if (!res.headersSent) fail(res, new SkeinError('SKEIN_ERR_INTERNAL', 'internal error', {}, { cause: err }));
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

  const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  const within = async (ms: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
  };
  const stop = async (wait: number) => {
    server.close();
    server.closeIdleConnections?.();
    await within(wait);
    // Whatever is still open after the wait (a scraper that never finishes its request) is dropped.
    server.closeAllConnections?.();
    await within(CLOSE_WAIT_MS);
  };
  const life = new Lifecycle({ drain: () => stop(CLOSE_WAIT_MS), abort: () => stop(0) });
  return {
    address,
    close: () => life.close(),
    destroy: (reason) => life.destroy(reason),
  };
}
