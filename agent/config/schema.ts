/**
 * The agent's configuration schema: every key, its type, range, default and env override.
 * `AgentConfig` below is the typed result of validating a file against it, derived from the
 * schema (ConfigOf), so a key added here is a key of the type.
 */
import type { ConfigOf, Node } from './schema-dsl.ts';
import { TRUST_DOMAIN_PATTERN } from '../../common/spiffe/index.ts';
import { FLEET_HINT, FLEET_PATTERN, NAME_HINT, NAME_PATTERN, PLUGIN_NAME_HINT, PLUGIN_NAME_PATTERN, PYTHON_IDENTIFIER_PATTERN } from '../../common/names/index.ts';

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const MiB = 1024 * 1024;
/** A DNS name (RFC 1035 labels; "_" allowed for SRV owner names like _skein._tcp), optionally fully qualified. */
const DNS_NAME = /^(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$/;

export const CONFIG_SCHEMA = {
  kind: 'object',
  description: 'skein agent configuration',
  fields: {
    $schema: { kind: 'string', description: 'Path or URL of the JSON Schema (for editors; ignored by the agent).' },
    extends: { kind: 'string', path: true, description: 'A fleet config file this file builds on; values here win. Relative to this file.' },
    agent: {
      kind: 'object',
      description: 'Identity and listener of this agent.',
      fields: {
        name: { kind: 'string', pattern: NAME_PATTERN, patternHint: NAME_HINT, description: 'Agent name, used in its SPIFFE ID and logs. Defaults to "dev".', default: 'dev', env: 'SKEIN_AGENT_NAME' },
        listen: {
          kind: 'string',
          pattern: HOST_PORT,
          patternHint: 'HOST:PORT (IPv6 as [addr]:port)',
          default: '127.0.0.1:7443',
          description: 'Address the HTTP/2 + mTLS listener binds.',
          env: 'SKEIN_LISTEN',
        },
        stateDir: { kind: 'string', path: true, default: '.skein', description: 'Directory for the development PKI and runtime state. Relative to the config file.', env: 'SKEIN_STATE_DIR' },
      },
    },
    admin: {
      kind: 'object',
      description: 'The admin listener: plain HTTP/1.1 serving /metrics (Prometheus text), /healthz and /readyz, separate from the dispatch listener.',
      fields: {
        enabled: { kind: 'boolean', default: true, description: 'Serve the admin endpoints.', env: 'SKEIN_ADMIN_ENABLED' },
        listen: {
          kind: 'string',
          pattern: HOST_PORT,
          patternHint: 'HOST:PORT (IPv6 as [addr]:port)',
          default: '127.0.0.1:0',
          description: 'Address the admin listener binds (port 0: a free port, logged as "admin listening"). Off loopback it requires admin.token.',
          env: 'SKEIN_ADMIN_LISTEN',
        },
        token: {
          kind: 'string',
          secret: true,
          pattern: /^[\x21-\x7e]{16,256}$/,
          patternHint: '16 to 256 printable ASCII characters without spaces',
          description: 'Bearer token every admin request must carry (Authorization: Bearer <token>); required when admin.listen is not a loopback address.',
          env: 'SKEIN_ADMIN_TOKEN',
        },
      },
    },
    log: {
      kind: 'object',
      description: 'Logging to stderr.',
      fields: {
        level: { kind: 'enum', values: ['debug', 'info', 'warn', 'error'], default: 'info', description: 'Minimum level written.', env: 'SKEIN_LOG_LEVEL' },
        format: { kind: 'enum', values: ['json', 'text'], default: 'json', description: 'JSON lines for machines, text for people.', env: 'SKEIN_LOG_FORMAT' },
      },
    },
    audit: {
      kind: 'object',
      description:
        'The audit stream (docs/audit.md): one versioned JSON line per start, stop, plugin and routine load, authentication and authorization decision, worker spawn/kill/crash/recycle, peer change and reload. A failing sink never stops the agent: it is warned about once and counted.',
      fields: {
        sink: {
          kind: 'enum',
          values: ['stderr', 'file', 'off'],
          default: 'stderr',
          env: 'SKEIN_AUDIT_SINK',
          description: 'stderr: interleaved with the log (tell them apart by "schema"); file: appended to audit.path; off: no audit stream.',
        },
        path: {
          kind: 'string',
          path: true,
          env: 'SKEIN_AUDIT_PATH',
          description: 'Audit file for sink "file": opened for append, created mode 0600, re-opened on SIGHUP (logrotate). Relative to the config file.',
        },
        maxQueueLines: {
          kind: 'integer',
          min: 16,
          max: 10_000_000,
          default: 10_000,
          description: 'Audit lines that may wait for a slow sink; beyond it lines are dropped and counted (skein_audit_events_dropped_total), never blocking dispatch.',
        },
      },
    },
    tls: {
      kind: 'object',
      description: 'Mutual TLS. Leave cert, key and ca unset to use a development PKI created in agent.stateDir on first start.',
      fields: {
        cert: { kind: 'string', path: true, description: 'PEM certificate chain the agent presents.', env: 'SKEIN_TLS_CERT' },
        key: { kind: 'string', path: true, secret: false, description: 'PEM private key of the certificate (the file path is not secret; its content never appears in output).', env: 'SKEIN_TLS_KEY' },
        ca: { kind: 'string', path: true, description: 'PEM CA bundle that client certificates must chain to.', env: 'SKEIN_TLS_CA' },
        minVersion: { kind: 'enum', values: ['TLSv1.3', 'TLSv1.2'], default: 'TLSv1.3', description: 'Lowest TLS version accepted. TLS 1.2, if enabled, allows only ECDHE AEAD suites.' },
        trustDomain: { kind: 'string', pattern: /^[a-z0-9.-]+$/, patternHint: 'a lower-case DNS-like name', default: 'skein.local', description: 'SPIFFE trust domain of the development PKI.' },
        trustDomains: {
          kind: 'array',
          maxItems: 64,
          items: { kind: 'string', pattern: TRUST_DOMAIN_PATTERN, patternHint: 'a SPIFFE trust domain (lower-case a-z, 0-9, ".", "-", "_")', description: 'Trust domain.' },
          description:
            "Trust domains a client certificate's SPIFFE ID must be in; any other is refused (401 UNTRUSTED_TRUST_DOMAIN). Unset: the trust domains the CA certificates in tls.ca name in their URI SAN (spiffe://<trust domain>, as skein pki init writes it), else tls.trustDomain.",
        },
        clientCerts: {
          kind: 'enum',
          values: ['require', 'optional'],
          default: 'require',
          description: 'require: mutual TLS; optional: one-way TLS where callers without a certificate must authenticate with a token plugin.',
        },
        plaintext: {
          kind: 'boolean',
          default: false,
          description:
            'Serve plaintext HTTP/2 (h2c, prior knowledge) instead of TLS: only behind a TLS-terminating proxy on the same host, or for tests. Every caller is anonymous and must authenticate with a token plugin; logged as a warning at start, refused by security.strict without a token plugin or off loopback.',
        },
      },
    },
    limits: {
      kind: 'object',
      description: 'Request, queue and deadline limits.',
      fields: {
        maxBodyBytes: { kind: 'integer', min: 64, max: 256 * MiB, default: MiB, description: 'Largest request body accepted; larger gets 413.' },
        maxResultBytes: {
          kind: 'integer',
          min: 1024,
          max: 1024 * MiB,
          default: 16 * MiB,
          description:
            'Largest result or item frame a worker may send (larger kills the worker), and the most a generator called without a stream may yield in all (past it the call fails and the generator is stopped).',
        },
        queueSize: { kind: 'integer', min: 0, max: 1_000_000, default: 1024, description: 'Calls that may wait for a free worker; beyond it, 503 at once.' },
        defaultTimeoutMs: { kind: 'integer', min: 1, max: 86_400_000, default: 30_000, description: 'Deadline of a call when the request names none.' },
        maxTimeoutMs: {
          kind: 'integer',
          min: 1,
          max: 86_400_000,
          default: 300_000,
          description: 'Largest deadline a caller may request with the x-skein-timeout-ms header; a larger one is refused (400 SKEIN_ERR_BAD_REQUEST).',
        },
        drainTimeoutMs: { kind: 'integer', min: 0, max: 3_600_000, default: 10_000, description: 'On SIGTERM/SIGINT, how long in-flight calls may finish before workers are stopped.' },
      },
    },
    http2: {
      kind: 'object',
      description: 'HTTP/2 and connection hardening of the listener (limits per connection, per client address and per server).',
      fields: {
        maxConcurrentStreams: {
          kind: 'integer',
          min: 1,
          max: 65_535,
          default: 256,
          description: 'Streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused with REFUSED_STREAM.',
        },
        maxHeaderListBytes: {
          kind: 'integer',
          min: 1024,
          max: 1_048_576,
          default: 16_384,
          description:
            'Largest request header list (SETTINGS_MAX_HEADER_LIST_SIZE); a larger one resets the stream (ENHANCE_YOUR_CALM) and the connection keeps serving. A header block over max(this, 64 KiB) cannot be decoded and closes the connection with GOAWAY(COMPRESSION_ERROR) (operations.md).',
        },
        idleTimeoutMs: { kind: 'integer', min: 0, max: 86_400_000, default: 120_000, description: 'A connection with no traffic and no open stream for this long is closed with GOAWAY (0: never).' },
        handshakeTimeoutMs: { kind: 'integer', min: 100, max: 600_000, default: 10_000, description: 'A connection that has not completed the TLS handshake within this is destroyed.' },
        maxConnectionsPerIp: { kind: 'integer', min: 1, max: 1_000_000, default: 64, description: 'Open connections one client address may hold; extra ones are destroyed before the TLS handshake.' },
        maxConnections: { kind: 'integer', min: 1, max: 1_000_000, default: 4096, description: 'Open connections in total; extra ones are destroyed before the TLS handshake.' },
        maxResetsPerSecond: {
          kind: 'integer',
          min: 1,
          max: 1_000_000,
          default: 200,
          description:
            'Streams a client may cancel (RST_STREAM before the response ended) per connection within one second; above it the connection gets GOAWAY(ENHANCE_YOUR_CALM) and is closed (rapid reset, CVE-2023-44487).',
        },
        maxControlFramesPerSecond: {
          kind: 'integer',
          min: 1,
          max: 1_000_000,
          default: 100,
          description: 'PING and SETTINGS frames a client may send per connection within one second; above it the connection gets GOAWAY(ENHANCE_YOUR_CALM) and is closed.',
        },
        writeStallTimeoutMs: {
          kind: 'integer',
          min: 0,
          max: 3_600_000,
          default: 30_000,
          description: 'A response the client does not read (output buffered and not draining) for this long is reset (slow-read defence; 0: never).',
        },
      },
    },
    workers: {
      kind: 'object',
      description: 'The pool of persistent Python workers.',
      fields: {
        poolSize: { kind: 'integer', min: 0, max: 1024, default: 0, description: 'Workers per pool (per routine under isolation "routine"); 0 means one per CPU.', env: 'SKEIN_POOL_SIZE' },
        isolation: {
          kind: 'enum',
          values: ['routine', 'shared'],
          default: 'routine',
          description:
            "routine: each routine has workers of its own, so a hostile routine can never see or answer another routine's calls; shared: all routines share one pool (fewer processes, no isolation between routines).",
        },
        python: { kind: 'string', default: 'python3', description: 'Python interpreter (name on PATH or absolute path).', env: 'SKEIN_PYTHON' },
        memoryLimitMb: { kind: 'integer', min: 32, max: 1_048_576, default: 1024, description: 'Address-space limit per worker (RLIMIT_AS), MiB.' },
        maxOpenFiles: { kind: 'integer', min: 16, max: 65_536, default: 64, description: 'Open-file limit per worker (RLIMIT_NOFILE).' },
        startTimeoutMs: { kind: 'integer', min: 100, max: 600_000, default: 10_000, description: 'A worker not ready within this is killed and counted as a crash.' },
        maxCallsPerWorker: { kind: 'integer', min: 0, max: 1_000_000_000, default: 100_000, description: 'A worker is replaced after this many calls (0: never), bounding slow leaks in routines.' },
        recycleMemoryMb: {
          kind: 'integer',
          min: 0,
          max: 1_048_576,
          default: 512,
          description: 'A worker whose resident memory passes this (checked every 8 calls) is replaced after its call (0: never).',
        },
        circuit: {
          kind: 'object',
          description: 'Per-routine circuit breaker for routines that keep killing their workers (crash, protocol violation, oversize reply).',
          fields: {
            failures: { kind: 'integer', min: 1, max: 1000, default: 5, description: 'Worker kills within windowMs that open the circuit.' },
            windowMs: { kind: 'integer', min: 100, max: 86_400_000, default: 60_000, description: 'Window in which kills are counted.' },
            cooldownMs: {
              kind: 'integer',
              min: 100,
              max: 86_400_000,
              default: 30_000,
              description:
                'How long an open circuit refuses calls (503 SKEIN_ERR_CIRCUIT_OPEN) before one trial call, which calls arriving meanwhile wait for; a half-open circuit nobody calls for this long again closes.',
            },
          },
        },
        stderr: {
          kind: 'object',
          description:
            "How much of what routines write to stderr (print, tracebacks, logging) reaches the agent log. Per worker; a pool's workers share pool size × these, with bursts of 10 s worth, and replacing a worker does not refill them. Beyond them output is dropped and counted (skein_worker_stderr_dropped_total), with one notice at most every 10 s. Floods are packed several lines to a log line (up to 4 KiB); lines are cut at 4 KiB.",
          fields: {
            linesPerSecond: { kind: 'integer', min: 1, max: 100_000, default: 20, description: 'Agent log lines of worker stderr per second, per worker.' },
            bytesPerSecond: { kind: 'integer', min: 1024, max: 100 * MiB, default: 32 * 1024, description: 'Bytes of worker stderr written to the agent log per second, per worker.' },
          },
        },
      },
    },
    security: {
      kind: 'object',
      description: 'Security posture.',
      fields: {
        strict: {
          kind: 'boolean',
          default: false,
          env: 'SKEIN_STRICT',
          description:
            'Refuse to start, listing every violation, unless the configuration is secure: mutual TLS or a token plugin (plaintext h2c only on loopback, with a token plugin), TLS 1.3, sandbox profile "full", signed plugins, a discovery trust store, private key and config files not readable by others, no authorization.default "allow" when reachable off-host, the audit stream on.',
        },
      },
    },
    sandbox: {
      kind: 'object',
      description: 'Confinement of Python workers (docs/sandbox.md).',
      removed: {
        allowPrivateCodeAddresses:
          'it let routine URLs reach loopback and private addresses, for tests only; routine code comes only from public addresses (serve it from a public host, or load the routine from a file)',
      },
      fields: {
        profile: {
          kind: 'enum',
          values: ['full', 'standard', 'none'],
          // Was "strict" until it was renamed, so "strict" means only security.strict.
          renamed: { strict: 'full' },
          default: 'full',
          env: 'SKEIN_SANDBOX_PROFILE',
          description:
            'full: every layer (seccomp, Landlock or bubblewrap, a network cut-off) or the agent refuses to start, and the canary must fail everything; standard: apply what the host offers, warn about the rest; none: debugging only, loud warning.',
        },
        bubblewrap: { kind: 'boolean', default: false, description: 'Run workers inside bwrap (mount and pid namespaces, cleared environment) as an outer layer when bwrap is on PATH.' },
        blockedModules: {
          kind: 'array',
          maxItems: 1000,
          items: { kind: 'string', pattern: /^[A-Za-z_][A-Za-z0-9_.]*$/, patternHint: 'a Python module name', description: 'Module name.' },
          default: ['ctypes', 'subprocess', 'multiprocessing', 'socket', 'pty'],
          description: 'Modules routines may not import (audit-hook tripwire; defence in depth, not the boundary).',
        },
        allowedPackages: {
          kind: 'array',
          maxItems: 1000,
          items: { kind: 'string', pattern: PYTHON_IDENTIFIER_PATTERN, patternHint: 'a top-level package name', description: 'Package name.' },
          default: [],
          env: 'SKEIN_PYTHON_ALLOWED_PACKAGES',
          description: 'Third-party top-level packages routines may import from sandbox.packagePaths; Landlock makes every other package there unreadable.',
        },
        packagePaths: {
          kind: 'array',
          maxItems: 100,
          items: { kind: 'string', path: true, description: 'Directory.' },
          default: [],
          description: 'Directories holding third-party packages (e.g. a site-packages); added to sys.path, readable only for allowedPackages.',
        },
        allowedCodeHosts: {
          kind: 'array',
          maxItems: 1000,
          items: { kind: 'string', pattern: /^[a-z0-9.-]+$/, patternHint: 'a lower-case host name', description: 'Host.' },
          default: [],
          description: 'Hosts that routine code may be fetched from (routines.<name>.url).',
        },
        codeCa: { kind: 'string', path: true, description: 'Extra PEM CA bundle trusted for routine URLs (on top of the system CAs).' },
        cpuSeconds: {
          kind: 'integer',
          min: 0,
          max: 31_536_000,
          default: 3600,
          description: 'RLIMIT_CPU backstop per worker over its life; the pool recycles a worker at 80% of it (0: off). Deadlines are enforced by the agent, not by this.',
        },
        fileSizeMb: {
          kind: 'integer',
          min: 0,
          max: 1_048_576,
          default: 16,
          description: 'RLIMIT_FSIZE per worker in MiB (0: unlimited); under profile "full", Landlock leaves no writable path anyway.',
        },
        processes: { kind: 'integer', min: 0, max: 100_000, default: 256, description: 'RLIMIT_NPROC for workers (threads count; not enforced for root).' },
      },
    },
    plugins: {
      kind: 'object',
      description: 'Authentication and authorization hooks loaded from the plugins folder (docs/plugins.md).',
      fields: {
        dir: { kind: 'string', path: true, default: 'plugins', description: 'Folder plugins are loaded from, relative to the config file.' },
        enabled: {
          kind: 'array',
          maxItems: 64,
          default: [],
          description: 'Plugins to run, in order: authenticate hooks in this order, then every authorize hook (any deny wins).',
          items: {
            kind: 'object',
            description: 'One enabled plugin.',
            required: ['name'],
            fields: {
              name: { kind: 'string', pattern: PLUGIN_NAME_PATTERN, patternHint: PLUGIN_NAME_HINT, description: 'Plugin name: loads <dir>/<name>.ts, .mjs or .js.' },
              options: { kind: 'json', description: 'Options for the plugin, validated by the plugin itself.' },
              allowedHosts: {
                kind: 'array',
                maxItems: 100,
                default: [],
                items: { kind: 'string', pattern: /^([a-z0-9.-]+|\[[0-9a-f:.]+\])$/, patternHint: 'a lower-case host name or IP literal (IPv6 in brackets)', description: 'Host.' },
                description:
                  'Hosts the plugin may reach over HTTPS through ctx.http (e.g. the bearer-jwt jwksUrl host), compared exactly with the host of every URL and redirect target; empty: none. Enforced by the agent, not by the plugin.',
              },
              allowPrivateAddresses: {
                kind: 'boolean',
                default: false,
                description:
                  "Let the plugin's ctx.http reach loopback, RFC 1918, CGNAT and IPv6 unique-local addresses (an internal identity provider). Link-local (cloud metadata), multicast and reserved addresses stay refused. Logged as a warning at start.",
              },
            },
          },
        },
        requireSignature: { kind: 'boolean', default: false, description: 'Load only plugins whose <file>.sig verifies against plugins.trustedKeys.' },
        trustedKeys: {
          kind: 'array',
          maxItems: 100,
          default: [],
          items: { kind: 'string', pattern: /^ed25519:[A-Za-z0-9_-]{43}$/, patternHint: 'an "ed25519:<base64url>" public key (skein keygen)', description: 'Public key.' },
          description: 'Keys trusted to sign plugins.',
        },
        hookTimeoutMs: { kind: 'integer', min: 1, max: 60_000, default: 1000, description: 'Time budget of one hook call; a hook that exceeds it fails closed.' },
        requireToken: { kind: 'boolean', default: false, description: 'Require a token-authenticated identity on top of the client certificate (second factor).' },
      },
    },
    authorization: {
      kind: 'object',
      description:
        'Who may run which routine (docs/plugins.md#order-and-how-decisions-combine). The authorize hooks of plugins.enabled decide first: any deny refuses, an allow allows. When every hook abstains (or no plugin authorizes), the first authorization.allow rule that matches allows; with none, authorization.default decides. The audit line of every decision names the rule that decided.',
      fields: {
        default: {
          kind: 'enum',
          values: ['deny', 'allow'],
          default: 'deny',
          description:
            'The decision when no plugin decides and no authorization.allow rule matches. "allow" lets every authenticated caller run every routine nothing else covers: warned about at start, refused by security.strict off loopback.',
        },
        allow: {
          kind: 'array',
          maxItems: 10_000,
          default: [],
          description:
            'Allow rules, checked in order; the first that matches the caller and the routine allows (recorded as authorization.allow[i]). Patterns are those of the routine-policy plugin: exact, or "*" globs (docs/plugins.md#patterns).',
          items: {
            kind: 'object',
            description:
              "One allow rule: one of its identity patterns matches one of the caller's identities (the client certificate's SPIFFE ID, or a principal from a token plugin such as jwt:alice) and one of its routine patterns matches the routine.",
            required: ['identities', 'routines'],
            fields: {
              identities: {
                kind: 'array',
                maxItems: 1000,
                items: { kind: 'string', description: 'Identity pattern.' },
                description: 'Identity patterns, e.g. spiffe://skein.local/client/dev-client, spiffe://skein.local/client/*, jwt:*.',
              },
              routines: { kind: 'array', maxItems: 1000, items: { kind: 'string', description: 'Routine pattern.' }, description: 'Routine names or globs, e.g. add, report.*, *.' },
            },
          },
        },
      },
    },
    calls: {
      kind: 'object',
      description: 'Calls as work (docs/calls.md): the async results store, stream buffers, priorities and fair queues.',
      fields: {
        store: {
          kind: 'string',
          path: true,
          description: 'SQLite file (WAL mode) holding async calls and their results; default calls.db in agent.stateDir. Relative to the config file.',
          env: 'SKEIN_CALLS_STORE',
        },
        resultTtlMs: { kind: 'integer', min: 1000, max: 31_536_000_000, default: 86_400_000, description: 'How long a finished async call and its result are kept, from when it finished.' },
        maxStored: {
          kind: 'integer',
          min: 1,
          max: 100_000_000,
          default: 100_000,
          description: 'Async calls the store may hold (any status); a submission past it is refused (503 SKEIN_ERR_STORE_FULL), never dropping an accepted call.',
        },
        maxBytes: {
          kind: 'integer',
          min: MiB,
          max: 1024 * 1024 * MiB,
          default: 1024 * MiB,
          description: 'Bytes of arguments and results the store may hold; a submission past it is refused (503 SKEIN_ERR_STORE_FULL).',
        },
        streamBufferItems: {
          kind: 'integer',
          min: 1,
          max: 65_536,
          default: 16,
          description: 'Items of a streaming call the agent holds for a caller that reads slowly; the generator pauses at its next yield until the caller catches up.',
        },
        agingMs: {
          kind: 'integer',
          min: 1,
          max: 86_400_000,
          default: 5000,
          description: 'A queued call that waited this long is served as if one priority level higher (twice this: two levels), so low priority is never starved.',
        },
        weights: {
          kind: 'array',
          maxItems: 1000,
          default: [],
          description: "Fair-share weights of caller identities within a priority level (default weight 1): the first rule whose pattern matches one of the caller's identities applies.",
          items: {
            kind: 'object',
            description: 'One weight rule.',
            required: ['identities', 'weight'],
            fields: {
              identities: {
                kind: 'array',
                maxItems: 1000,
                items: { kind: 'string', description: 'Identity pattern.' },
                description: 'Identity patterns (as authorization.allow), e.g. spiffe://skein.local/client/batch-*, jwt:alice.',
              },
              weight: { kind: 'integer', min: 1, max: 1000, description: 'Share relative to the default 1.' },
            },
          },
        },
      },
    },
    discovery: {
      kind: 'object',
      description: 'Peers: signed multicast advertisements (believed only if signed by a trusted or endorsed key), static peers and DNS SRV records (docs/discovery.md).',
      fields: {
        enabled: { kind: 'boolean', default: false, description: 'Advertise this agent and listen for peers.' },
        fleet: { kind: 'string', pattern: FLEET_PATTERN, patternHint: FLEET_HINT, description: 'Fleet id; advertisements of other fleets are dropped.' },
        signingKey: { kind: 'string', path: true, description: "Ed25519 private key that signs this agent's advertisements (skein keygen); refused if group/other can read it." },
        endorsement: { kind: 'string', path: true, description: 'Endorsement of the signing key by a fleet root key (skein key endorse), carried in every advertisement.' },
        trustedKeys: {
          kind: 'array',
          maxItems: 10_000,
          default: [],
          items: {
            kind: 'string',
            pattern: /^ed25519:[A-Za-z0-9_-]{43}(@spiffe:\/\/\S+)?$/,
            patternHint: '"ed25519:<base64url>", optionally "@spiffe://…" to pin the SPIFFE ID it may claim',
            description: 'Agent key.',
          },
          description: 'Agent public keys whose advertisements are believed.',
        },
        rootKeys: {
          kind: 'array',
          maxItems: 100,
          default: [],
          items: { kind: 'string', pattern: /^ed25519:[A-Za-z0-9_-]{43}$/, patternHint: 'an "ed25519:<base64url>" public key', description: 'Root key.' },
          description: 'Fleet root keys whose endorsements make an agent key trusted (for the SPIFFE ID it names).',
        },
        groups: {
          kind: 'array',
          maxItems: 4,
          default: ['239.255.77.77:7946'],
          items: { kind: 'string', pattern: /^(\[[0-9a-fA-F:]+\]|[0-9.]+):\d{1,5}$/, patternHint: 'GROUP:PORT (IPv6 as [ff15::7777]:7946)', description: 'Multicast group.' },
          description: 'Multicast groups advertisements are sent to and received from.',
        },
        interface: { kind: 'string', default: '127.0.0.1', description: 'Local IPv4 address of the interface multicast uses (127.0.0.1 keeps it on this host).' },
        advertise: {
          kind: 'array',
          maxItems: 8,
          default: [],
          items: { kind: 'string', pattern: HOST_PORT, patternHint: 'HOST:PORT (IPv6 as [addr]:port)', description: 'Endpoint.' },
          description: 'Endpoints peers should dial (default: agent.listen; required when listening on 0.0.0.0).',
        },
        intervalMs: {
          kind: 'integer',
          min: 100,
          max: 600_000,
          default: 2000,
          description: 'Shortest advertisement interval (±20 % jitter); it stretches as the fleet grows to keep within budgetBytesPerSec, up to ttlMs / 3.',
        },
        ttlMs: {
          kind: 'integer',
          min: 300,
          max: 3_600_000,
          default: 10_000,
          description: 'How long peers believe an advertisement without a newer one: a vanished agent is dropped within it. At least 3 × intervalMs (the interval never stretches past ttlMs / 3).',
        },
        budgetBytesPerSec: {
          kind: 'integer',
          min: 1000,
          max: 100_000_000,
          default: 64_000,
          description:
            'Advertisement bytes per second the whole fleet should send to each host in steady state: each agent stretches its interval to (peers + 1) × advert size / budget, between intervalMs and ttlMs / 3 (docs/discovery.md, "The budget").',
        },
        wireVersion: {
          kind: 'integer',
          min: 1,
          max: 2,
          default: 2,
          description:
            'Advertisement wire version sent: 2 (records on change or request, small heartbeats in between) or 1 (the full advert every interval, for fleets still running agents that read only version 1). Both are always received.',
        },
        maxSkewMs: { kind: 'integer', min: 0, max: 3_600_000, default: 30_000, description: 'Accepted clock skew of advertisement timestamps.' },
        identityChecks: {
          kind: 'object',
          description:
            "Pacing of the one TLS handshake that checks each newly discovered peer's endpoint: each is a connection and a neighbour-table entry on this host, so meeting thousands of peers must not dial them at once.",
          fields: {
            concurrency: { kind: 'integer', min: 1, max: 256, default: 8, description: 'Identity checks in flight at once.' },
            perSecond: {
              kind: 'integer',
              min: 1,
              max: 1000,
              default: 10,
              description:
                "Identity checks started per second (new peers wait their turn in the order they were met; they are listed meanwhile, and pinned on connect anyway). Keep it well under the neighbour table's size (net.ipv4.neigh.default.gc_thresh3, 1,024) per minute.",
            },
          },
        },
        static: {
          kind: 'array',
          maxItems: 1000,
          default: [],
          description: "Peers for networks without multicast (set groups to [] for static only); their identity is pinned on connect like a discovered peer's.",
          items: {
            kind: 'object',
            description: 'A static peer.',
            required: ['agent', 'endpoint', 'spiffe', 'sha256', 'routines'],
            fields: {
              agent: { kind: 'string', pattern: NAME_PATTERN, patternHint: NAME_HINT, description: 'Peer name.' },
              endpoint: { kind: 'string', pattern: HOST_PORT, patternHint: 'HOST:PORT (IPv6 as [addr]:port)', description: 'Where to dial it.' },
              spiffe: { kind: 'string', pattern: /^spiffe:\/\/\S+$/, patternHint: 'a spiffe:// ID', description: 'SPIFFE ID its certificate must carry.' },
              sha256: { kind: 'string', pattern: /^[0-9a-f]{64}$/, patternHint: '64 lower-case hex characters', description: 'SHA-256 of its certificate (DER).' },
              routines: { kind: 'array', maxItems: 1000, items: { kind: 'string', description: 'Routine name.' }, description: 'Routines it offers.' },
            },
          },
        },
        dns: {
          kind: 'object',
          description:
            'Membership from DNS SRV records (a Kubernetes headless Service, a Consul service). A peer found this way carries no signed advert: it is believed only after its TLS handshake proves a fleet-CA certificate with an allowed SPIFFE ID; its routines and load are read from it over that connection (docs/discovery.md).',
          fields: {
            names: {
              kind: 'array',
              maxItems: 16,
              default: [],
              items: { kind: 'string', pattern: DNS_NAME, patternHint: 'a DNS name, e.g. _skein._tcp.skein.fleet.svc.cluster.local', description: 'SRV record name.' },
              description: 'SRV records to follow, e.g. "_skein._tcp.skein.fleet.svc.cluster.local" or "skein.service.consul" (empty: no DNS discovery).',
            },
            resolver: {
              kind: 'string',
              pattern: /^(\[[0-9a-fA-F:.]+\]:\d{1,5}|[0-9.]+(:\d{1,5})?|[0-9a-fA-F:]*:[0-9a-fA-F:.]+)$/,
              patternHint: 'an IP address, optionally with a port: 10.96.0.10, 10.96.0.10:53, [fd00::a]:53',
              description: "DNS server asked instead of the system's (/etc/resolv.conf).",
            },
            intervalMs: { kind: 'integer', min: 500, max: 3_600_000, default: 5000, description: "How often the records are resolved again and each DNS peer's routines and load are read." },
            keepStaleMs: {
              kind: 'integer',
              min: 0,
              max: 86_400_000,
              default: 300_000,
              description: 'While resolution fails (retried sooner, backing off up to intervalMs), the last good answer is kept this long, then its peers are dropped.',
            },
            maxRecords: { kind: 'integer', min: 1, max: 4096, default: 256, description: 'Most endpoints (SRV targets × their addresses) followed; further ones are ignored with a warning.' },
            identities: {
              kind: 'array',
              maxItems: 100,
              default: [],
              items: { kind: 'string', pattern: /^spiffe:\/\/\S+$/, patternHint: 'a spiffe:// ID or pattern', description: 'SPIFFE ID pattern.' },
              description: 'SPIFFE IDs a DNS peer may present, as authorization.allow patterns (spiffe://fleet.example/agent/edge-*); default: spiffe://<each accepted trust domain>/agent/*.',
            },
          },
        },
      },
    },
    routines: {
      kind: 'record',
      keyPattern: NAME_PATTERN,
      keyHint: NAME_HINT,
      description: 'Routines this agent runs, by the name callers dispatch.',
      default: {},
      value: {
        kind: 'object',
        description: 'A Python function loaded from a file or an https URL.',
        fields: {
          file: { kind: 'string', path: true, description: 'Python source file, relative to the config file that names it (or set url).' },
          url: {
            kind: 'string',
            pattern: /^https:\/\/\S+$/,
            patternHint: 'an https:// URL',
            description: 'Fetch the source from this https URL at start-up instead of a file: host on sandbox.allowedCodeHosts, public address only, sha256 required.',
          },
          sha256: { kind: 'string', pattern: /^[0-9a-f]{64}$/, patternHint: '64 lower-case hex characters', description: 'Required SHA-256 pin of the code fetched from url.' },
          function: { kind: 'string', pattern: PYTHON_IDENTIFIER_PATTERN, patternHint: 'a Python identifier', description: 'Function to call; defaults to the routine name.' },
          timeoutMs: { kind: 'integer', min: 1, max: 86_400_000, description: 'Default deadline for this routine (still capped by limits.maxTimeoutMs).' },
          limits: {
            kind: 'object',
            description: "Resource limits for this routine's workers, overriding workers.* and sandbox.*; a routine with its own limits gets a pool of its own.",
            fields: {
              memoryMb: { kind: 'integer', min: 32, max: 1_048_576, description: 'RLIMIT_AS, MiB (default workers.memoryLimitMb).' },
              openFiles: { kind: 'integer', min: 16, max: 65_536, description: 'RLIMIT_NOFILE (default workers.maxOpenFiles).' },
              fileSizeMb: { kind: 'integer', min: 0, max: 1_048_576, description: 'RLIMIT_FSIZE, MiB (default sandbox.fileSizeMb).' },
              cpuSeconds: { kind: 'integer', min: 0, max: 31_536_000, description: 'RLIMIT_CPU backstop (default sandbox.cpuSeconds).' },
              processes: { kind: 'integer', min: 0, max: 100_000, description: 'RLIMIT_NPROC (default sandbox.processes).' },
            },
          },
          idempotent: {
            kind: 'boolean',
            default: false,
            description: 'Calls may run twice without harm: when a peer fails after the call may have reached it, --discover dispatch retries it on another peer.',
          },
          maxConcurrency: {
            kind: 'integer',
            min: 1,
            max: 1024,
            description: 'Most workers that may run this routine at once (its calls beyond it wait in the queue); default: all of its pool.',
          },
          workers: {
            kind: 'integer',
            min: 1,
            max: 1024,
            description: 'Size of this routine\'s own pool (under isolation "routine", or when it has its own limits); default workers.poolSize, or 1 for a limits-only pool in shared mode.',
          },
        },
      },
    },
  },
} as const satisfies Node;

/** The loaded configuration (what loadConfig returns): derived from CONFIG_SCHEMA. */
export type AgentConfig = Omit<ConfigOf<typeof CONFIG_SCHEMA>, '$schema' | 'extends'>;
export type RoutineConfig = AgentConfig['routines'][string];
export type DiscoveryConfig = AgentConfig['discovery'];
export type AuthorizationConfig = AgentConfig['authorization'];
export type PluginsConfig = AgentConfig['plugins'];
export type SandboxConfig = AgentConfig['sandbox'];
export type Http2Config = AgentConfig['http2'];
