/**
 * The running discovery plane of one agent, put together from its parts: advertising
 * (./advertiser.ts), receiving (./receiver.ts), what a reload changes (./reload.ts) and what
 * is reported about rejections (./report.ts), over the multicast transport; and the peers of
 * DNS records (./dns-source.ts) when discovery.dns.names are set. With no groups configured
 * it serves the static (and DNS) peers only: no sockets, no keys.
 *
 * Lifecycle (agent/lifecycle): close() sends the signed goodbye (twice, 20 ms apart) and
 * closes the sockets; destroy() sends it once without waiting and closes them. Both stop the
 * timers, and are idempotent. As a reloadable component it applies DISCOVERY_RELOAD_KEYS.
 */
import type { Audit } from '../audit/index.ts';
import { isLoopbackHost, parseHostPort } from '../config/load.ts';
import type { AgentConfig, DiscoveryConfig } from '../config/schema.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { Lifecycle, type Component } from '../lifecycle/index.ts';
import type { Reloadable, Staged } from '../lifecycle/reloadable.ts';
import { Advertiser, type SelfDescription } from './advertiser.ts';
import type { PeerFields } from './advert.ts';
import { PeerTable, type PeerInfo } from './peers.ts';
import { checkPeerIdentity, type TlsCredentials } from './identity-check.ts';
import { Receiver } from './receiver.ts';
import { DISCOVERY_RELOAD_KEYS, planDiscoveryReload, type DiscoveryReloadPlan } from './reload.ts';
import { DiscoveryReport } from './report.ts';
import { DnsSource, type DnsPeer, type DnsStats } from './dns-source.ts';
import { createMulticastTransport, type MulticastTransport } from './transport.ts';
import { createAdvertVerifier, type AdvertVerifier } from './verifier.ts';

export type { SelfDescription };

/** A peer from discovery.static: trusted by configuration, pinned on connect. */
export interface StaticPeer extends PeerFields {
  source: 'static';
  static: true;
}

/** A peer of a signed advert, as GET /v1/peers lists it: `from` is the address the advert came from. */
export type MulticastPeer = Omit<PeerInfo, 'source'> & { source: 'multicast'; from: string };

export interface DiscoveryOptions {
  /** This agent's certificate, used to check each new peer's identity with a handshake. */
  tls?: TlsCredentials;
  config: DiscoveryConfig;
  /** Trust domains advertised SPIFFE IDs must be in (the ones the listener accepts). */
  trustDomains: readonly string[];
  self: SelfDescription;
  log: Logger;
  now?: () => number;
  /** Records peer.accepted, peer.evicted, discovery.key_rotated and (rate-limited) advert.rejected. */
  audit?: Audit;
}

/** The multicast half: present only when groups are configured. */
interface Multicast {
  transport: MulticastTransport;
  verifier: AdvertVerifier;
  advertiser: Advertiser;
  receiver: Receiver;
}

export class DiscoveryService implements Component, Reloadable<AgentConfig> {
  readonly name = 'discovery';
  readonly reloadKeys = DISCOVERY_RELOAD_KEYS;
  #opts: DiscoveryOptions;
  #table: PeerTable;
  #report: DiscoveryReport;
  #mc: Multicast | undefined;
  #dns: DnsSource | undefined;
  #life = new Lifecycle({ drain: () => this.#stop(true), abort: () => this.#stop(false) });

  private constructor(opts: DiscoveryOptions) {
    this.#opts = opts;
    const now = opts.now ?? (() => Date.now());
    this.#opts.now = now;
    this.#table = new PeerTable({ now });
    this.#report = new DiscoveryReport({ log: opts.log, audit: opts.audit, now, verifierCounters: () => this.#mc?.verifier.counters() ?? {} });
  }

