/**
 * Proves a newly discovered peer's identity before anyone sends it work: one TLS handshake
 * to its advertised endpoint, with this agent's own certificate, checking that the server
 * presents the advertised certificate (SHA-256) and SPIFFE ID. No request is sent.
 */
import { connect, type TLSSocket } from 'node:tls';
import { parseHostPort } from '../config/load.ts';
import { pinMismatch, type Pin } from '../pki/pin.ts';

export interface TlsCredentials {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
}

/** Resolves undefined when the identity matches, else a reason naming what was presented. */
export function checkPeerIdentity(endpoint: string, expected: Pin, creds: TlsCredentials, timeoutMs = 3000): Promise<string | undefined> {
  const { host, port } = parseHostPort(endpoint);
  return new Promise((resolve) => {
    let done = false;
    const finish = (reason: string | undefined, socket?: TLSSocket) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve(reason);
    };
    const socket = connect(
      {
        host,
        port,
        ...creds,
        ALPNProtocols: ['h2'],
        ...(/^[\d.]+$|:/.test(host) ? {} : { servername: host }),
        // The chain is still verified against the fleet CA; the host-name check is replaced by
        // the stricter pin below (this exact certificate and SPIFFE ID).
        checkServerIdentity: () => undefined,
      },
      () => {
        const mismatch = pinMismatch(socket.getPeerCertificate(), expected);
        finish(mismatch ? `${endpoint} ${mismatch}` : undefined, socket);
      },
    );
    socket.on('error', (err: Error) => finish(`${endpoint}: ${err.message}`, socket));
    const timer = setTimeout(() => finish(`${endpoint}: no TLS handshake within ${timeoutMs} ms`, socket), timeoutMs);
    timer.unref?.();
  });
}
