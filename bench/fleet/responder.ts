/**
 * The simulated agents' side of the identity check (agent/discovery/identity-check.ts): a real
 * agent dials each new peer's advertised endpoint and pins the certificate presented there.
 * One TCP listener per port on every address of the sender namespace; each connection is
 * answered with the certificate of the simulated agent that advertised that address:port (the
 * identity check dials an IP, so there is no SNI to choose by), through a TLS handshake that
 * proves exactly what a real agent's would. Nothing is served after the handshake: the agent
 * sends no request, and closes. Counts, per dialer, what a storm of checks looks like from the
 * peers' side (whether each check passed is in the dialer's own log).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import type { ResponderStats, SimAgentSpec } from './spec.ts';

/** A check that never completes is cut off here (the agent gives up after 3 s anyway). */
const IDLE_MS = 10_000;

export interface Responder {
  /** Counts of connections from `from` (all zero when it never dialled). */
  stats(from: string): ResponderStats;
  close(): Promise<void>;
}

interface Dialer extends ResponderStats {
  open: number;
  second: number;
  inSecond: number;
}

export async function startResponder(agents: SimAgentSpec[], tlsKey: string): Promise<Responder> {
  const owners = new Map<string, SimAgentSpec>(agents.map((a) => [`${a.endpoint.address}:${a.endpoint.port}`, a]));
  const contexts = new Map<string, SecureContext>();
  const dialers = new Map<string, Dialer>();
  const fresh = (): Dialer => ({ connections: 0, peakConcurrent: 0, peakPerSecond: 0, unknownEndpoint: 0, firstAt: 0, lastAt: 0, firstMinute: 0, open: 0, second: 0, inSecond: 0 });

  const onConnection = (socket: Socket) => {
    const now = Date.now();
    const from = (socket.remoteAddress ?? '?').replace(/^::ffff:/, '');
    let d = dialers.get(from);
    if (!d) dialers.set(from, (d = fresh()));
    const dialer = d;
    dialer.connections++;
    dialer.lastAt = now;
    if (dialer.firstAt === 0) dialer.firstAt = now;
    if (now - dialer.firstAt <= 60_000) dialer.firstMinute++;
    dialer.peakConcurrent = Math.max(dialer.peakConcurrent, ++dialer.open);
    if (Math.floor(now / 1000) !== dialer.second) {
      dialer.second = Math.floor(now / 1000);
      dialer.inSecond = 0;
    }
    dialer.peakPerSecond = Math.max(dialer.peakPerSecond, ++dialer.inSecond);
    socket.once('close', () => dialer.open--);
    socket.on('error', () => undefined);
    socket.setTimeout(IDLE_MS, () => socket.destroy());
    const key = `${(socket.localAddress ?? '').replace(/^::ffff:/, '')}:${socket.localPort}`;
    const owner = owners.get(key);
    if (!owner) {
      dialer.unknownEndpoint++;
      socket.destroy();
      return;
    }
    let context = contexts.get(key);
    if (!context) {
      // Made on first use: 5,000 contexts up front would cost seconds and memory for nothing.
      context = createSecureContext({ cert: owner.cert, key: tlsKey });
      contexts.set(key, context);
    }
    // The dialer closes right after its handshake: that "error" is the normal end here.
    new TLSSocket(socket, { isServer: true, secureContext: context, ALPNProtocols: ['h2'] }).on('error', () => undefined);
  };

  const servers: Server[] = [];
  for (const port of new Set(agents.map((a) => a.endpoint.port))) {
    const server = createServer(onConnection);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: '0.0.0.0', backlog: 4096 }, () => resolve());
    });
    servers.push(server);
  }
  return {
    stats: (from) => {
      const { open: _o, second: _s, inSecond: _i, ...s } = dialers.get(from) ?? fresh();
      return s;
    },
    close: async () => {
      await Promise.all(servers.map((srv) => new Promise<void>((r) => srv.close(() => r()))));
    },
  };
}
