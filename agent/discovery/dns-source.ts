/**
 * Peers from DNS (discovery.dns): the SRV records of a Kubernetes headless Service or a Consul
 * service, resolved every intervalMs (./dns-resolve.ts). A record carries no signed advert, so
 * an endpoint is believed only after one TLS handshake (./identity-check.ts) proves a
 * certificate the fleet CA signed whose SPIFFE ID discovery.dns.identities allows (default
 * spiffe://<accepted trust domain>/agent/*), the agent name being its last segment. Its
 * routines (GET /v1/routines) and load (GET /healthz: inFlight of workers) are then read over
 * a connection pinned to exactly that certificate, again every round.
 *
 *   new endpoint ──handshake──▶ proved ──GET /v1/routines, /healthz──▶ listed (source "dns")
 *                      │ refused (another CA, a SPIFFE ID not allowed): never listed, retried after 5 min
 *                      │ unreachable: retried 2 s later, doubling up to 5 min
 *   record gone (next successful resolution) ─▶ dropped;  refresh fails ─▶ dropped, probed again
 *   resolver fails ─▶ last good answer kept (retried sooner, backing off up to intervalMs)
 *                     for keepStaleMs, said in the log and skein_dns_stale; then its peers go
 *
 * Bounded: at most maxRecords endpoints are followed, and at most DIAL_CONCURRENCY handshakes
 * or refreshes run at once, so a record set of thousands never becomes a burst of dials.
 */
import type { PeerCertificate } from 'node:tls';
import type { Audit } from '../audit/index.ts';
import { SkeinClient } from '../client/index.ts';
import type { DiscoveryConfig } from '../config/schema.ts';
import { NAME_PATTERN } from '../../common/names/index.ts';
import type { Logger } from '../log/index.ts';
import { presentedIdentity } from '../pki/pin.ts';
import { compileIdentityPattern, type Pattern } from '../plugin-host/api.ts';
import { compilePatternList } from '../plugin-host/allow-rules.ts';
import type { PeerFields } from './advert.ts';
import { checkPeerIdentity, type TlsCredentials } from './identity-check.ts';
import { createResolver, resolveEndpoints, type DnsEndpoint } from './dns-resolve.ts';

export type DnsConfig = DiscoveryConfig['dns'];

/** Handshakes and refreshes in flight at once. */
export const DIAL_CONCURRENCY = 8;
/** An endpoint refused by its certificate is tried again after this long (as a multicast peer's cool-down). */
const REFUSED_MS = 5 * 60_000;
const RETRY_FIRST_MS = 2000;
const RETRY_MAX_MS = 5 * 60_000;
/** First retry after a failed resolution; doubles up to intervalMs. */
const RESOLVE_RETRY_MS = 1000;
const REQUEST_TIMEOUT_MS = 3000;

/** A peer found through DNS, as GET /v1/peers lists it: the fields an advert would carry, read from the peer. */
export interface DnsPeer extends PeerFields {
  source: 'dns';
  /** The SRV record it was found through. */
  from: string;
  /** Time since its routines and load were last read. */
  ageMs: number;
  coolDownMs: 0;
}

export interface DnsStats {
  /** Resolutions that answered, and that failed. */
  resolutions: { ok: number; failed: number };
  /** Endpoints refused by their certificate. */
  refused: number;
  /** 1 while the last good answer is kept because resolution fails. */
  stale: boolean;
}

export interface DnsSourceOptions {
  config: DnsConfig;
  /** This agent's certificate: presented in each handshake and request. */
  tls: () => TlsCredentials | undefined;
  /** This agent's SPIFFE ID: its own record (it is in the Service too) is skipped. */
  self: () => string;
  /** Trust domains the listener accepts: the default allowed SPIFFE IDs are their agents. */
  trustDomains: readonly string[];
  log: Logger;
  /** Rate-limited warnings (./report.ts: one per kind every 10 s; the stale gauge carries the state). */
  warn: (kind: string, msg: string, fields: Record<string, unknown>) => void;
  audit?: Audit;
  now: () => number;
}

