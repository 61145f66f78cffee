/**
 * The HTTP/2 + mutual TLS listener. Client certificates are required and verified against
 * the configured CA during the handshake (`requestCert` + `rejectUnauthorized`), so no
 * request from an unauthenticated peer ever reaches a route. HTTP/1 is refused.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createAdaptorServer } from '@hono/node-server';
import type { Hono } from 'hono';
import type { Logger } from '../log/index.ts';
import { identityOfSession } from './identity.ts';

export interface TlsMaterial {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
  minVersion: 'TLSv1.3' | 'TLSv1.2';
  /** require: mutual TLS; optional: callers without a certificate authenticate with a token. */
  clientCerts: 'require' | 'optional';
}

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

export interface Listener {
  address: { host: string; port: number };
  /** Stops accepting new connections; open sessions keep working until destroy(). */
  stopAccepting(): void;
  /** Resolves once every open stream has finished, or after `ms`. */
  idle(ms: number): Promise<void>;
  /**
   * Sends GOAWAY on every session, then destroys what is left. Called only once in-flight
   * calls have finished: undici fails in-flight streams on GOAWAY instead of letting streams
   * below the last-stream-id complete, so GOAWAY must not be sent while calls are running.
   */
  destroy(): void;
}

export async function listen(app: Hono<any>, tls: TlsMaterial, host: string, port: number, log: Logger): Promise<Listener> {
  const server = createAdaptorServer({
    fetch: app.fetch,
    createServer: http2.createSecureServer,
    serverOptions: {
      cert: tls.cert,
      key: tls.key,
      ca: tls.ca,
      requestCert: true,
      // "optional" lets the handshake finish without (or with an unverifiable) certificate;
      // identity.ts then marks the peer anonymous and the auth pipeline demands a token.
      rejectUnauthorized: tls.clientCerts === 'require',
      allowHTTP1: false,
      minVersion: tls.minVersion,
      ...(tls.minVersion === 'TLSv1.2' ? { ciphers: TLS12_CIPHERS } : {}),
      settings: { maxConcurrentStreams: 256 },
    },
  }) as http2.Http2SecureServer;

  const sessions = new Set<http2.ServerHttp2Session>();
  let openStreams = 0;
  let onIdle: (() => void) | undefined;

  let refusing = false;
  server.on('session', (session: http2.ServerHttp2Session) => {
    if (refusing) return session.destroy();
    sessions.add(session);
    const peer = identityOfSession(session);
    const remote = (session.socket as TLSSocket | undefined)?.remoteAddress;
    log.info('peer connected', { peer: peer.id, remote, tls: (session.socket as TLSSocket | undefined)?.getProtocol?.() });
    session.on('close', () => sessions.delete(session));
    session.on('error', (err) => log.debug('session error', { peer: peer.id, error: err.message }));
  });
  server.on('stream', (stream: http2.ServerHttp2Stream) => {
    openStreams++;
    stream.once('close', () => {
      openStreams--;
      if (openStreams === 0) onIdle?.();
    });
  });
  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    // Handshake refusals (no client certificate, unknown CA) are expected noise from
    // scanners, so debug level; the client sees the TLS alert.
    log.debug('TLS handshake refused', { remote: socket.remoteAddress, error: err.code ?? err.message });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;

  return {
    address: { host: addr.address, port: addr.port },
    stopAccepting() {
      // Not server.close(): under Bun it also sends GOAWAY on open sessions, which fails
      // their in-flight calls in undici. New connections are dropped instead, and the
      // listening socket is closed in destroy().
      refusing = true;
    },
    idle(ms) {
      if (openStreams === 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        onIdle = resolve;
        setTimeout(resolve, ms).unref?.();
      });
    },
    destroy() {
      server.close();
      for (const s of sessions) {
        if (!s.closed) s.close();
        s.destroy();
      }
    },
  };
}
