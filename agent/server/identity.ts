/**
 * Peer identity from the client certificate: the SPIFFE ID in the URI SAN, else the subject
 * CN. Read once per HTTP/2 session (one TLS handshake) and cached, not once per request.
 */
import type { Http2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { spiffeIdFromSan } from '../pki/describe.ts';

export interface PeerIdentity {
  /** spiffe://… when the certificate has one, else "cn:<subject CN>", else "anonymous". */
  id: string;
  spiffeId?: string;
  subjectCN?: string;
  /** SHA-256 fingerprint of the peer certificate (colon-separated hex, as node reports it). */
  fingerprint?: string;
  /** Set when a certificate was presented but did not verify (possible only with tls.clientCerts "optional"). */
  certificateError?: string;
}

const cache = new WeakMap<object, PeerIdentity>();
export const ANONYMOUS: PeerIdentity = { id: 'anonymous' };

export function identityOfSession(session: Http2Session | undefined): PeerIdentity {
  if (!session) return ANONYMOUS;
  let identity = cache.get(session);
  if (!identity) {
    identity = identityOfSocket(session.socket as TLSSocket | undefined);
    cache.set(session, identity);
  }
  return identity;
}

export function identityOfSocket(socket: TLSSocket | undefined): PeerIdentity {
  const cert = socket?.getPeerCertificate?.();
  if (!cert || Object.keys(cert).length === 0) return ANONYMOUS;
  // With optional client certificates the handshake accepts any certificate; an unverified
  // one identifies no one and is refused by the auth pipeline.
  if (socket && !socket.authorized) return { id: 'anonymous', certificateError: String(socket.authorizationError ?? 'not verified') };
  const spiffeId = spiffeIdFromSan(cert.subjectaltname);
  const cn = cert.subject?.CN;
  const subjectCN = Array.isArray(cn) ? cn[0] : cn;
  return {
    id: spiffeId ?? (subjectCN ? `cn:${subjectCN}` : 'anonymous'),
    ...(spiffeId ? { spiffeId } : {}),
    ...(subjectCN ? { subjectCN } : {}),
    ...(cert.fingerprint256 ? { fingerprint: cert.fingerprint256 } : {}),
  };
}
