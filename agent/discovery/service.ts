/**
 * The running discovery plane of one agent: advertises itself on the configured multicast
 * groups (on an interval with ±20 % jitter, at once on start, and a signed goodbye on stop),
 * and believes a peer only when its advertisement passes the verifier (trusted or endorsed
 * key, fleet, freshness, sequence, SPIFFE ID). Rejections are counted by reason; warnings
 * about them are rate-limited so a flood cannot flood the log as well.
 */
import { readFileSync } from 'node:fs';
import { readPrivateKey, type KeyPair } from '../../signing/index.ts';
import type { Audit } from '../audit/index.ts';
import { parseHostPort } from '../config/load.ts';
import type { DiscoveryConfig } from '../config/schema.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { encodeAdvert, nextSeq, type AdvertPayload } from './advert.ts';
import { inspectEndorsement, readEndorsementFile } from './endorse.ts';
import { PeerTable, type PeerInfo } from './peers.ts';
import { checkPeerIdentity, type TlsCredentials } from './identity-check.ts';
import { createMulticastTransport } from './transport.ts';
import { createAdvertVerifier, type AdvertVerifier, type TrustedKeySpec } from './verifier.ts';

export interface SelfDescription {
  agent: string;
  spiffe: string;
  tlsFingerprint: string;
  endpoints: string[];
  routines: string[];
  capacity: number;
  load: () => number;
}

/** A peer from discovery.static: trusted by configuration, pinned on connect. */
export interface StaticPeer {
  agent: string;
  spiffe: string;
  endpoints: string[];
  routines: string[];
  tlsFingerprint: string;
  load: number;
  capacity: number;
  static: true;
}

export interface DiscoveryOptions {
  /** This agent's certificate, used to check each new peer's identity with a handshake. */
  tls?: TlsCredentials;
  config: DiscoveryConfig;
  /** Trust domains advertised SPIFFE IDs must be in (the ones the listener accepts). */
  trustDomains: readonly string[];
  self: SelfDescription;
  log: Logger;
  now?: () => number;
  /** Records peer.accepted, peer.evicted and (rate-limited) advert.rejected. */
  audit?: Audit;
}

const WARN_EVERY_MS = 10_000;
/** How long a peer that failed its identity check is skipped (it may be a transient mix-up). */
const UNTRUSTED_MS = 5 * 60_000;

export class DiscoveryService {
  #opts: DiscoveryOptions;
  #key: KeyPair | undefined;
  #endorsement: Uint8Array | null;
  #verifier: AdvertVerifier | undefined;
  #table: PeerTable;
  #transport: Awaited<ReturnType<typeof createMulticastTransport>> | undefined;
  #seq: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #expiry: ReturnType<typeof setInterval> | undefined;
  #lastWarn = new Map<string, number>();
  /** Per reject reason: when it was last reported, and how many since were not. */
  #rejections = new Map<string, { at: number; suppressed: number }>();
  /** Rejections decided here, after the verifier: names that do not match their key's identity. */
  #extra = { 'name-mismatch': 0, 'name-conflict': 0, 'identity-mismatch': 0 };
  #stopped = false;
  /** Keys this agent signed with before a rotation: their in-flight adverts are our own. */
  #ownKeyIds = new Set<string>();
  #lastLoad = 0;
  #now: () => number;

