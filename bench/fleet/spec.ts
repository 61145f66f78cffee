/**
 * What the orchestrator (main.ts, root namespace) hands the simulator process (simulator.ts,
 * sender namespace): a spec file, then commands as JSON lines on stdin, each answered by one
 * JSON line on stdout carrying the same id.
 */

export interface SimAgentSpec {
  name: string;
  spiffe: string;
  /** Source address its adverts are sent from. */
  source: string;
  /** The endpoint it advertises (where the simulator's TLS responder answers for it). */
  endpoint: { address: string; port: number };
  routines: string[];
  /** Ed25519 seed, base64. */
  seed: string;
  /** Endorsement by the fleet root, base64. */
  endorsement: string;
  /** Its TLS certificate (PEM), issued by the fleet CA. */
  cert: string;
  /** SHA-256 of the certificate, lower-case hex, as adverts carry it. */
  tlsFingerprint: string;
  /** Advertising from the start (false: held back for a join). */
  active: boolean;
}

export interface SimSpec {
  fleet: string;
  group: { address: string; port: number };
  /** The sender namespace's own address: the multicast interface. */
  interface: string;
  intervalMs: number;
  ttlMs: number;
  /** discovery.wireVersion the simulated agents send (agent/discovery/advertiser.ts). */
  wireVersion: 1 | 2;
  /** discovery.budgetBytesPerSec: the fleet-wide advert budget per host they stretch their interval to. */
  budgetBytesPerSec: number;
  /** Peers each simulated agent sees (its estimate of the fleet, which the interval stretches with). */
  peerCount: number;
  /** The fleet root ("ed25519:…") and trust domain: the simulator verifies the real agents' records (their "want" lists). */
  rootKey: string;
  trustDomain: string;
  capacity: number;
  /** The private key of every simulated certificate (PEM). */
  tlsKey: string;
  agents: SimAgentSpec[];
}

export type SimCommand =
  | { op: 'stats' }
  /** How many times the simulated agents were asked for their records, and answered. */
  | { op: 'wants' }
  /** Stops advertising without a goodbye, as a host that lost power. */
  | { op: 'vanish'; index: number }
  /** Starts advertising (a held-back agent joins). */
  | { op: 'join'; index: number }
  /** Restarts with other routines: a goodbye, then a new advertisement at once (as a real agent's restart does). */
  | { op: 'change'; index: number; routines: string[] };

/** The responder process's one command: its counts of connections from one dialer (a real agent's address). */
export type ResponderCommand = { op: 'responder'; from: string };

export interface SendStats {
  /** Wall clock of the snapshot (unix ms). */
  at: number;
  datagrams: number;
  /** UDP payload bytes. */
  bytes: number;
  errors: number;
}

/** Connections from one dialer (TLS handshakes proved are in the dialer's log: "peer proved its identity"). */
export interface ResponderStats {
  /** TCP connections accepted. */
  connections: number;
  /** Most connections open at once. */
  peakConcurrent: number;
  /** Most connections accepted within one second. */
  peakPerSecond: number;
  /** Connections to an address:port no simulated agent owns (closed at once). */
  unknownEndpoint: number;
  /** Unix ms of the first and the last accepted connection (0: none yet). */
  firstAt: number;
  lastAt: number;
  /**
   * Connections accepted within 60 s of the first: distinct peers a real agent dialled in a
   * minute, each an entry in its host's neighbour table on a flat segment (default hard limit
   * 1,024, net.ipv4.neigh.default.gc_thresh3; an entry outlives its connection by ~a minute).
   */
  firstMinute: number;
}
