/**
 * The agent's Prometheus metrics (prom-client, a registry of its own, no default process
 * metrics). Events are counted where they happen through the small recorder interfaces
 * below; everything that is a state (queue depth, in-flight calls, peers, canary results,
 * advertisement counters, certificate expiry) is read from its owner at scrape time in
 * collect(), so the dispatch hot path only increments a counter and observes a histogram
 * (./dispatch.ts: plain numbers, made into series at scrape time).
 *
 * Label cardinality is bounded: routine names come from the config (an unknown routine a
 * caller names is counted as "_unknown"), outcomes are error codes, reasons are the
 * pipeline's / verifier's fixed vocabularies or plugin reasons (validated /^[A-Z][A-Z0-9_]{0,63}$/).
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { TLS_FAILURE_REASONS, type TlsFailureReason } from '../pki/tls-refusal.ts';
import { BUILD_DATE, COMMIT, VERSION } from '../version/index.ts';
import { DispatchSeries } from './dispatch.ts';
import { registerProcessMetrics } from './process.ts';

/** What the dispatch route records: one call per dispatch, whatever its outcome. */
export interface DispatchRecorder {
  dispatch(routine: string, outcome: string, seconds: number): void;
}
/** What the auth pipeline records: every rejection (401) and denial (403). */
export interface AuthRecorder {
  authRejected(kind: 'authn' | 'authz', reason: string): void;
}
/** What the worker pools record: spawns (initial or replacement), exits and recycles by reason. */
export interface WorkerRecorder {
  workerEvent(event: 'spawn' | 'exit', reason: string): void;
  /** A healthy worker retired after a call: maxCalls, memory, cpu, leftovers. */
  workerRecycled(reason: string): void;
}

/** What the workers' stderr relay records: output that did not reach the log (rate limit, cut lines). */
export interface StderrDropRecorder {
  stderrDropped(lines: number, bytes: number): void;
}

/** What the listener records: TLS handshakes that failed, by reason (agent/pki/tls-refusal.ts). */
export interface TlsFailureRecorder {
  tlsHandshakeFailed(reason: TlsFailureReason): void;
}

/** What the audit stream records: lines lost because the sink failed or its queue was full. */
export interface AuditLossRecorder {
  auditDropped(reason: 'sink' | 'overflow', lines: number): void;
}

/** What plugins' ctx.http records: every request a plugin made, by outcome ("ok" or the SKEIN_ERR_HTTP_* code). */
export interface PluginHttpRecorder {
  pluginHttpRequest(plugin: string, outcome: string, n?: number): void;
}

/** Scrape-time sources; each is optional (discovery off, sandbox "none"). */
export interface MetricSources {
  stats?: () => { workers: number; idle: number; queued: number; inFlight: number };
  /** Queued calls by the priority level they were queued at (agent/workers PRIORITIES). */
  queueDepth?: () => Record<string, number>;
  /** Async calls held in the results store, by status (agent/calls CALL_STATUSES), and their bytes. */
  asyncCalls?: () => { byStatus: Record<string, number>; bytes: number } | undefined;
  /** The start-up canary's result: each probe (agent/sandbox CANARY_PROBES) "blocked" or "allowed", plus errno details. */
  canary?: () => Record<string, unknown> | undefined;
  adverts?: () => Record<string, number> | undefined;
  peers?: () => number | undefined;
  /** discovery.dns (agent/discovery/dns-source.ts): resolutions, endpoints refused by their certificate, stale answer. */
  dns?: () => { resolutions: { ok: number; failed: number }; refused: number; stale: boolean } | undefined;
  /** notAfter of the agent's certificate. */
  certificateNotAfter?: () => Date | undefined;
}

/** 0.1 ms … 30 s, roughly ×2.5 per step. */
export const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
export const UNKNOWN_ROUTINE = '_unknown';

export class AgentMetrics implements DispatchRecorder, AuthRecorder, WorkerRecorder, StderrDropRecorder, AuditLossRecorder, TlsFailureRecorder, PluginHttpRecorder {
  readonly registry = new Registry();
  #sources: MetricSources = {};
  readonly #dispatches: DispatchSeries;
  readonly #auth: Counter<'kind' | 'reason'>;
  readonly #workers: Counter<'event' | 'reason'>;
  readonly #recycles: Counter<'reason'>;
  readonly #stderrLines: Counter;
  readonly #stderrBytes: Counter;
  readonly #reloads: Counter<'kind' | 'outcome'>;
  readonly #auditDropped: Counter<'reason'>;
  readonly #tlsFailures: Counter<'reason'>;
  readonly #pluginHttp: Counter<'plugin' | 'outcome'>;

