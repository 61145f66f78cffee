/**
 * The HTTP/2 + mutual TLS listener. Client certificates are required and verified against
 * the configured CA during the handshake (`requestCert` + `rejectUnauthorized`), so no
 * request from an unauthenticated peer ever reaches a route. HTTP/1 is refused.
 *
 * With `tls.plaintext` (and only then) it serves h2c instead: plaintext HTTP/2 with prior
 * knowledge, for a TLS-terminating proxy in front. No session has a certificate, so every
 * caller is anonymous and the auth pipeline demands a token. The same hardening applies.
 *
 * Requests arrive on the server's `stream` event, not `request`: each new stream is counted
 * and guarded here (stall and reset limits), then offered to the app's stream route (the
 * dispatch hot path, served on the stream itself: server/dispatch.ts); any stream it does not
 * take gets the compat request/response objects built here, as node:http2 would build them
 * for a `request` listener, and goes to hono through @hono/node-server. The server is created
 * without a request handler, so node:http2 builds no compat objects of its own. Either way, a
 * request answered while more of its body was coming puts its connection under watch
 * (`answeredEarly`): closed with GOAWAY once quiet, for clients that wait to send the rest.
 */
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { getRequestListener } from '@hono/node-server';
import type { Logger } from '../log/index.ts';
import type { Http2Config } from '../config/schema.ts';
import type { TlsMaterial } from '../pki/tls.ts';
import type { IdentityReader } from './identity.ts';
import type { TlsFailureRecorder } from '../metrics/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import { tlsFailureReason, type TlsFailureReason } from '../pki/tls-refusal.ts';

export type Hardening = Http2Config;

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, HTTP_STATUS_METHOD_NOT_ALLOWED, HTTP_STATUS_EXPECTATION_FAILED } = http2.constants;

/**
 * A route served on the HTTP/2 stream itself: returns true when it took the stream (and
 * answers it), false to let the compat layer and hono have it. A route that answers before
 * the request body ended (a refusal, a 413) calls `answeredEarly(stream)` once it answered.
 */
export type StreamRoute = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  answeredEarly: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
) => boolean;

/** What the listener serves: hono's fetch for every request, and optionally a route served on the stream first. */
export interface Servable {
  fetch: Parameters<typeof getRequestListener>[0];
  streamRoute?: StreamRoute;
}
/** At most one "TLS handshake refused" line per reason this often. */
const TLS_LOG_EVERY_MS = 10_000;

// When TLS 1.2 is enabled at all, only forward-secret AEAD suites (TLS 1.3 suites are
// configured separately by OpenSSL/BoringSSL and are all AEAD).
const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * The listener's lifecycle (agent/lifecycle): `stopAccepting()` is the first step of a drain
 * (new connections are dropped, open sessions keep working); `close()` stops accepting, waits
 * for open streams to finish (at most closeWaitMs), then sends GOAWAY on every session and
 * closes what is left; `destroy()` does the last part at once. GOAWAY waits for the streams:
 * undici fails in-flight streams on GOAWAY instead of letting streams below the
 * last-stream-id complete, so it must not be sent while calls are running.
 */
export interface Listener extends Component {
  address: { host: string; port: number };
  /** Stops accepting new connections; open sessions keep working until close() or destroy(). */
  stopAccepting(): void;
  /**
   * Serves new handshakes with new material (certificate, key, CA, TLS version); sessions
   * already open keep the material they were established with. Throws when OpenSSL refuses it.
   */
  setTls(tls: TlsMaterial): void;
}

/** Counts events in fixed one-second windows; `hit()` is true once the count passes `max`. */
function rateCounter(max: number): { hit(): boolean } {
  let windowStart = 0;
  let count = 0;
  return {
    hit() {
      const now = Date.now();
      if (now - windowStart >= 1000) {
        windowStart = now;
        count = 0;
      }
      return ++count > max;
    },
  };
}

/** The secure-context part of the server options: what setTls() may replace later. */
function contextOptions(tls: TlsMaterial) {
  return {
    cert: tls.cert,
    key: tls.key,
    ca: tls.ca,
    minVersion: tls.minVersion,
    ...(tls.minVersion === 'TLSv1.2' ? { ciphers: TLS12_CIPHERS } : {}),
  };
}

export interface ListenOptions {
  /** Serve h2c (tls.plaintext): the TLS material is not used by the listener. */
  plaintext?: boolean;
  /** The app's identity reader: setTls() hands it the new trust domains. */
  identities: IdentityReader;
  /** Counts refused handshakes by reason. */
  tlsFailures?: TlsFailureRecorder;
  /** How long close() waits for open streams to finish before it closes their sessions (default 2 s). */
  closeWaitMs?: number;
}