  /** Opens the multicast sockets, sends the first advertisement and starts the timers. */
  static async start(opts: DiscoveryOptions): Promise<DiscoveryService> {
    const service = new DiscoveryService(opts);
    const { config, log } = opts;
    // The same checks as a reload (and skein validate): the signing key, an endorsement of that
    // key for this agent's SPIFFE ID, a trust store that parses.
    const plan = planDiscoveryReload(config, { spiffe: opts.self.spiffe, trustDomains: opts.trustDomains, multicast: config.groups.length > 0 });
    if (config.groups.length === 0) {
      if (config.dns.names.length > 0) service.#startDns();
      log.info(service.#dns ? 'discovery started with static and DNS peers' : 'discovery started with static peers only', { peers: config.static.map((p) => p.agent), dns: config.dns.names });
      return service;
    }
    await service.#startMulticast(plan);
    try {
      if (config.dns.names.length > 0) service.#startDns();
    } catch (err) {
      await service.#stop(false);
      throw err;
    }
    const { advertiser } = service.#mc!;
    const { endpoints } = opts.self;
    log.info('discovery started', {
      fleet: config.fleet,
      keyId: advertiser.key.keyId,
      groups: config.groups,
      interface: config.interface,
      advertise: endpoints,
      endorsed: advertiser.endorsed,
      static: config.static.length,
    });
    // Multicast on the loopback interface reaches only this host: a fleet on a segment hears
    // nothing, silently. Said at start, naming the key.
    const offHost = endpoints.filter((e) => !isLoopbackHost(parseHostPort(e).host));
    if (isLoopbackHost(config.interface) && offHost.length > 0) {
      log.warn(
        "discovery.interface is the loopback interface, but this agent advertises an off-host endpoint: only agents on this host will hear it; set discovery.interface to this host's address on the fleet's segment",
        { interface: config.interface, advertise: offHost },
      );
    }
    service.#checkAdvertised();
    return service;
  }

  /**
   * Dials each advertised endpoint once, as a peer would, and warns (naming
   * discovery.advertise) when it does not lead back to this agent's certificate: peers would
   * fail their identity check against it and never use this agent. In the background: the
   * agent serves meanwhile.
   */
  #checkAdvertised(): void {
    const { self, tls, log } = this.#opts;
    if (!tls) return;
    for (const endpoint of self.endpoints) {
      void checkPeerIdentity(endpoint, { spiffeId: self.spiffe, sha256: self.tlsFingerprint }, tls).then((check) => {
        const reason = check.outcome === 'proved' ? undefined : check.reason;
        if (reason) log.warn('an advertised endpoint does not reach this agent: peers will not be able to use it; check discovery.advertise (and agent.listen)', { endpoint, reason });
        else log.info('advertised endpoint reaches this agent', { endpoint });
      });
    }
  }

