/**
 * Identity pinning: does a peer's TLS certificate match the identity it advertised (the
 * certificate's SHA-256 and its SPIFFE ID)? One rule for every place that pins — the client
 * library before it sends a request, and the agent checking a newly discovered peer.
 */
import type { PeerCertificate } from 'node:tls';
import { spiffeIdFromSan } from './describe.ts';

export interface Pin {
  spiffeId: string;
  /** Lower-case hex SHA-256 of the certificate (DER). */
  sha256: string;
}

/** What the certificate actually identifies. */
export function presentedIdentity(cert: PeerCertificate | undefined): { spiffeId: string | undefined; sha256: string } {
  return {
    spiffeId: spiffeIdFromSan(cert?.subjectaltname),
    sha256: String(cert?.fingerprint256 ?? '')
      .replaceAll(':', '')
      .toLowerCase(),
  };
}

/** undefined when `cert` is the pinned one, else a sentence saying what was presented instead. */
export function pinMismatch(cert: PeerCertificate | undefined, pin: Pin): string | undefined {
  const { spiffeId, sha256 } = presentedIdentity(cert);
  if (sha256 === pin.sha256.toLowerCase() && spiffeId === pin.spiffeId) return undefined;
  return `presented ${spiffeId ?? 'no SPIFFE ID'} (sha256 ${sha256.slice(0, 16)}…), not the advertised ${pin.spiffeId} (${pin.sha256.slice(0, 16)}…)`;
}
