/**
 * Receiving: a peer is believed only when its advertisement passes the verifier (trusted or
 * endorsed key, fleet, freshness, sequence, SPIFFE ID), names the agent its key is entitled
 * to, and — for a new peer — its endpoint presents the advertised identity. Entries expire
 * after their TTL; a goodbye removes one at once.
 */
import type { Audit } from '../audit/index.ts';
import type { Logger } from '../log/index.ts';
import type { AdvertPayload } from './advert.ts';
import { checkPeerIdentity, type TlsCredentials } from './identity-check.ts';
import type { PeerTable } from './peers.ts';
import type { DiscoveryReport } from './report.ts';
import type { AdvertVerifier } from './verifier.ts';
import { LruMap } from './bounded.ts';
import { IdentityCheckQueue } from './identity-queue.ts';

/** How long a peer that failed its identity check is skipped (it may be a transient mix-up). */
const UNTRUSTED_MS = 5 * 60_000;
/** Re-checks of a peer that could not be reached: the first after 2 s, doubling up to 5 min. */
const RECHECK_FIRST_MS = 2000;
const RECHECK_MAX_MS = 5 * 60_000;
/** Failed identity checks remembered (by signing key and endpoint) for the length of their cool-down. */
const MAX_FAILED = 4096;
/** Peers whose identity check could not reach them, remembered for their backoff. */
const MAX_UNVERIFIED = 16_384;

export interface ReceiverOptions {
  verifier: AdvertVerifier;
  table: PeerTable;
  report: DiscoveryReport;
  /** This agent's name and current key id: its own adverts loop back and are ignored. */
  self: () => { agent: string; keyId: string };
  /** This agent's certificate, presented when checking a new peer's identity. */
  tls: () => TlsCredentials | undefined;
  log: Logger;
  audit?: Audit;
  now: () => number;
  ttlMs: number;
  /** A heartbeat named a record this agent lacks: ask its key for it (wire version 2). */
  want?: (keyId: string) => void;
  /** A peer asked for this agent's record (its "want" is empty or names our key). */
  wanted?: () => void;
  /** Pacing of identity checks (discovery.identityChecks). */
  identityChecks: { concurrency: number; perSecond: number };
}

export class Receiver {
  #o: ReceiverOptions;
  /** Keys this agent signed with before a rotation: their in-flight adverts are our own. */
  #ownKeyIds = new Set<string>();
  /**
   * Peers whose identity check could not reach them: checked again with a later advertisement,
   * backing off (2 s doubling to 5 min) so an endpoint this host can never reach is not dialled
   * every interval forever.
   */
  #unverified = new LruMap<string, { next: number; wait: number }>(MAX_UNVERIFIED);
  /** Peers with a check queued or in flight (a slow endpoint is not dialled again by every advert). */
  #checking = new Set<string>();
  /**
   * Failed identity checks by "keyId endpoint", until their cool-down ends: a peer that expires
   * and comes back with the same key and endpoint is put straight back on its cool-down
   * instead of being checked (and dialled) again with every return.
   */
  #failed = new LruMap<string, { until: number; reason: string }>(MAX_FAILED);
  #queue: IdentityCheckQueue;
  #expiry: ReturnType<typeof setInterval>;

