/**
 * Peer identity from the client certificate: the SPIFFE ID in its one URI SAN, else the
 * subject CN. Read once per HTTP/2 session (one TLS handshake) and cached, not once per
 * request.
 *
 * A certificate the CA signed can still identify no one (X509-SVID §2, SPIFFE ID spec):
 *   MULTIPLE_URI_SANS        more than one URI SAN (taking the first would let one
 *                            certificate speak as several identities)
 *   INVALID_SPIFFE_ID        the URI SAN is not a valid SPIFFE ID (the message says why)
 *   UNTRUSTED_TRUST_DOMAIN   the SPIFFE ID is outside tls.trustDomains
 * Such a peer is marked `refused`; the auth pipeline answers every request of the session
 * with 401 and that reason (and an authn.decision deny line) before any plugin sees it.
 */
import type { Http2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { sanIdentity } from '../pki/describe.ts';

/** The 401 reasons an identity refusal carries (docs/api.md). */
export type IdentityRefusalReason = 'BAD_CLIENT_CERTIFICATE' | 'MULTIPLE_URI_SANS' | 'INVALID_SPIFFE_ID' | 'UNTRUSTED_TRUST_DOMAIN';

export interface PeerIdentity {
  /** spiffe://… when the certificate has one, else "cn:<subject CN>", else "anonymous". */
  id: string;
  spiffeId?: string;
  subjectCN?: string;
  /** SHA-256 fingerprint of the peer certificate (colon-separated hex, as node reports it). */
  fingerprint?: string;
  /**
   * Set when a certificate was presented but identifies no one: it did not verify (possible
   * only with tls.clientCerts "optional") or its URI SANs break the SPIFFE rules. `id` is
   * then "anonymous"; the auth pipeline refuses the request with this reason.
   */
  refused?: { reason: IdentityRefusalReason; message: string };
}

export const ANONYMOUS: PeerIdentity = { id: 'anonymous' };

/**
 * Reads and caches the identity of each session. The accepted trust domains can change on
 * a TLS reload; a session keeps the identity it was given at its handshake, as it keeps the
 * certificate and CA it was established with.
 */
export class IdentityReader {
  #cache = new WeakMap<object, PeerIdentity>();
  #trustDomains: ReadonlySet<string>;

  constructor(trustDomains: Iterable<string>) {
    this.#trustDomains = new Set(trustDomains);
  }

  setTrustDomains(trustDomains: Iterable<string>): void {
    this.#trustDomains = new Set(trustDomains);
  }

  ofSession(session: Http2Session | undefined): PeerIdentity {
    if (!session) return ANONYMOUS;
    let identity = this.#cache.get(session);
    if (!identity) {
      identity = identityOfSocket(session.socket as TLSSocket | undefined, this.#trustDomains);
      this.#cache.set(session, identity);
    }
    return identity;
  }
}

export function identityOfSocket(socket: TLSSocket | undefined, trustDomains: ReadonlySet<string>): PeerIdentity {
  const cert = socket?.getPeerCertificate?.();
  if (!cert || Object.keys(cert).length === 0) return ANONYMOUS;
  const fingerprint = cert.fingerprint256 ? { fingerprint: cert.fingerprint256 } : {};
  const refuse = (reason: IdentityRefusalReason, message: string): PeerIdentity => ({ id: 'anonymous', ...fingerprint, refused: { reason, message } });
  // With optional client certificates the handshake accepts any certificate; an unverified
  // one identifies no one and is refused by the auth pipeline.
  if (socket && !socket.authorized) return refuse('BAD_CLIENT_CERTIFICATE', `the client certificate was refused: ${String(socket.authorizationError ?? 'not verified')}`);
  const san = sanIdentity(cert.subjectaltname);
  if (san.error === 'multiple') return refuse('MULTIPLE_URI_SANS', san.message);
  if (san.error === 'invalid') return refuse('INVALID_SPIFFE_ID', san.message);
  const { spiffeId, trustDomain } = san;
  if (trustDomain !== undefined && !trustDomains.has(trustDomain)) {
    return refuse('UNTRUSTED_TRUST_DOMAIN', `the client certificate's SPIFFE ID ${spiffeId} is in trust domain "${trustDomain}", which is not in tls.trustDomains (${[...trustDomains].join(', ')})`);
  }
  const cn = cert.subject?.CN;
  const subjectCN = Array.isArray(cn) ? cn[0] : cn;
  return {
    id: spiffeId ?? (subjectCN ? `cn:${subjectCN}` : 'anonymous'),
    ...(spiffeId ? { spiffeId } : {}),
    ...(subjectCN ? { subjectCN } : {}),
    ...fingerprint,
  };
}