  private constructor(opts: DiscoveryOptions) {
    const { config } = opts;
    this.#opts = opts;
    this.#now = opts.now ?? (() => Date.now());
    this.#endorsement = config.endorsement ? readFileSync(config.endorsement) : null;
    this.#table = new PeerTable({ now: this.#now });
    if (config.groups.length === 0) return; // static peers only: no multicast, no keys
    this.#key = readPrivateKey(config.signingKey!);
    this.#verifier = createAdvertVerifier({
      fleet: config.fleet!,
      trustedKeys: config.trustedKeys.map(parseTrustedKey),
      rootKeys: config.rootKeys,
      trustDomains: opts.trustDomains,
      maxSkewMs: config.maxSkewMs,
      now: this.#now,
    });
  }

  /** Opens the multicast sockets, sends the first advertisement and starts the timers. */
  static async start(opts: DiscoveryOptions): Promise<DiscoveryService> {
    const service = new DiscoveryService(opts);
    const { config, log } = opts;
    if (config.groups.length === 0) {
      log.info('discovery started with static peers only', { peers: config.static.map((p) => p.agent) });
      return service;
    }
    try {
      service.#transport = await createMulticastTransport({
        groups: config.groups.map((group) => {
          const { host, port } = parseHostPort(group);
          return { address: host, port };
        }),
        interface: config.interface,
        onDatagram: (data, from) => service.#receive(data, from.address),
        // Counted (and reported) by the verifier as "oversize", which checks the size before
        // reading a byte, like any other rejected advert.
        onOversize: (data, from) => service.#receive(data, from.address),
        onError: (err) => log.warn('discovery socket error', { error: err.message }),
      });
    } catch (err) {
      throw new SkeinError('SKEIN_ERR_CONFIG', `config key "discovery.groups": ${(err as Error).message}`, { key: 'discovery.groups' }, { cause: err });
    }
    // Sign once now: a payload that cannot be advertised (too big) stops start-up.
    await service.#advertise();
    service.#schedule();
    service.#expiry = setInterval(() => {
      for (const agent of service.#table.expire()) {
        log.info('peer expired', { peer: agent });
        opts.audit?.record('peer.evicted', { peer: agent, reason: 'expired' });
      }
    }, Math.max(100, Math.min(1000, config.ttlMs / 3)));
    service.#expiry.unref?.();
    log.info('discovery started', { fleet: config.fleet, keyId: service.#key!.keyId, groups: config.groups, endorsed: service.#endorsement !== null, static: config.static.length });
    return service;
  }

  /** Verified peers from advertisements, then the static ones from config. */
  peers(): Array<PeerInfo | StaticPeer> {
    const statics: StaticPeer[] = this.#opts.config.static.map((p) => ({ agent: p.agent, spiffe: p.spiffe, endpoints: [p.endpoint], routines: p.routines, tlsFingerprint: p.sha256, load: 0, capacity: 0, static: true }));
    return [...this.#table.list(), ...statics];
  }

  table(): PeerTable {
    return this.#table;
  }

  counters(): Record<string, number> {
    return { ...(this.#verifier?.counters() ?? {}), ...this.#extra };
  }

  #count(reason: 'name-mismatch' | 'name-conflict' | 'identity-mismatch'): void {
    this.#extra[reason]++;
  }

  /** Sends a signed goodbye and closes the sockets. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#expiry) clearInterval(this.#expiry);
    if (!this.#transport) return;
    // UDP may drop a datagram, and closing the socket right after send() resolved could drop
    // it here: the goodbye goes out twice, 20 ms apart (receivers ignore the second).
    for (let i = 0; i < 2; i++) {
      try {
        await this.#advertise(true);
      } catch (err) {
        this.#opts.log.warn('discovery goodbye not sent', { error: (err as Error).message });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.#transport.close();
  }

  #payload(goodbye: boolean): AdvertPayload {
    const { self, config } = this.#opts;
    this.#seq = nextSeq(this.#seq, this.#now());
    return {
      v: 1,
      fleet: config.fleet!,
      agent: self.agent,
      spiffe: self.spiffe,
      endpoints: self.endpoints,
      routines: self.routines,
      load: self.load(),
      capacity: self.capacity,
      tlsFingerprint: self.tlsFingerprint,
      seq: this.#seq,
      iat: this.#now(),
      ttl: config.ttlMs,
      ...(goodbye ? { goodbye: true as const } : {}),
    };
  }

  async #advertise(goodbye = false): Promise<void> {
    const payload = this.#payload(goodbye);
    this.#lastLoad = payload.load;
    const bytes = encodeAdvert(payload, this.#key!, this.#endorsement);
    await this.#transport?.send(bytes);
  }

  /**
   * The next advertisement: after intervalMs ± 20 %, or sooner — checked every quarter
   * interval — when the load moved by a quarter of the capacity (at least one call) since the
   * last one, so peers route by a current picture without an advert per call.
   */
  #schedule(): void {
    if (this.#stopped) return;
    const interval = this.#opts.config.intervalMs;
    const due = this.#now() + interval + interval * 0.2 * (Math.random() * 2 - 1);
    const tick = () => {
      if (this.#stopped) return;
      const { load, capacity } = this.#opts.self;
      const moved = Math.abs(load() - this.#lastLoad) >= Math.max(1, capacity / 4);
      if (this.#now() >= due || moved) {
        this.#advertNow();
        this.#schedule();
        return;
      }
      this.#timer = setTimeout(tick, Math.min(interval / 4, Math.max(0, due - this.#now())));
      this.#timer.unref?.();
    };
    this.#timer = setTimeout(tick, Math.min(interval / 4, Math.max(0, due - this.#now())));
    this.#timer.unref?.();
  }

  #receive(data: Buffer, source: string): void {
    const result = this.#verifier!.verify(data, source);
    if (!result.ok) {
      this.#rejected(result.reason, { source, detail: result.detail });
      return;
    }
    const { payload, keyId } = result;
    // Our own, looped back (also those signed by a key rotated out, still in flight).
    if ((keyId === this.#key!.keyId || this.#ownKeyIds.has(keyId)) && payload.agent === this.#opts.self.agent) return;
    // The name is the last segment of the SPIFFE ID the key is entitled to, so a trusted key
    // cannot advertise under another agent's name.
    if (payload.spiffe.slice(payload.spiffe.lastIndexOf('/') + 1) !== payload.agent) {
      this.#count('name-mismatch');
      this.#rejected('name-mismatch', { source, agent: payload.agent, spiffe: payload.spiffe, keyId });
      return;
    }
    const change = this.#table.upsert(payload, keyId, source, { bound: result.bound, endorsed: result.endorsed });
    if (change === 'conflict') {
      this.#count('name-conflict');
      this.#rejected('name-conflict', { source, agent: payload.agent, keyId, detail: 'another key owns this agent name until its entry expires' });
      return;
    }
    if (change === 'rekeyed' || change === 'added') {
      const accepted = { peer: payload.agent, spiffe: payload.spiffe, keyId, endorsed: result.endorsed, source, endpoints: payload.endpoints, routines: payload.routines, tlsFingerprint: payload.tlsFingerprint };
      if (change === 'rekeyed') this.#opts.log.info('peer signing key rotated', { peer: payload.agent, spiffe: payload.spiffe, keyId });
      else this.#opts.log.info('peer discovered', { peer: payload.agent, spiffe: payload.spiffe, endpoints: payload.endpoints, routines: payload.routines, keyId, endorsed: result.endorsed });
      this.#opts.audit?.record('peer.accepted', change === 'rekeyed' ? { ...accepted, rekeyed: true } : accepted);
      if (change === 'added') this.#verifyIdentity(payload);
    } else if (change === 'removed') {
      this.#opts.log.info('peer said goodbye', { peer: payload.agent });
      this.#opts.audit?.record('peer.evicted', { peer: payload.agent, reason: 'goodbye', keyId, source });
    }
  }

  /**
   * A signed advertisement proves who sent it, not that its endpoint serves that identity: a
   * trusted but misbehaving key could point at someone else's server. Each new peer's first
   * endpoint is checked with one handshake; a mismatch puts it on a cool-down (shown in
   * GET /v1/peers as coolDownMs) so clients skip it.
   */
  #verifyIdentity(payload: AdvertPayload): void {
    const creds = this.#opts.tls;
    const endpoint = payload.endpoints[0];
    if (!creds || !endpoint) return;
    void checkPeerIdentity(endpoint, { spiffeId: payload.spiffe, sha256: payload.tlsFingerprint }, creds).then((reason) => {
      if (!reason) {
        this.#opts.log.info('peer proved its identity', { peer: payload.agent, endpoint, spiffe: payload.spiffe });
        return;
      }
      this.#count('identity-mismatch');
      this.#table.markUntrusted(payload.agent, this.#now() + UNTRUSTED_MS);
      this.#opts.log.warn('peer failed its identity check; untrusted for a while', { peer: payload.agent, reason, untrustedMs: UNTRUSTED_MS });
      // Kept in the table (so its adverts are not re-checked in a loop) but never used until then.
      this.#opts.audit?.record('peer.evicted', { peer: payload.agent, reason: 'identity-mismatch', detail: reason, endpoint, untrustedMs: UNTRUSTED_MS });
    });
  }

  /**
   * Applies a reloaded discovery config's keys and trust: the signing key and endorsement
   * (rotation: the next advert, sent at once, is signed by the new key; peers that trust it
   * take the entry over without a gap), the trust store (entries of keys no longer trusted
   * are dropped at once), and the static peers. Everything is read and checked before
   * anything changes, so a bad file throws SKEIN_ERR_CONFIG and the old state stays.
   * Groups, fleet, interface and timings are not reloadable (runtime/reload.ts says so).
   */
  reload(next: DiscoveryConfig): { rotated?: { from: string; to: string }; dropped: string[] } {
    const multicast = next.groups.length > 0;
    const key = multicast ? readPrivateKey(next.signingKey!) : undefined;
    const endorsement = next.endorsement ? readEndorsementFile(next.endorsement) : null;
    if (endorsement && key) {
      const e = inspectEndorsement(endorsement);
      if (e.agentKeyId !== key.keyId) {
        throw new SkeinError('SKEIN_ERR_CONFIG', `discovery.endorsement ${next.endorsement} endorses key ${e.agentKeyId}, not the signing key ${key.keyId} (discovery.signingKey)`, { key: 'discovery.endorsement' });
      }
      if (e.spiffe !== this.#opts.self.spiffe) {
        throw new SkeinError('SKEIN_ERR_CONFIG', `discovery.endorsement ${next.endorsement} is for ${e.spiffe}, this agent is ${this.#opts.self.spiffe}`, { key: 'discovery.endorsement' });
      }
    }
    const trust = { trustedKeys: next.trustedKeys.map(parseTrustedKey), rootKeys: next.rootKeys };
    // Throws on a bad entry before replacing anything.
    this.#verifier?.setTrust(trust);

    const previous = this.#key;
    this.#opts = { ...this.#opts, config: next };
    this.#endorsement = endorsement;
    const dropped = this.#verifier ? this.#table.dropUntrusted((k) => this.#verifier!.trustsKey(k)) : [];
    for (const agent of dropped) {
      this.#opts.log.warn('peer dropped: its key is no longer trusted', { peer: agent });
      this.#opts.audit?.record('peer.evicted', { peer: agent, reason: 'untrusted' });
    }
    let rotated: { from: string; to: string } | undefined;
    if (key && previous && key.keyId !== previous.keyId) {
      this.#ownKeyIds.add(previous.keyId);
      this.#key = key;
      rotated = { from: previous.keyId, to: key.keyId };
      this.#opts.log.info('discovery signing key rotated', rotated);
      this.#advertNow();
    } else if (key) this.#key = key;
    return { ...(rotated ? { rotated } : {}), dropped };
  }

  /**
   * A rotated TLS certificate: adverts carry its fingerprint (peers pin it), and identity
   * checks of new peers present it. Advertises at once so pins move with the certificate.
   */
  setTls(tls: TlsCredentials, tlsFingerprint: string): void {
    this.#opts = { ...this.#opts, tls, self: { ...this.#opts.self, tlsFingerprint } };
    this.#advertNow();
  }

  #advertNow(): void {
    if (this.#stopped || !this.#transport) return;
    this.#advertise().catch((err) => this.#warn('send', 'discovery advertisement not sent', { error: (err as Error).message }));
  }

  /**
   * A rejected advertisement: the counters count every one; the warning and the audit line
   * (advert.rejected) are rate-limited per reason, so a flood of forged datagrams floods
   * neither the log nor the audit file: the first at once, then at most one every
   * WARN_EVERY_MS, whose `suppressed` says how many were not recorded since the last one.
   */
  #rejected(reason: string, fields: Record<string, unknown>): void {
    const now = this.#now();
    const last = this.#rejections.get(reason);
    if (last && now - last.at < WARN_EVERY_MS) {
      last.suppressed++;
      return;
    }
    this.#rejections.set(reason, { at: now, suppressed: 0 });
    this.#opts.log.warn('advertisement rejected', { reason, ...fields, counts: this.counters()[reason] });
    this.#opts.audit?.record('advert.rejected', { reason, ...fields, suppressed: last?.suppressed ?? 0 });
  }

  /** At most one warning per kind every WARN_EVERY_MS; the counters carry the totals. */
  #warn(kind: string, msg: string, fields: Record<string, unknown>): void {
    const now = this.#now();
    if (now - (this.#lastWarn.get(kind) ?? -Infinity) < WARN_EVERY_MS) return;
    this.#lastWarn.set(kind, now);
    this.#opts.log.warn(msg, fields);
  }
}

/** "ed25519:<key>" or "ed25519:<key>@spiffe://td/agent/x" (the SPIFFE ID the key may claim). */
export function parseTrustedKey(entry: string): TrustedKeySpec {
  const at = entry.indexOf('@spiffe://');
  return at === -1 ? entry : { key: entry.slice(0, at), spiffe: entry.slice(at + 1) };
}
