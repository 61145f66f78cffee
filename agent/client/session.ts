/** Where a client connects (plaintext only when asked for) and the check of a pinned peer identity. */
import type http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { SkeinError } from '../../common/errors/index.ts';
import { pinMismatch, presentedIdentity, type Pin } from '../pki/pin.ts';

/** The origin to connect to; plaintext only when asked for, and never with a pin. */
export function originOf(opts: { peer: string; plaintext?: boolean; pin?: Pin }): string {
  const { peer } = opts;
  if (!opts.plaintext) {
    if (peer.startsWith('http://')) throw new SkeinError('SKEIN_ERR_USAGE', `peer ${peer} is plaintext http://: set plaintext (--plaintext) to send calls and tokens unencrypted`);
    return peer.startsWith('https://') ? peer : `https://${peer}`;
  }
  if (peer.startsWith('https://')) throw new SkeinError('SKEIN_ERR_USAGE', `peer ${peer} is https:// but plaintext was asked for`);
  if (opts.pin) throw new SkeinError('SKEIN_ERR_USAGE', 'a pinned peer identity needs TLS: plaintext cannot be combined with pin');
  return peer.startsWith('http://') ? peer : `http://${peer}`;
}

/** Resolves once the server certificate matches `pin`; otherwise destroys the session. */
export function pinCheck(session: http2.ClientHttp2Session, pin: Pin, peer: string, explain: (err: unknown) => SkeinError): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    session.once('connect', () => {
      const cert = (session.socket as TLSSocket).getPeerCertificate?.();
      const mismatch = pinMismatch(cert, pin);
      if (!mismatch) return resolve();
      const err = new SkeinError('SKEIN_ERR_PEER_IDENTITY', `peer ${peer} ${mismatch}; nothing was sent`, { sent: false, presented: presentedIdentity(cert), expected: pin });
      session.destroy(err);
      reject(err);
    });
    session.once('error', (err) => {
      const e = explain(err);
      e.details.sent = false;
      reject(e);
    });
    session.once('close', () => reject(new SkeinError('SKEIN_ERR_TRANSPORT', `connection to ${peer} closed before the handshake finished`, { sent: false })));
  });
}