interface Peer {
  agent: string;
  spiffe: string;
  sha256: string;
  routines: string[];
  load: number;
  capacity: number;
  readAt: number;
  client: SkeinClient;
}

interface Endpoint extends DnsEndpoint {
  state: 'new' | 'listed' | 'refused' | 'unreachable' | 'self';
  /** When a refused or unreachable endpoint is tried again. */
  retryAt: number;
  wait: number;
  peer?: Peer;
}

export class DnsSource {
  #o: DnsSourceOptions;
  #identities: Pattern[];
  #endpoints = new Map<string, Endpoint>();
  #stats: DnsStats = { resolutions: { ok: 0, failed: 0 }, refused: 0, stale: false };
  /** When resolution last answered; undefined before the first answer. */
  #lastGoodAt: number | undefined;
  #failures = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #round: Promise<void> | undefined;
  #closed = false;

  /** Compiles discovery.dns.identities (SKEIN_ERR_CONFIG naming the key) and starts the first round. */
  constructor(opts: DnsSourceOptions) {
    this.#o = opts;
    const { config, trustDomains } = opts;
    const texts = config.identities.length ? config.identities : trustDomains.map((td) => `spiffe://${td}/agent/*`);
    this.#identities = compilePatternList(texts, 'discovery.dns.identities', compileIdentityPattern);
    opts.log.info('DNS discovery started', { names: config.names, resolver: config.resolver ?? 'system', intervalMs: config.intervalMs, identities: texts });
    this.#schedule(0);
  }

  /** The listed peers: one per certificate, with every endpoint that presented it. */
  list(): DnsPeer[] {
    const now = this.#o.now();
    const byCert = new Map<string, DnsPeer>();
    for (const e of this.#endpoints.values()) {
      const p = e.peer;
      if (e.state !== 'listed' || !p) continue;
      const seen = byCert.get(p.sha256);
      if (seen) {
        seen.endpoints.push(e.endpoint);
        continue;
      }
      byCert.set(p.sha256, {
        agent: p.agent,
        spiffe: p.spiffe,
        endpoints: [e.endpoint],
        routines: [...p.routines],
        load: p.load,
        capacity: p.capacity,
        tlsFingerprint: p.sha256,
        source: 'dns',
        from: e.record,
        ageMs: Math.max(0, now - p.readAt),
        coolDownMs: 0,
      });
    }
    return [...byCert.values()].sort((a, b) => (a.agent < b.agent ? -1 : a.agent > b.agent ? 1 : 0));
  }

