/**
 * Proves a newly discovered peer's identity before anyone sends it work: one TLS handshake
 * to its advertised endpoint, with this agent's own certificate, checking that the server
 * presents the advertised certificate (SHA-256) and SPIFFE ID. No request is sent.
 */
import { connect, type TLSSocket } from 'node:tls';
import { spiffeIdFromSan } from '../server/identity.ts';

export interface TlsCredentials {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
}

/** Resolves undefined when the identity matches, else a reason naming what was presented. */
export function checkPeerIdentity(endpoint: string, expected: { spiffe: string; sha256: string }, creds: TlsCredentials, timeoutMs = 3000): Promise<string | undefined> {
  const i = endpoint.lastIndexOf(':');
  const host = endpoint.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(endpoint.slice(i + 1));
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
      const cert = socket.getPeerCertificate();
      const sha256 = String(cert?.fingerprint256 ?? '').replaceAll(':', '').toLowerCase();
      const spiffe = spiffeIdFromSan(cert?.subjectaltname);
      if (sha256 === expected.sha256 && spiffe === expected.spiffe) finish(undefined, socket);
      else finish(`${endpoint} presented ${spiffe ?? 'no SPIFFE ID'} (sha256 ${sha256.slice(0, 16)}…), not the advertised ${expected.spiffe} (${expected.sha256.slice(0, 16)}…)`, socket);
      },
    );
    socket.on('error', (err: Error) => finish(`${endpoint}: ${err.message}`, socket));
    const timer = setTimeout(() => finish(`${endpoint}: no TLS handshake within ${timeoutMs} ms`, socket), timeoutMs);
    timer.unref?.();
  });
}