  /** Follows discovery.dns.names (a bad discovery.dns.identities pattern stops start-up). */
  #startDns(): void {
    const { config, log, audit, trustDomains } = this.#opts;
    this.#dns = new DnsSource({
      config: config.dns,
      tls: () => this.#opts.tls,
      self: () => this.#opts.self.spiffe,
      trustDomains,
      log,
      warn: (kind, msg, fields) => this.#report.warn(kind, msg, fields),
      audit,
      now: this.#opts.now!,
    });
  }

  /** Opens the sockets with what the plan already read and checked (the key, endorsement and trust store). */
  async #startMulticast({ key: planned, endorsement, trust }: DiscoveryReloadPlan): Promise<void> {
    const { config, log, audit, trustDomains } = this.#opts;
    const now = this.#opts.now!;
    const key = planned!; // multicast: the plan read the signing key
    // All of a source's datagrams together: the whole fleet sends each host about the budget
    // (the smallest datagram, a heartbeat, is ~200 bytes), and one address may front all of it
    // (agents behind one NAT); four times that per second, twice that at once — and never less
    // than 1,000/s, so a small budget does not cut off a whole fleet's answers to a newcomer.
    const capPerSecond = Math.max(1000, Math.ceil((4 * config.budgetBytesPerSec) / 200));
    const verifier = createAdvertVerifier({
      fleet: config.fleet!,
      ...trust,
      trustDomains,
      maxSkewMs: config.maxSkewMs,
      now,
      perSourceCap: { perSecond: capPerSecond, burst: 2 * capPerSecond },
    });
    let receiver: Receiver | undefined;
    let transport: MulticastTransport;
    try {
      transport = await createMulticastTransport({
        groups: config.groups.map((group) => {
          const { host, port } = parseHostPort(group);
          return { address: host, port };
        }),
        interface: config.interface,
        onDatagram: (data, from) => receiver?.receive(data, from.address, from.own),
        // Counted (and reported) by the verifier as "oversize", which checks the size before
        // reading a byte, like any other rejected advert.
        onOversize: (data, from) => receiver?.receive(data, from.address, from.own),
        onError: (err) => log.warn('discovery socket error', { error: err.message }),
      });
    } catch (err) {
      throw new SkeinError('SKEIN_ERR_CONFIG', `config key "discovery.groups": ${(err as Error).message}`, { key: 'discovery.groups' }, { cause: err });
    }
    const advertiser = new Advertiser({
      self: this.#opts.self,
      fleet: config.fleet!,
      ttlMs: config.ttlMs,
      intervalMs: config.intervalMs,
      key,
      endorsement,
      send: (bytes) => transport.send(bytes),
      report: this.#report,
      now,
      wireVersion: config.wireVersion === 1 ? 1 : 2,
      budgetBytesPerSec: config.budgetBytesPerSec,
      peerCount: () => this.#table.size,
    });
    receiver = new Receiver({
      verifier,
      table: this.#table,
      report: this.#report,
      self: () => ({ agent: this.#opts.self.agent, keyId: advertiser.key.keyId }),
      tls: () => this.#opts.tls,
      log,
      audit,
      now,
      ttlMs: config.ttlMs,
      identityChecks: config.identityChecks,
      want: (keyId) => advertiser.want(keyId),
      wanted: () => advertiser.wanted(),
    });
    // Sign once now: a payload that cannot be advertised (too big) stops start-up, and what
    // was opened for it is released.
    try {
      await advertiser.start();
    } catch (err) {
      receiver.stop();
      await transport.close();
      throw err;
    }
    this.#mc = { transport, verifier, advertiser, receiver };
  }

  /**
   * Verified peers from advertisements, then those of DNS records, then the static ones from
   * config, each with its `source`. An agent known from a signed advert is not listed again
   * from DNS.
   */
  peers(): Array<MulticastPeer | DnsPeer | StaticPeer> {
    const multicast: MulticastPeer[] = this.#table.list().map(({ source, ...p }) => ({ ...p, source: 'multicast', from: source }));
    const known = new Set(multicast.map((p) => p.agent));
    const dns = (this.#dns?.list() ?? []).filter((p) => !known.has(p.agent));
    const statics: StaticPeer[] = this.#opts.config.static.map((p) => ({
      agent: p.agent,
      spiffe: p.spiffe,
      endpoints: [p.endpoint],
      routines: p.routines,
      tlsFingerprint: p.sha256,
      load: 0,
      capacity: 0,
      source: 'static',
      static: true,
    }));
    return [...multicast, ...dns, ...statics];
  }

  /** The DNS source's counters, when discovery.dns.names are set. */
  dnsStats(): DnsStats | undefined {
    return this.#dns?.stats();
  }

  table(): PeerTable {
    return this.#table;
  }

  counters(): Record<string, number> {
    return this.#report.counters();
  }

  /** Sends a signed goodbye (twice) and closes the sockets. Idempotent. */
  close(): Promise<void> {
    return this.#life.close();
  }

  /** Sends one goodbye without waiting for a second, and closes the sockets. Idempotent. */
  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }

  async #stop(graceful: boolean): Promise<void> {
    await this.#dns?.close();
    const mc = this.#mc;
    if (!mc) return;
    mc.receiver.stop();
    // Peers stop sending work at once instead of after the TTL: worth one datagram even when aborting.
    await mc.advertiser.goodbye(graceful);
    await mc.transport.close();
  }

  /** Checks the new discovery keys (reading the key and endorsement files); commit() applies them. */
  stage(next: AgentConfig, changed: readonly string[]): Staged | undefined {
    if (changed.length === 0) return undefined;
    const plan = planDiscoveryReload(next.discovery, { spiffe: this.#opts.self.spiffe, trustDomains: this.#opts.trustDomains, multicast: this.#mc !== undefined });
    return { commit: () => this.#apply(plan) };
  }

  #apply(plan: DiscoveryReloadPlan): void {
    const { log, audit } = this.#opts;
    this.#opts = { ...this.#opts, config: plan.config };
    const mc = this.#mc;
    if (!mc) return;
    mc.verifier.setTrust(plan.trust);
    for (const agent of this.#table.dropUntrusted((k) => mc.verifier.trustsKey(k))) {
      log.warn('peer dropped: its key is no longer trusted', { peer: agent });
      audit?.record('peer.evicted', { peer: agent, reason: 'untrusted' });
    }
    const previous = mc.advertiser.key;
    mc.advertiser.setKey(plan.key ?? previous, plan.endorsement);
    if (plan.key && plan.key.keyId !== previous.keyId) {
      mc.receiver.retiredOwnKey(previous.keyId);
      const rotated = { from: previous.keyId, to: plan.key.keyId };
      log.info('discovery signing key rotated', rotated);
      audit?.record('discovery.key_rotated', rotated);
      mc.advertiser.now();
    }
  }

  /**
   * A rotated TLS certificate: adverts carry its fingerprint (peers pin it), and identity
   * checks of new peers present it. Advertises at once so pins move with the certificate.
   */
  setTls(tls: TlsCredentials, tlsFingerprint: string): void {
    this.#opts = { ...this.#opts, tls, self: { ...this.#opts.self, tlsFingerprint } };
    this.#mc?.advertiser.setFingerprint(tlsFingerprint);
    this.#mc?.advertiser.now();
  }
}
