/**
 * Proves a newly discovered peer's identity before anyone sends it work: one TLS handshake
 * to its advertised endpoint, with this agent's own certificate, checking that the server
 * presents the advertised certificate (SHA-256) and SPIFFE ID. No request is sent.
 */
import { connect, createSecureContext, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { parseHostPort } from '../config/load.ts';
import { pinMismatch, type Pin } from '../pki/pin.ts';
import { isTlsFailure } from '../pki/tls-refusal.ts';

export interface TlsCredentials {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
}

/**
 * What one handshake showed: the advertised identity; another one (the endpoint answered with
 * another certificate, or one the fleet CA did not sign) — an impostor or a misconfiguration;
 * or nothing, because the endpoint could not be reached at all (down, restarting, filtered)
 * or did not finish the handshake in time (overloaded), which says nothing about who is there.
 */
export type IdentityCheck = { outcome: 'proved' } | { outcome: 'mismatch' | 'unreachable'; reason: string };

/**
 * One TLS context per set of credentials (they change only when the agent's certificate is
 * rotated, which brings a new object): building the context — parsing the key, the chain and
 * the CA — for every check left native memory behind with each of thousands of first checks.
 */
const contexts = new WeakMap<TlsCredentials, SecureContext>();
function contextOf(creds: TlsCredentials): SecureContext {
  let ctx = contexts.get(creds);
  if (ctx === undefined) contexts.set(creds, (ctx = createSecureContext({ cert: creds.cert, key: creds.key, ca: creds.ca })));
  return ctx;
}

/**
 * One TLS handshake to `endpoint`: does it present `expected`? No request is sent. `expected`
 * is a pin (an advertised identity), or a rule for a peer that advertised none (a DNS record):
 * it gets the certificate the fleet CA verified and answers why it is refused, or undefined.
 */
export function checkPeerIdentity(endpoint: string, expected: Pin | ((cert: PeerCertificate) => string | undefined), creds: TlsCredentials, timeoutMs = 3000): Promise<IdentityCheck> {
  const { host, port } = parseHostPort(endpoint);
  return new Promise((resolve) => {
    let done = false;
    let connected = false;
    const finish = (reason: string | undefined, socket?: TLSSocket, unreachable = false) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve(reason === undefined ? { outcome: 'proved' } : { outcome: unreachable ? 'unreachable' : 'mismatch', reason });
    };
    const socket = connect(
      {
        host,
        port,
        // The agent's own certificate, presented when the peer asks for one (agents do), and
        // the fleet CA the peer's chain is verified against.
        secureContext: contextOf(creds),
        ALPNProtocols: ['h2'],
        ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
        // The chain is still verified against the fleet CA; the host-name check is replaced by
        // the stricter pin below (this exact certificate and SPIFFE ID).
        checkServerIdentity: () => undefined,
      },
      () => {
        const cert = socket.getPeerCertificate();
        const mismatch = typeof expected === 'function' ? expected(cert) : pinMismatch(cert, expected);
        finish(mismatch ? `${endpoint} ${mismatch}` : undefined, socket);
      },
    );
    // Reached but refused in TLS (an unknown CA, a bad certificate) is a mismatch; no TCP
    // connection at all, or one dropped before TLS said anything, is unreachable.
    socket.once('connect', () => (connected = true));
    socket.on('error', (err: Error) => finish(`${endpoint}: ${err.message}`, socket, !connected || !isTlsFailure(err)));
    // A handshake that does not finish proves nothing either way: an agent too busy to answer
    // in time is no impostor (it used to be cooled down for 5 minutes as one).
    const timer = setTimeout(() => finish(`${endpoint}: no TLS handshake within ${timeoutMs} ms`, socket, true), timeoutMs);
    timer.unref?.();
  });
}
