/**
 * Who owns an async call: the caller's key, the same for every request the same caller makes.
 * It is the mTLS peer id plus the principals token hooks asserted, sorted (the order hooks
 * run in is configuration, not identity), as one JSON text: a caller with a certificate and a
 * token is another owner than the certificate alone, so a token-less client on the same
 * certificate cannot read the calls a token-bearing one made.
 *
 * @example
 *   callerKey({ peer: { id: 'spiffe://td/client/a' }, principals: ['jwt:bob', 'jwt:al'], claims: {} })
 *   // '["spiffe://td/client/a","jwt:al","jwt:bob"]'
 */
import type { Identity } from '../plugin-host/api.ts';

export function callerKey(identity: Pick<Identity, 'peer' | 'principals'>): string {
  return JSON.stringify([identity.peer.id, ...[...identity.principals].sort()]);
}