  stats(): DnsStats {
    return { ...this.#stats, resolutions: { ...this.#stats.resolutions } };
  }

  /** Stops resolving and closes the peers' connections. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#round;
    await Promise.all([...this.#endpoints.values()].map((e) => e.peer?.client.destroy()));
    this.#endpoints.clear();
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#round = this.#run().finally(() => (this.#round = undefined));
    }, ms);
    this.#timer.unref?.();
  }

  async #run(): Promise<void> {
    const { config } = this.#o;
    let next = config.intervalMs;
    try {
      const answer = await resolveEndpoints(createResolver(config.resolver), config.names, config.maxRecords);
      this.#answered(answer.endpoints, answer.dropped);
    } catch (err) {
      this.#failed(err as Error);
      next = Math.min(config.intervalMs, RESOLVE_RETRY_MS * 2 ** (this.#failures - 1));
    }
    if (this.#closed) return;
    await this.#visit();
    this.#schedule(next);
  }

  #answered(endpoints: DnsEndpoint[], dropped: number): void {
    const { log, now } = this.#o;
    this.#stats.resolutions.ok++;
    if (this.#failures > 0 && this.#lastGoodAt !== undefined) log.info('DNS resolution answers again', { names: this.#o.config.names, failedFor: this.#failures });
    this.#failures = 0;
    this.#stats.stale = false;
    this.#lastGoodAt = now();
    if (dropped > 0) this.#o.warn('dns-max-records', 'DNS records beyond discovery.dns.maxRecords are ignored', { maxRecords: this.#o.config.maxRecords, ignored: dropped });
    const current = new Set(endpoints.map((e) => e.endpoint));
    for (const [endpoint, e] of this.#endpoints) if (!current.has(endpoint)) this.#forget(e, 'dns-removed', 'its DNS record is gone');
    for (const e of endpoints) if (!this.#endpoints.has(e.endpoint)) this.#endpoints.set(e.endpoint, { ...e, state: 'new', retryAt: 0, wait: 0 });
  }

  #failed(err: Error): void {
    const { log, now, config } = this.#o;
    this.#stats.resolutions.failed++;
    this.#failures++;
    const code = (err as NodeJS.ErrnoException).code ?? err.message;
    if (this.#lastGoodAt === undefined) {
      this.#o.warn('dns-failed', 'DNS resolution failed; no DNS peers until it answers', { names: config.names, error: code });
      return;
    }
    const staleForMs = now() - this.#lastGoodAt;
    if (staleForMs > config.keepStaleMs) {
      if (this.#endpoints.size > 0) {
        log.warn('DNS resolution has failed for longer than discovery.dns.keepStaleMs: dropping the peers of its last answer', {
          names: config.names,
          error: code,
          staleForMs,
          keepStaleMs: config.keepStaleMs,
        });
        for (const e of this.#endpoints.values()) this.#forget(e, 'dns-stale', 'DNS resolution failed for longer than discovery.dns.keepStaleMs');
      }
      this.#stats.stale = false;
      return;
    }
    this.#stats.stale = true;
    const fields = { names: config.names, error: code, staleForMs, keepStaleMs: config.keepStaleMs, peers: this.list().map((p) => p.agent) };
    // The first failure of a streak is always said; its retries at most once per 10 s.
    if (this.#failures === 1) log.warn('DNS resolution failed; keeping the last good answer', fields);
    else this.#o.warn('dns-stale', 'DNS resolution failed; keeping the last good answer', fields);
  }

  /** Probes new endpoints (and those due for a retry) and refreshes the listed ones, DIAL_CONCURRENCY at a time. */
  async #visit(): Promise<void> {
    const now = this.#o.now();
    const due = [...this.#endpoints.values()].filter((e) => e.state === 'new' || e.state === 'listed' || ((e.state === 'refused' || e.state === 'unreachable') && e.retryAt <= now));
    let i = 0;
    const worker = async () => {
      while (i < due.length && !this.#closed) {
        const e = due[i++]!;
        // Gone from the answer while waiting for its turn (close(), or a later round).
        if (this.#endpoints.get(e.endpoint) !== e) continue;
        await (e.state === 'listed' ? this.#refresh(e) : this.#probe(e));
      }
    };
    await Promise.all(Array.from({ length: Math.min(DIAL_CONCURRENCY, due.length) }, worker));
  }

  /** The handshake: the fleet CA's chain (verified by TLS), an allowed SPIFFE ID, an agent name. */
  async #probe(e: Endpoint): Promise<void> {
    const creds = this.#o.tls();
    if (!creds) return;
    const { log, audit, now } = this.#o;
    let presented: { spiffe: string; sha256: string } | undefined;
    let self = false;
    const judge = (cert: PeerCertificate): string | undefined => {
      const { spiffeId, sha256 } = presentedIdentity(cert);
      if (spiffeId === undefined) return 'presented a certificate without a SPIFFE ID';
      if (spiffeId === this.#o.self()) {
        self = true;
        return undefined;
      }
      if (!this.#identities.some((p) => p.re.test(spiffeId))) return `presented ${spiffeId}, which discovery.dns.identities does not allow (${this.#identities.map((p) => p.text).join(', ')})`;
      if (!NAME_PATTERN.test(spiffeId.slice(spiffeId.lastIndexOf('/') + 1))) return `presented ${spiffeId}, whose last segment is not an agent name`;
      presented = { spiffe: spiffeId, sha256 };
      return undefined;
    };
    const check = await checkPeerIdentity(e.endpoint, judge, creds, REQUEST_TIMEOUT_MS);
    if (this.#endpoints.get(e.endpoint) !== e) return;
    if (check.outcome === 'mismatch') {
      e.state = 'refused';
      e.retryAt = now() + REFUSED_MS;
      this.#stats.refused++;
      log.warn('DNS record leads to an endpoint refused by its certificate; not used', { record: e.record, target: e.target, endpoint: e.endpoint, reason: check.reason, retryInMs: REFUSED_MS });
      audit?.record('peer.refused', { discovery: 'dns', record: e.record, endpoint: e.endpoint, detail: check.reason, untrustedMs: REFUSED_MS });
      return;
    }
    if (check.outcome === 'unreachable') return this.#unreachable(e, check.reason);
    if (self || !presented) {
      e.state = 'self';
      return;
    }
    const agent = presented.spiffe.slice(presented.spiffe.lastIndexOf('/') + 1);
    const client = new SkeinClient({ peer: e.endpoint, ...creds, pin: { spiffeId: presented.spiffe, sha256: presented.sha256 }, connectTimeoutMs: REQUEST_TIMEOUT_MS });
    e.peer = { agent, spiffe: presented.spiffe, sha256: presented.sha256, routines: [], load: 0, capacity: 0, readAt: 0, client };
    if (!(await this.#read(e))) return;
    e.state = 'listed';
    e.wait = 0;
    const { routines } = e.peer;
    log.info('peer discovered', { peer: agent, spiffe: presented.spiffe, endpoints: [e.endpoint], routines, source: 'dns', record: e.record });
    audit?.record('peer.accepted', { peer: agent, spiffe: presented.spiffe, discovery: 'dns', record: e.record, endpoints: [e.endpoint], routines, tlsFingerprint: presented.sha256 });
  }

  async #refresh(e: Endpoint): Promise<void> {
    await this.#read(e);
  }

  /** Reads routines and load over the pinned connection; on failure the peer goes (and is probed again later). */
  async #read(e: Endpoint): Promise<boolean> {
    const peer = e.peer!;
    try {
      const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
      const [routines, health] = await Promise.race([
        Promise.all([peer.client.routines(), peer.client.health()]),
        new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)))),
      ]);
      if (this.#endpoints.get(e.endpoint) !== e) return false;
      if (health.status === 'draining') {
        this.#forget(e, 'draining', 'it is shutting down', true);
        return false;
      }
      peer.routines = routines.map((r) => r.name);
      peer.load = Number(health.inFlight ?? 0);
      peer.capacity = Number(health.workers ?? 0);
      peer.readAt = this.#o.now();
      return true;
    } catch (err) {
      if (this.#endpoints.get(e.endpoint) !== e) return false;
      const reason = (err as Error).message;
      if (e.state === 'listed') this.#forget(e, 'unreachable', reason, true);
      else {
        void peer.client.destroy();
        e.peer = undefined;
      }
      this.#unreachable(e, reason);
      return false;
    }
  }

  #unreachable(e: Endpoint, reason: string): void {
    e.state = 'unreachable';
    e.wait = Math.min(RETRY_MAX_MS, e.wait ? e.wait * 2 : RETRY_FIRST_MS);
    e.retryAt = this.#o.now() + e.wait;
    this.#o.log.info('DNS endpoint unreachable; tried again later', { record: e.record, endpoint: e.endpoint, reason, retryInMs: e.wait });
  }

  /**
   * Drops `e`'s peer (logged and audited when it was listed). `keep`: the endpoint stays
   * followed (its record is still there) and is probed again; otherwise it is forgotten.
   */
  #forget(e: Endpoint, reason: string, detail: string, keep = false): void {
    const peer = e.peer;
    if (peer) {
      void peer.client.destroy();
      if (e.state === 'listed') {
        this.#o.log.info('DNS peer dropped', { peer: peer.agent, endpoint: e.endpoint, record: e.record, reason, detail });
        this.#o.audit?.record('peer.evicted', { peer: peer.agent, reason, discovery: 'dns', record: e.record, endpoint: e.endpoint, detail });
      }
    }
    e.peer = undefined;
    if (keep) {
      e.state = 'new';
      return;
    }
    this.#endpoints.delete(e.endpoint);
  }
}