  constructor(opts: ReceiverOptions) {
    this.#o = opts;
    this.#queue = new IdentityCheckQueue({ ...opts.identityChecks, now: opts.now });
    this.#expiry = setInterval(
      () => {
        for (const agent of opts.table.expire()) {
          this.#forget(agent);
          opts.log.info('peer expired', { peer: agent });
          opts.audit?.record('peer.evicted', { peer: agent, reason: 'expired' });
        }
      },
      Math.max(100, Math.min(1000, opts.ttlMs / 3)),
    );
    this.#expiry.unref?.();
  }

  /** Stops expiring entries (the table stays as it is). */
  stop(): void {
    clearInterval(this.#expiry);
    this.#queue.stop();
  }

  /** A peer left (expired or said goodbye): its waiting check, if any, is not run. */
  #forget(agent: string): void {
    this.#queue.cancel(agent);
    this.#checking.delete(agent);
  }

  /** A key this agent no longer signs with, whose adverts may still be in flight. */
  retiredOwnKey(keyId: string): void {
    this.#ownKeyIds.add(keyId);
  }

  /**
   * `own`: the kernel says it came from our own send socket. Still verified (a replay of our
   * own advert by someone else is then recognised as one), but never charged to the source's
   * bucket: a flood from an address we share must not get our own adverts rate-limited.
   */
  receive(data: Buffer, source: string, own = false): void {
    const { verifier, table, report, log, audit } = this.#o;
    const result = verifier.verify(data, source, own);
    if (!result.ok) {
      report.rejected(result.reason, { source, detail: result.detail });
      // Perhaps the heartbeat of an endorsed peer whose record we never saw: ask for it (not
      // for our own key: our heartbeats loop back, and our own verifier need not trust us).
      const want = result.wantKeyId;
      if (want !== undefined && want !== this.#o.self().keyId && !this.#ownKeyIds.has(want)) this.#o.want?.(want);
      return;
    }
    const { keyId } = result;
    // Our own, looped back (also those signed by a key rotated out, still in flight).
    const self = this.#o.self();
    if ((keyId === self.keyId || this.#ownKeyIds.has(keyId)) && result.payload.agent === self.agent) return;
    if ('rd' in result.payload) {
      // A heartbeat refreshes the entry whose record it names; one we lack is asked for.
      if (table.heartbeat(result.payload, keyId, source) === 'unknown') this.#o.want?.(keyId);
      return;
    }
    const payload = result.payload;
    if (payload.want !== undefined && (payload.want.length === 0 || payload.want.includes(self.keyId))) this.#o.wanted?.();
    // The name is the last segment of the SPIFFE ID the key is entitled to, so a trusted key
    // cannot advertise under another agent's name.
    if (payload.spiffe.slice(payload.spiffe.lastIndexOf('/') + 1) !== payload.agent) {
      report.count('name-mismatch');
      report.rejected('name-mismatch', { source, agent: payload.agent, spiffe: payload.spiffe, keyId });
      return;
    }
    const change = table.upsert(payload, keyId, source, { bound: result.bound, endorsed: result.endorsed });
    if (change === 'conflict') {
      report.count('name-conflict');
      report.rejected('name-conflict', { source, agent: payload.agent, keyId, detail: 'another key owns this agent name until its entry expires' });
      return;
    }
    if (change === 'rekeyed' || change === 'added') {
      const accepted = {
        peer: payload.agent,
        spiffe: payload.spiffe,
        keyId,
        endorsed: result.endorsed,
        source,
        endpoints: payload.endpoints,
        routines: payload.routines,
        tlsFingerprint: payload.tlsFingerprint,
      };
      if (change === 'rekeyed') log.info('peer signing key rotated', { peer: payload.agent, spiffe: payload.spiffe, keyId });
      else log.info('peer discovered', { peer: payload.agent, spiffe: payload.spiffe, endpoints: payload.endpoints, routines: payload.routines, keyId, endorsed: result.endorsed });
      audit?.record('peer.accepted', change === 'rekeyed' ? { ...accepted, rekeyed: true } : accepted);
      if (change === 'added') {
        // A new entry (first sight, or back after expiring): its own check, its own backoff,
        // unless this key and endpoint already failed one that is still cooling down.
        this.#unverified.delete(payload.agent);
        const failed = this.#failed.get(failedKey(keyId, payload));
        if (failed !== undefined && failed.until > this.#o.now()) {
          table.markUntrusted(payload.agent, failed.until, failed.reason);
          log.info('peer returned while cooling down after a failed identity check; not checked again until then', { peer: payload.agent, keyId, coolDownMs: failed.until - this.#o.now() });
        } else {
          this.#verifyIdentity(payload, keyId);
        }
      }
    } else if (change === 'updated' && (this.#unverified.get(payload.agent)?.next ?? Infinity) <= this.#o.now() && !this.#checking.has(payload.agent)) {
      this.#verifyIdentity(payload, keyId);
    } else if (change === 'removed') {
      this.#unverified.delete(payload.agent);
      this.#forget(payload.agent);
      log.info('peer said goodbye', { peer: payload.agent });
      audit?.record('peer.evicted', { peer: payload.agent, reason: 'goodbye', keyId, source });
    }
  }

  /**
   * A signed advertisement proves who sent it, not that its endpoint serves that identity: a
   * trusted but misbehaving key could point at someone else's server. Each new peer's first
   * endpoint is checked with one handshake; a mismatch puts it on a cool-down (shown in
   * GET /v1/peers as coolDownMs) so clients skip it.
   */
  #verifyIdentity(payload: AdvertPayload, keyId: string): void {
    const creds = this.#o.tls();
    const endpoint = payload.endpoints[0];
    if (!creds || !endpoint) return;
    const { table, report, log, audit, now } = this.#o;
    const agent = payload.agent;
    this.#checking.add(agent);
    // Paced (identity-queue.ts): meeting a thousand peers at once must not dial them at once.
    const queued = this.#queue.enqueue(agent, async () => {
      // Its turn came: still the same peer (key and endpoint) as when it was met?
      const current = table.get(agent);
      if (!current || current.keyId !== keyId || current.endpoints[0] !== endpoint) {
        this.#checking.delete(agent);
        return;
      }
      const check = await checkPeerIdentity(endpoint, { spiffeId: payload.spiffe, sha256: payload.tlsFingerprint }, creds);
      this.#checking.delete(agent);
      if (check.outcome === 'proved') {
        this.#unverified.delete(agent);
        log.info('peer proved its identity', { peer: agent, endpoint, spiffe: payload.spiffe });
        return;
      }
      if (check.outcome === 'unreachable') {
        // Down or restarting, not an impostor: no cool-down. Callers pin its identity on
        // connect anyway; the check runs again with a later advertisement.
        const wait = Math.min(RECHECK_MAX_MS, (this.#unverified.get(agent)?.wait ?? RECHECK_FIRST_MS / 2) * 2);
        this.#unverified.set(agent, { next: now() + wait, wait });
        log.info('peer unreachable for its identity check; checked again with a later advertisement', { peer: agent, endpoint, reason: check.reason, retryInMs: wait });
        return;
      }
      const reason = check.reason;
      const until = now() + UNTRUSTED_MS;
      this.#unverified.delete(agent);
      this.#failed.set(failedKey(keyId, payload), { until, reason: `identity check failed: ${reason}` });
      report.count('identity-mismatch');
      table.markUntrusted(agent, until, `identity check failed: ${reason}`);
      log.warn('peer failed its identity check; untrusted for a while', { peer: agent, reason, untrustedMs: UNTRUSTED_MS });
      // Kept in the table (so its adverts are not re-checked in a loop) but never used until then.
      audit?.record('peer.evicted', { peer: agent, reason: 'identity-mismatch', detail: reason, endpoint, untrustedMs: UNTRUSTED_MS });
    });
    if (!queued) {
      // More peers waiting than the queue holds: tried again with a later advertisement.
      this.#checking.delete(agent);
      this.#unverified.set(agent, { next: now() + RECHECK_FIRST_MS, wait: RECHECK_FIRST_MS });
    }
  }
}

/** Whom a failed identity check is remembered for: the signing key and the endpoint it pointed at. */
function failedKey(keyId: string, payload: AdvertPayload): string {
  return `${keyId} ${payload.endpoints[0] ?? ''}`;
}