  constructor() {
    const registers = [this.registry];
    const src = () => this.#sources;
    this.#dispatches = new DispatchSeries(this.registry, DURATION_BUCKETS);
    this.#auth = new Counter({
      name: 'skein_auth_rejections_total',
      help: 'Requests refused by authentication (authn, 401) or authorization (authz, 403), by reason.',
      labelNames: ['kind', 'reason'],
      registers,
    });
    this.#workers = new Counter({
      name: 'skein_worker_events_total',
      help: 'Python worker spawns (reason initial|replacement) and exits (reason: deadline, cancelled, recycle, protocol, oversize, shutdown, crash).',
      labelNames: ['event', 'reason'],
      registers,
    });
    this.#recycles = new Counter({
      name: 'skein_worker_recycles_total',
      help: 'Healthy workers retired after a call, by reason: maxCalls (workers.maxCallsPerWorker), memory (workers.recycleMemoryMb), cpu (near sandbox.cpuSeconds), leftovers (the call left threads, child processes, timers or trace hooks running).',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['maxCalls', 'memory', 'cpu', 'leftovers']) this.#recycles.labels(reason).inc(0);
    this.#stderrLines = new Counter({
      name: 'skein_worker_stderr_dropped_total',
      help: 'Lines of worker stderr (routine output) not written to the log because the workers.stderr rate limits were reached.',
      registers,
    });
    this.#stderrBytes = new Counter({
      name: 'skein_worker_stderr_dropped_bytes_total',
      help: 'Bytes of worker stderr not written to the log: lines dropped by the workers.stderr rate limits, and the parts of lines cut at 4096 bytes.',
      registers,
    });
    this.#auditDropped = new Counter({
      name: 'skein_audit_events_dropped_total',
      help: 'Audit lines lost: reason "sink" when the audit file or stderr could not be written (warned about once), "overflow" when the queue (audit.maxQueueLines) was full.',
      labelNames: ['reason'],
      registers,
    });
    // Both series exist from the start, so an alert on a rate sees 0 before the first loss.
    this.#auditDropped.labels('sink').inc(0);
    this.#auditDropped.labels('overflow').inc(0);
    this.#tlsFailures = new Counter({
      name: 'skein_tls_handshake_failures_total',
      help: 'TLS handshakes the listener refused or that failed, by reason: no-certificate, unknown-ca, expired, not-yet-valid, bad-key-usage, bad-certificate, protocol, handshake-timeout, closed, other.',
      labelNames: ['reason'],
      registers,
    });
    // Every reason exists from the start (a fixed set), so alerts see 0 before the first failure.
    for (const reason of TLS_FAILURE_REASONS) this.#tlsFailures.labels(reason).inc(0);
    this.#reloads = new Counter({
      name: 'skein_reloads_total',
      help: 'Reloads without restart: kind "tls" (certificate, key, CA files) or "config" (SIGHUP), outcome "applied" or "refused" (the old material or config kept serving).',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    for (const kind of ['tls', 'config']) for (const outcome of ['applied', 'refused']) this.#reloads.labels(kind, outcome).inc(0);
    this.#pluginHttp = new Counter({
      name: 'skein_plugin_http_requests_total',
      help: 'Outbound HTTPS requests plugins made through ctx.http (bearer-jwt: JWKS fetches), by plugin and outcome: "ok", or the SKEIN_ERR_HTTP_* code of the failure (SKEIN_ERR_HTTP_STATUS for an answer of 400 or more).',
      labelNames: ['plugin', 'outcome'],
      registers,
    });
    new Gauge({ name: 'skein_build_info', help: 'Always 1; the labels say which build is running.', labelNames: ['version', 'commit', 'build_date'], registers }).set(
      { version: VERSION, commit: COMMIT, build_date: BUILD_DATE },
      1,
    );
    registerProcessMetrics(registers);
    new Gauge({
      name: 'skein_queue_depth',
      help: 'Calls waiting for a free worker, by the priority they were queued at (high, normal, low; sum them for the whole queue).',
      labelNames: ['priority'],
      registers,
      collect() {
        const depth = src().queueDepth?.();
        if (depth) for (const [priority, n] of Object.entries(depth)) this.set({ priority }, n);
      },
    });
    new Gauge({
      name: 'skein_async_calls',
      help: 'Async calls held in the results store, by status (queued, running, succeeded, failed, cancelled, interrupted).',
      labelNames: ['status'],
      registers,
      collect() {
        const a = src().asyncCalls?.();
        if (a) for (const [status, n] of Object.entries(a.byStatus)) this.set({ status }, n);
      },
    });
    new Gauge({
      name: 'skein_async_store_bytes',
      help: 'Bytes of arguments, results and errors held in the async results store (bounded by calls.maxBytes).',
      registers,
      collect() {
        const a = src().asyncCalls?.();
        if (a) this.set(a.bytes);
      },
    });
    new Gauge({
      name: 'skein_in_flight',
      help: 'Calls queued or running.',
      registers,
      collect() {
        const s = src().stats?.();
        if (s) this.set(s.inFlight);
      },
    });
    new Gauge({
      name: 'skein_workers',
      help: 'Live Python workers.',
      registers,
      collect() {
        const s = src().stats?.();
        if (s) this.set(s.workers);
      },
    });
    new Gauge({
      name: 'skein_sandbox_canary_blocked',
      help: 'Start-up sandbox canary: 1 when the confined test worker was blocked from the probe, 0 when it was allowed (no series under sandbox.profile "none").',
      labelNames: ['probe'],
      registers,
      collect() {
        const c = src().canary?.();
        if (!c) return;
        // Every probe the canary reported (the list lives with the canary, in agent/sandbox);
        // other keys (errno) carry no verdict.
        for (const [probe, verdict] of Object.entries(c)) if (verdict === 'blocked' || verdict === 'allowed') this.set({ probe }, verdict === 'blocked' ? 1 : 0);
      },
    });
    new Counter({
      name: 'skein_adverts_total',
      help: 'Discovery advertisements received, by result ("accepted" or the reject reason).',
      labelNames: ['result'],
      registers,
      collect() {
        const counts = src().adverts?.();
        if (!counts) return;
        this.reset();
        for (const [result, n] of Object.entries(counts)) this.inc({ result }, n);
      },
    });
    new Gauge({
      name: 'skein_peers',
      help: 'Peers currently believed (verified advertisements, DNS records whose endpoint proved its certificate, static peers).',
      registers,
      collect() {
        const n = src().peers?.();
        if (n !== undefined) this.set(n);
      },
    });
    new Counter({
      name: 'skein_dns_resolutions_total',
      help: 'Resolutions of discovery.dns.names, by result ("ok" or "failed").',
      labelNames: ['result'],
      registers,
      collect() {
        const d = src().dns?.();
        if (!d) return;
        this.reset();
        this.inc({ result: 'ok' }, d.resolutions.ok);
        this.inc({ result: 'failed' }, d.resolutions.failed);
      },
    });
    new Counter({
      name: 'skein_dns_refused_total',
      help: 'Endpoints of DNS records refused by their TLS certificate (another CA, or a SPIFFE ID discovery.dns.identities does not allow).',
      registers,
      collect() {
        const d = src().dns?.();
        if (!d) return;
        this.reset();
        this.inc(d.refused);
      },
    });
    new Gauge({
      name: 'skein_dns_stale',
      help: '1 while DNS resolution fails and the peers of its last good answer are kept (for discovery.dns.keepStaleMs).',
      registers,
      collect() {
        const d = src().dns?.();
        if (d) this.set(d.stale ? 1 : 0);
      },
    });
    new Gauge({
      name: 'skein_tls_certificate_expiry_timestamp_seconds',
      help: 'notAfter of the agent certificate, as a Unix time in seconds.',
      registers,
      collect() {
        const d = src().certificateNotAfter?.();
        if (d) this.set(Math.floor(d.getTime() / 1000));
      },
    });
  }

  /** Sets the scrape-time sources (called once the agent's parts exist). */
  bind(sources: MetricSources): void {
    this.#sources = { ...this.#sources, ...sources };
  }

  dispatch(routine: string, outcome: string, seconds: number): void {
    this.#dispatches.record(routine, outcome, seconds);
  }

  authRejected(kind: 'authn' | 'authz', reason: string): void {
    this.#auth.labels(kind, reason).inc();
  }

  workerEvent(event: 'spawn' | 'exit', reason: string): void {
    this.#workers.labels(event, reason).inc();
  }

  workerRecycled(reason: string): void {
    this.#recycles.labels(reason).inc();
  }

  stderrDropped(lines: number, bytes: number): void {
    if (lines) this.#stderrLines.inc(lines);
    if (bytes) this.#stderrBytes.inc(bytes);
  }

  auditDropped(reason: 'sink' | 'overflow', lines: number): void {
    this.#auditDropped.labels(reason).inc(lines);
  }

  tlsHandshakeFailed(reason: TlsFailureReason): void {
    this.#tlsFailures.labels(reason).inc();
  }

  pluginHttpRequest(plugin: string, outcome: string, n = 1): void {
    this.#pluginHttp.labels(plugin, outcome).inc(n);
  }

  reload(kind: 'tls' | 'config', outcome: 'applied' | 'refused'): void {
    this.#reloads.labels(kind, outcome).inc();
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
