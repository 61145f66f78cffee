/**
 * Dispatch across discovered peers. For each call the pool takes the peers offering the
 * routine (least loaded first, round robin among equals), connects with the peer's advertised
 * identity pinned (certificate SHA-256 and SPIFFE ID: anything else is refused before a
 * request is sent), and fails over to the next peer when a call cannot have reached a
 * routine: connection, handshake or identity failures. A call that may have reached a
 * routine is sent again only if the routine is declared idempotent. Peers that keep failing
 * are skipped for a cool-down; a peer that fails identity pinning is reported as untrusted.
 *
 * @example
 *   const pool = new PeerPool({ cert, key, ca, peers: () => fetchPeers() });
 *   const { result, peer } = await pool.dispatch('add', { args: [2, 3] });
 */
import { SkeinError } from '../../common/errors/index.ts';
import { SkeinClient, type DispatchOptions } from './index.ts';

export interface PeerEndpoint {
  agent: string;
  spiffe: string;
  endpoints: string[];
  tlsFingerprint: string;
  routines: string[];
  load?: number;
  capacity?: number;
  /** Set by the agent when the peer failed its identity check: skipped while > 0. */
  coolDownMs?: number;
}

export interface PeerPoolOptions {
  cert?: string | Buffer;
  key?: string | Buffer;
  ca?: string | Buffer;
  /** Token sent to every peer (see ClientOptions.token). */
  token?: string;
  /** Current peers, e.g. from an agent's GET /v1/peers or a discovery listener. */
  peers: () => PeerEndpoint[] | Promise<PeerEndpoint[]>;
  /** Routines whose calls may be sent twice (config: declared idempotent). */
  idempotent?: (routine: string) => boolean;
  /** Consecutive failures after which a peer is skipped, and for how long. */
  evictAfter?: number;
  evictMs?: number;
  /** Told when a peer failed identity pinning, so its advertisements can be distrusted. */
  onUntrusted?: (peer: PeerEndpoint, err: SkeinError) => void;
  now?: () => number;
}

/**
 * Client-side failures (no answer from the peer). Any server answer — a result or an error
 * code — is final. Of these, only those with details.sent === false (or identity refusals)
 * prove the request never reached a routine.
 */
const NO_ANSWER = new Set(['SKEIN_ERR_TLS', 'SKEIN_ERR_TRANSPORT', 'SKEIN_ERR_PEER_IDENTITY', 'SKEIN_ERR_CLIENT_TIMEOUT']);

export class PeerPool {
  #opts: PeerPoolOptions;
  #clients = new Map<string, SkeinClient>();
  #failures = new Map<string, { count: number; until: number }>();
  #turn = 0;

  constructor(opts: PeerPoolOptions) {
    this.#opts = opts;
  }

  async dispatch<T = unknown>(routine: string, options: DispatchOptions = {}): Promise<{ result: T; peer: PeerEndpoint }> {
    const now = this.#opts.now?.() ?? Date.now();
    const candidates = this.#order((await this.#opts.peers()).filter((p) => p.routines.includes(routine) && !(p.coolDownMs && p.coolDownMs > 0) && (this.#failures.get(p.agent)?.until ?? 0) <= now));
    if (candidates.length === 0) throw new SkeinError('SKEIN_ERR_NO_PEERS', `no trusted peer offers routine "${routine}"`, { routine });
    const errors: string[] = [];
    for (const peer of candidates) {
      for (const endpoint of peer.endpoints) {
        try {
          const result = await this.#client(peer, endpoint).dispatch<T>(routine, options);
          this.#failures.delete(peer.agent);
          return { result, peer };
        } catch (err) {
          const e = err instanceof SkeinError ? err : new SkeinError('SKEIN_ERR_TRANSPORT', String(err));
          if (!NO_ANSWER.has(e.code)) throw e; // the peer answered: final
          const sent = e.details.sent !== false && e.code !== 'SKEIN_ERR_PEER_IDENTITY';
          this.#recordFailure(peer, e);
          errors.push(`${peer.agent} (${endpoint}): ${e.code}`);
          if (sent && !this.#opts.idempotent?.(routine)) {
            throw new SkeinError(e.code, `${e.message}; not retried on another peer: the call may have reached routine "${routine}", which is not declared idempotent`, {
              ...e.details,
              peer: peer.agent,
            });
          }
          if (e.code === 'SKEIN_ERR_PEER_IDENTITY') break; // this peer is done, whatever its other endpoints
        }
      }
    }
    throw new SkeinError('SKEIN_ERR_NO_PEERS', `every peer offering "${routine}" failed: ${errors.join('; ')}`, { routine, errors });
  }

  async close(): Promise<void> {
    await Promise.all([...this.#clients.values()].map((c) => c.destroy()));
    this.#clients.clear();
  }

  /** Least loaded first; equal loads rotate so calls spread across them. */
  #order(peers: PeerEndpoint[]): PeerEndpoint[] {
    const ratio = (p: PeerEndpoint) => (p.capacity ? (p.load ?? 0) / p.capacity : 0);
    const turn = this.#turn++;
    return peers
      .map((p, i) => ({ p, key: ratio(p), tie: (i + turn) % peers.length }))
      .sort((a, b) => a.key - b.key || a.tie - b.tie)
      .map((x) => x.p);
  }

  #client(peer: PeerEndpoint, endpoint: string): SkeinClient {
    const id = `${peer.agent}|${endpoint}|${peer.tlsFingerprint}`;
    let client = this.#clients.get(id);
    if (!client) {
      client = new SkeinClient({
        peer: endpoint,
        cert: this.#opts.cert,
        key: this.#opts.key,
        ca: this.#opts.ca,
        ...(this.#opts.token !== undefined ? { token: this.#opts.token } : {}),
        pin: { spiffeId: peer.spiffe, sha256: peer.tlsFingerprint },
      });
      this.#clients.set(id, client);
    }
    return client;
  }

  #recordFailure(peer: PeerEndpoint, err: SkeinError): void {
    const now = this.#opts.now?.() ?? Date.now();
    const f = this.#failures.get(peer.agent) ?? { count: 0, until: 0 };
    f.count++;
    if (err.code === 'SKEIN_ERR_PEER_IDENTITY') {
      f.until = now + (this.#opts.evictMs ?? 30_000);
      this.#opts.onUntrusted?.(peer, err);
    } else if (f.count >= (this.#opts.evictAfter ?? 3)) {
      f.until = now + (this.#opts.evictMs ?? 30_000);
    }
    this.#failures.set(peer.agent, f);
    // Drop the connection so a later attempt reconnects (and re-verifies).
    for (const [id, c] of this.#clients)
      if (id.startsWith(`${peer.agent}|`)) {
        void c.destroy();
        this.#clients.delete(id);
      }
  }
}
