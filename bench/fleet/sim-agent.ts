/**
 * One simulated agent: the real advertiser (agent/discovery/advertiser.ts) with its own key,
 * endorsement and source socket. It is the agent's own code that schedules (interval stretched
 * by the fleet budget, ± jitter), chooses record or heartbeat, signs and frames every advert,
 * and answers a peer's request for its record, so a change to the discovery protocol there is
 * what the simulator sends. What lives here: how an agent is started, stopped and restarted,
 * and the options the advertiser takes (a new one is a compile error here, by design).
 */
import type { Socket } from 'node:dgram';
import { Advertiser } from '../../agent/discovery/advertiser.ts';
import type { DiscoveryReport } from '../../agent/discovery/report.ts';
import { keyPairFromPrivate, privateKeyFromSeed, type KeyPair } from '../../signing/index.ts';
import type { SendStats, SimAgentSpec, SimSpec } from './spec.ts';

export class SimAgent {
  #spec: SimAgentSpec;
  #fleet: SimSpec;
  #key: KeyPair;
  #endorsement: Uint8Array;
  #socket: Socket;
  #report: DiscoveryReport;
  #stats: SendStats;
  #advertiser: Advertiser | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Unix ms of its last advert sent (0: none yet). */
  lastSentAt = 0;

  constructor(spec: SimAgentSpec, fleet: SimSpec, socket: Socket, report: DiscoveryReport, stats: SendStats) {
    this.#spec = spec;
    this.#fleet = fleet;
    this.#key = keyPairFromPrivate(privateKeyFromSeed(Buffer.from(spec.seed, 'base64')));
    this.#endorsement = new Uint8Array(Buffer.from(spec.endorsement, 'base64'));
    this.#socket = socket;
    this.#report = report;
    this.#stats = stats;
  }

  get keyId(): string {
    return this.#key.keyId;
  }

  /** A real agent asked for this agent's record (its "want" was empty or named our key). */
  wanted(): void {
    this.#advertiser?.wanted();
  }

  get running(): boolean {
    return this.#advertiser !== undefined || this.#timer !== undefined;
  }

  /** Starts advertising after `delayMs` (a fleet's agents do not all start in the same millisecond). */
  start(delayMs = 0): void {
    if (this.running) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#advertiser = this.#newAdvertiser();
      this.#advertiser.start().catch((err) => process.stderr.write(`${this.#spec.name}: ${(err as Error).message}\n`));
    }, delayMs);
  }

  /** Stops without a goodbye. */
  vanish(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#advertiser?.stop();
    this.#advertiser = undefined;
  }

  /** A restart with other routines, as a real agent does it: the goodbye, then the new advert at once. */
  async restart(routines: string[]): Promise<void> {
    await this.#advertiser?.goodbye(true);
    this.#advertiser = undefined;
    this.#spec = { ...this.#spec, routines };
    this.#advertiser = this.#newAdvertiser();
    await this.#advertiser.start();
  }

  #newAdvertiser(): Advertiser {
    const { name, spiffe, endpoint, routines, tlsFingerprint } = this.#spec;
    const { fleet, ttlMs, intervalMs, capacity, group, wireVersion, budgetBytesPerSec, peerCount } = this.#fleet;
    const stats = this.#stats;
    return new Advertiser({
      self: { agent: name, spiffe, tlsFingerprint, endpoints: [`${endpoint.address}:${endpoint.port}`], routines, capacity, load: () => 0 },
      fleet,
      ttlMs,
      intervalMs,
      key: this.#key,
      endorsement: this.#endorsement,
      send: (bytes) =>
        new Promise<void>((resolve, reject) => {
          this.#socket.send(bytes, group.port, group.address, (err) => {
            if (err) {
              stats.errors++;
              reject(err);
              return;
            }
            stats.datagrams++;
            this.lastSentAt = Date.now();
            stats.bytes += bytes.length;
            resolve();
          });
        }),
      report: this.#report,
      now: Date.now,
      wireVersion,
      budgetBytesPerSec,
      peerCount: () => peerCount,
    });
  }
}