/** How long destroy() waits for the listening socket to close. */
const SOCKET_CLOSE_WAIT_MS = 1000;

/**
 * How long a connection that had a request answered before its body ended may stay without a
 * new stream before it is closed with GOAWAY (see `answeredEarly` in listen()).
 */
export const EARLY_ANSWER_QUIET_MS = 1000;

/** SETTINGS_INITIAL_WINDOW_SIZE as the listener leaves it (RFC 9113 §6.5.2 default): what a client may send on a stream unread. */
const INITIAL_WINDOW_BYTES = 65_535;

/** Per connection: streams open now, streams opened so far, and the quiet watch (answeredEarly). */
interface SessionCounts {
  open: number;
  opened: number;
  quiet?: ReturnType<typeof setTimeout>;
}

export async function listen(app: Servable, tls: TlsMaterial, host: string, port: number, log: Logger, limits: Hardening, opts: ListenOptions): Promise<Listener> {
  const { identities } = opts;
  const plaintext = opts.plaintext === true;
  const settings = { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderListBytes };
  // h2c only when asked for; HTTP/1 is refused either way (a plaintext HTTP/1 request gets a
  // GOAWAY, not a response). Typed as the secure server: setTls() is the only TLS-only call.
  // No request handler: see the module comment.
  const server = plaintext
    ? (http2.createServer({ settings }) as unknown as http2.Http2SecureServer)
    : http2.createSecureServer({
        ...contextOptions(tls),
        requestCert: true,
        // "optional" lets the handshake finish without (or with an unverifiable) certificate;
        // identity.ts then marks the peer anonymous and the auth pipeline demands a token.
        rejectUnauthorized: tls.clientCerts === 'require',
        allowHTTP1: false,
        settings,
        // Honoured by Bun's node:http2 (checked by test/e2e/hardening.test.ts): a socket that
        // has not finished the handshake in time is destroyed (tlsClientError ERR_TLS_HANDSHAKE_TIMEOUT).
        handshakeTimeout: limits.handshakeTimeoutMs,
      });
  const toHono = getRequestListener(app.fetch);
  const streamRoute = app.streamRoute;

  const sessions = new Set<http2.ServerHttp2Session>();
  let openStreams = 0;
  let onIdle: (() => void) | undefined;

  let refusing = false;
  // Connection caps, counted on the raw socket before the TLS handshake so a refused
  // connection costs no handshake. Bun does not enforce server.maxConnections for http2.
  const perIp = new Map<string, number>();
  let connections = 0;
  server.on('connection', (socket: Socket) => {
    const ip = socket.remoteAddress ?? '?';
    const n = perIp.get(ip) ?? 0;
    if (refusing || n >= limits.maxConnectionsPerIp || connections >= limits.maxConnections) {
      log.warn('connection refused', { remote: ip, reason: refusing ? 'draining' : n >= limits.maxConnectionsPerIp ? 'http2.maxConnectionsPerIp' : 'http2.maxConnections' });
      socket.destroy();
      return;
    }
    perIp.set(ip, n + 1);
    connections++;
    socket.once('close', () => {
      connections--;
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left <= 0) perIp.delete(ip);
      else perIp.set(ip, left);
    });
  });

  const calm = (session: http2.ServerHttp2Session, peer: string, reason: string) => {
    if (session.destroyed) return;
    log.warn('session closed: flood', { peer, remote: session.socket?.remoteAddress, reason });
    try {
      session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    } catch {
      // already closing
    }
    session.destroy();
  };

  const countsOf = new WeakMap<http2.ServerHttp2Session, SessionCounts>();
  server.on('session', (session: http2.ServerHttp2Session) => {
    if (refusing) return session.destroy();
    sessions.add(session);
    countsOf.set(session, { open: 0, opened: 0 });
    const peer = identities.ofSession(session);
    const remote = (session.socket as TLSSocket | undefined)?.remoteAddress;
    log.info('peer connected', {
      peer: peer.id,
      remote,
      tls: plaintext ? 'none (h2c)' : (session.socket as TLSSocket | undefined)?.getProtocol?.(),
      ...(peer.refused ? { refused: peer.refused.reason } : {}),
    });
    session.on('close', () => sessions.delete(session));
    session.on('error', (err) => log.debug('session error', { peer: peer.id, error: err.message }));
    // PING and SETTINGS floods: both events fire under Bun, so count them here.
    const control = rateCounter(limits.maxControlFramesPerSecond);
    session.on('ping', () => control.hit() && calm(session, peer.id, 'http2.maxControlFramesPerSecond (PING)'));
    session.on('remoteSettings', () => control.hit() && calm(session, peer.id, 'http2.maxControlFramesPerSecond (SETTINGS)'));
    if (limits.idleTimeoutMs > 0) {
      const onIdleSession = () => {
        if (session.destroyed || session.closed) return;
        // A long call is not idle: re-arm while streams are open.
        if ((countsOf.get(session)?.open ?? 0) > 0) return session.setTimeout(limits.idleTimeoutMs, onIdleSession);
        log.debug('session idle: closing', { peer: peer.id, remote });
        session.close();
        setTimeout(() => session.destroy(), 1000).unref?.();
      };
      session.setTimeout(limits.idleTimeoutMs, onIdleSession);
    }
  });
  /**
   * A request answered before its body ended (a refusal before the body is read, a 413 past
   * what is read and dropped): after the answer the stream is reset with NO_ERROR, which RFC
   * 9113 §8.1 lets a server do and tells the client to stop sending and keep the answer. A
   * client that reads nothing before its whole body is sent (Python's httpx/httpcore) ignores
   * that and waits for flow-control credit for the rest, which never comes. So the connection
   * is watched: once it has gone EARLY_ANSWER_QUIET_MS without a new stream and with none open,
   * it is closed with GOAWAY(NO_ERROR). Such a client then fails at once (httpx:
   * RemoteProtocolError, ConnectionTerminated) instead of hanging; a client still using the
   * connection keeps it; one that went quiet opens a new connection for its next request. No
   * byte more of the body is read.
   */
  const answeredEarly = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    // Only a client that can be left waiting for credit: no END_STREAM from it yet
    // (remoteClose), and more body to come than one flow-control window holds — declared so,
    // or being read when the answer went (a 413). A body that fits the window is sent whole
    // whatever the answer, and a request whose END_STREAM is merely still in flight (node:http2
    // sends it in its own empty DATA frame) is not stuck.
    if (stream.state?.remoteClose !== 0 || !(Number(headers['content-length']) > INITIAL_WINDOW_BYTES || stream.readableFlowing === true)) return;
    const session = stream.session as http2.ServerHttp2Session | undefined;
    const counts = session && countsOf.get(session);
    if (!session || !counts || counts.quiet) return;
    const watch = (seen: number) => {
      counts.quiet = setTimeout(() => {
        if (session.closed || session.destroyed) return;
        if (counts.opened !== seen || counts.open > 0) return watch(counts.opened);
        log.info('session closed: a request was answered before its body ended and the client went quiet', { peer: identities.ofSession(session).id, remote: session.socket?.remoteAddress });
        session.close();
        setTimeout(() => session.destroy(), 1000).unref?.();
      }, EARLY_ANSWER_QUIET_MS);
      counts.quiet.unref?.();
    };
    watch(counts.opened);
  };

  const resetsOf = new WeakMap<http2.ServerHttp2Session, { hit(): boolean }>();
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    openStreams++;
    const session = stream.session as http2.ServerHttp2Session | undefined;
    const counts = session && countsOf.get(session);
    if (counts) {
      counts.open++;
      counts.opened++;
    }
    // Without a listener, a stream error (e.g. the session being torn down under it) is an
    // uncaught exception under Bun and takes the agent down.
    stream.on('error', (err) => log.debug('stream error', { error: err.message }));
    // Slow read: under Bun neither writableNeedDrain (false once the response is ended) nor
    // writableLength (stays at the body size until the stream finishes) moves as a response
    // drains, so progress is measured on the connection: a stream with output pending while
    // not one byte went out on its socket for writeStallTimeoutMs is reset.
    let stalledSince = 0;
    let lastSent = -1;
    const stall =
      limits.writeStallTimeoutMs > 0
        ? setInterval(
            () => {
              if (stream.destroyed) return;
              const sent = session?.socket?.bytesWritten ?? 0;
              const progressed = sent !== lastSent;
              lastSent = sent;
              if (stream.writableLength > 0 && !stream.writableFinished && !progressed) {
                stalledSince ||= Date.now();
                if (Date.now() - stalledSince >= limits.writeStallTimeoutMs) {
                  log.warn('stream reset: client not reading', { remote: session?.socket?.remoteAddress, buffered: stream.writableLength });
                  stream.close(NGHTTP2_CANCEL);
                }
              } else stalledSince = 0;
            },
            Math.max(50, Math.min(1000, limits.writeStallTimeoutMs / 4)),
          )
        : undefined;
    stall?.unref?.();
    stream.once('close', () => {
      if (stall) clearInterval(stall);
      openStreams--;
      if (counts) counts.open = Math.max(0, counts.open - 1);
      if (openStreams === 0) onIdle?.();
      // Rapid reset (CVE-2023-44487): streams that ended in RST_STREAM rather than a clean
      // end. Under Bun, writableFinished is already true after a client reset, so the reset
      // code is what tells a cancelled stream from a completed one.
      if (session && stream.rstCode !== 0) {
        let counter = resetsOf.get(session);
        if (!counter) resetsOf.set(session, (counter = rateCounter(limits.maxResetsPerSecond)));
        if (counter.hit()) calm(session, identities.ofSession(session).id, 'http2.maxResetsPerSecond');
      }
    });
    if (streamRoute?.(stream, headers, answeredEarly)) return;
    // What node:http2 does for a `request` listener (onServerStream in Node and Bun): the
    // compat pair, CONNECT refused, `expect` answered, then the request to hono.
    const req = new http2.Http2ServerRequest(stream, headers, {}, rawHeaders);
    const res = new http2.Http2ServerResponse(stream);
    // The adapter resets a stream it answered before the body ended, as the stream route does.
    stream.once('finish', () => answeredEarly(stream, headers));
    if (headers[':method'] === 'CONNECT') {
      res.statusCode = HTTP_STATUS_METHOD_NOT_ALLOWED;
      return void res.end();
    }
    if (headers.expect !== undefined) {
      if (headers.expect !== '100-continue') {
        res.statusCode = HTTP_STATUS_EXPECTATION_FAILED;
        return void res.end();
      }
      res.writeContinue();
    }
    void toHono(req, res);
  });
  // A refused handshake is counted by reason and logged at info (operators need to see why
  // a client cannot connect), at most once per reason every TLS_LOG_EVERY_MS: a scanner must
  // not flood the log. `suppressed` says how many were not logged since the previous line.
  // No alert reaches the client in most cases (docs/threat-model.md, "Refused client
  // certificates"): this line and the metric are where the reason is.
  const lastLogged = new Map<TlsFailureReason, { at: number; suppressed: number }>();
  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    const reason = tlsFailureReason(err);
    opts.tlsFailures?.tlsHandshakeFailed(reason);
    const now = Date.now();
    const last = lastLogged.get(reason);
    if (last && now - last.at < TLS_LOG_EVERY_MS) {
      last.suppressed++;
      return;
    }
    lastLogged.set(reason, { at: now, suppressed: 0 });
    log.info('TLS handshake refused', { remote: socket?.remoteAddress, reason, error: err.code ?? err.message, suppressed: last?.suppressed ?? 0 });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;

  const idle = (ms: number) => {
    if (openStreams === 0) return Promise.resolve();
    let timer: ReturnType<typeof setTimeout> | undefined;
    return new Promise<void>((resolve) => {
      onIdle = resolve;
      timer = setTimeout(resolve, ms);
    }).finally(() => clearTimeout(timer));
  };
  // Not server.close() to stop accepting: under Bun it also sends GOAWAY on open sessions,
  // which fails their in-flight calls in undici. New connections are dropped instead, and
  // the listening socket is closed last.
  const stopAccepting = () => {
    refusing = true;
  };
  const shutdown = async () => {
    stopAccepting();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sessions) {
      if (!s.closed) s.close();
      s.destroy();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, SOCKET_CLOSE_WAIT_MS)))]);
    clearTimeout(timer);
  };
  const life = new Lifecycle({
    drain: async () => {
      stopAccepting();
      await idle(opts.closeWaitMs ?? 2000);
      await shutdown();
    },
    abort: shutdown,
  });

  return {
    address: { host: addr.address, port: addr.port },
    stopAccepting,
    close: () => life.close(),
    destroy: (reason) => life.destroy(reason),
    setTls(next) {
      if (plaintext) return; // h2c has no secure context to replace
      // requestCert/rejectUnauthorized are server options, not context ones: they stay as
      // started (tls.clientCerts changes need a restart). Checked under Bun by test/e2e/rotation.test.ts.
      server.setSecureContext(contextOptions(next));
      identities.setTrustDomains(next.trustDomains);
    },
  };
}
