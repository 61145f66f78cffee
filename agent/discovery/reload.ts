/**
 * What a reload may change in a running discovery plane, read and checked before anything
 * changes: the signing key and endorsement (rotation: the next advert, sent at once, is
 * signed by the new key; peers that trust it take the entry over without a gap), the trust
 * store (entries of keys no longer trusted are dropped at once) and the static peers. A bad
 * file or entry throws SKEIN_ERR_CONFIG and the old state stays. Groups, fleet, interface and
 * timings are not among the keys: they need a restart.
 */
import { readPrivateKey, type KeyPair } from '../../signing/index.ts';
import type { DiscoveryConfig } from '../config/schema.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { inspectEndorsement, readEndorsementFile } from './endorse.ts';
import { createAdvertVerifier, type TrustedKeySpec } from './verifier.ts';

/** The discovery keys a running agent applies (agent/lifecycle/reloadable.ts). */
export const DISCOVERY_RELOAD_KEYS = ['discovery.trustedKeys', 'discovery.rootKeys', 'discovery.signingKey', 'discovery.endorsement', 'discovery.static'] as const;

export interface DiscoveryReloadPlan {
  config: DiscoveryConfig;
  /** The signing key to use from now on (multicast only). */
  key: KeyPair | undefined;
  endorsement: Uint8Array | null;
  trust: { trustedKeys: TrustedKeySpec[]; rootKeys: string[] };
}

/**
 * Reads and checks `next`; throws SKEIN_ERR_CONFIG naming the key. Changes nothing.
 * `multicast`: the running plane verifies adverts (its trust store is checked too).
 */
export function planDiscoveryReload(next: DiscoveryConfig, ctx: { spiffe: string; trustDomains: readonly string[]; multicast: boolean }): DiscoveryReloadPlan {
  // The configured groups decide, as at start (a change of groups itself waits for a restart).
  const key = next.groups.length > 0 ? readPrivateKey(next.signingKey!) : undefined;
  const endorsement = next.endorsement ? readEndorsementFile(next.endorsement) : null;
  if (endorsement && key) {
    const e = inspectEndorsement(endorsement);
    if (e.agentKeyId !== key.keyId) {
      throw new SkeinError('SKEIN_ERR_CONFIG', `discovery.endorsement ${next.endorsement} endorses key ${e.agentKeyId}, not the signing key ${key.keyId} (discovery.signingKey)`, {
        key: 'discovery.endorsement',
      });
    }
    if (e.spiffe !== ctx.spiffe) {
      throw new SkeinError('SKEIN_ERR_CONFIG', `discovery.endorsement ${next.endorsement} is for ${e.spiffe}, this agent is ${ctx.spiffe}`, { key: 'discovery.endorsement' });
    }
  }
  const trust = { trustedKeys: next.trustedKeys.map(parseTrustedKey), rootKeys: next.rootKeys };
  // A verifier of its own parses the trust store as the running one will: a bad entry throws
  // here, before anything is replaced.
  if (ctx.multicast) createAdvertVerifier({ fleet: next.fleet ?? 'check', trustDomains: ctx.trustDomains, ...trust });
  return { config: next, key, endorsement, trust };
}

/** "ed25519:<key>" or "ed25519:<key>@spiffe://td/agent/x" (the SPIFFE ID the key may claim). */
export function parseTrustedKey(entry: string): TrustedKeySpec {
  const at = entry.indexOf('@spiffe://');
  return at === -1 ? entry : { key: entry.slice(0, at), spiffe: entry.slice(at + 1) };
}
