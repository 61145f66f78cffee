/**
 * Every error skein reports carries a stable `code`. Callers (the CLI, the client library,
 * tests, operators grepping logs) match on the code, never on the message. The table below
 * is the single source of truth: HTTP status for server-side codes, CLI exit code, and a
 * one-line description (docs/api.md lists the codes a server sends; test/unit/errors.test.ts
 * keeps it true).
 *
 * @example
 *   throw new SkeinError('SKEIN_ERR_UNKNOWN_ROUTINE', `no routine named "${name}"`)
 */
export const ERROR_TABLE = {
  // Request problems (the caller can fix them).
  SKEIN_ERR_BAD_REQUEST: { status: 400, exit: 3, what: 'malformed request body or header' },
  SKEIN_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, exit: 3, what: 'body is neither application/cbor nor application/json' },
  SKEIN_ERR_UNKNOWN_ROUTINE: { status: 404, exit: 3, what: 'no routine with that name is configured' },
  SKEIN_ERR_NOT_FOUND: { status: 404, exit: 3, what: 'no such endpoint' },
  SKEIN_ERR_METHOD_NOT_ALLOWED: { status: 405, exit: 3, what: 'wrong HTTP method for the endpoint' },
  SKEIN_ERR_BODY_TOO_LARGE: { status: 413, exit: 3, what: 'request body over limits.maxBodyBytes' },
  SKEIN_ERR_CALL_NOT_FOUND: { status: 404, exit: 3, what: "no async call with that id is visible to this caller (unknown, expired, or another caller's)" },
  // Identity: authentication (client certificate, token plugins) and authorization.
  SKEIN_ERR_UNAUTHENTICATED: { status: 401, exit: 3, what: 'no valid credential' },
  SKEIN_ERR_FORBIDDEN: { status: 403, exit: 3, what: 'identity may not run this routine' },
  // Routine outcomes.
  SKEIN_ERR_ROUTINE_RAISED: { status: 422, exit: 4, what: 'the Python routine raised an exception' },
  SKEIN_ERR_DEADLINE_EXCEEDED: { status: 504, exit: 5, what: 'the call ran past its deadline; the worker was killed' },
  SKEIN_ERR_WORKER_CRASHED: { status: 502, exit: 4, what: 'the worker died during the call' },
  SKEIN_ERR_WORKER_PROTOCOL: { status: 502, exit: 4, what: 'the worker sent a malformed or unexpected reply and was killed' },
  SKEIN_ERR_RESULT_TOO_LARGE: { status: 502, exit: 4, what: 'the routine result exceeded limits.maxResultBytes, or decoding it would cost more than 8 × that (at least 64 MiB) of agent memory' },
  // Capacity and lifecycle.
  SKEIN_ERR_OVERLOADED: { status: 503, exit: 3, what: 'all workers busy and the queue is full; retry after Retry-After' },
  SKEIN_ERR_SHUTTING_DOWN: { status: 503, exit: 3, what: 'the agent is draining and accepts no new calls' },
  SKEIN_ERR_STORE_FULL: { status: 503, exit: 3, what: 'the async results store is at calls.maxStored or calls.maxBytes; retry after Retry-After' },
  SKEIN_ERR_STORE_WRITE: { status: 503, exit: 3, what: 'the async results store could not commit (disk full, I/O error, read-only file system); the request had no effect' },
  SKEIN_ERR_CIRCUIT_OPEN: { status: 503, exit: 3, what: 'this routine kept killing its workers; refused until the cool-down passes (Retry-After)' },
  SKEIN_ERR_INTERNAL: { status: 500, exit: 1, what: 'unexpected agent failure (a bug: please report it)' },
  // Client side: never sent by a server.
  SKEIN_ERR_TLS: { status: 0, exit: 6, what: 'TLS handshake failed (certificate refused, unknown CA, wrong name)' },
  SKEIN_ERR_TRANSPORT: { status: 0, exit: 6, what: 'connection refused, reset or closed before a response' },
  SKEIN_ERR_CLIENT_TIMEOUT: { status: 0, exit: 5, what: 'no response within the client-side deadline' },
  SKEIN_ERR_ABORTED: { status: 0, exit: 6, what: 'the caller aborted the call' },
  SKEIN_ERR_BAD_RESPONSE: { status: 0, exit: 6, what: 'the server answered with something that is not a skein response' },
  SKEIN_ERR_PEER_IDENTITY: { status: 0, exit: 6, what: 'a peer presented another certificate or SPIFFE ID than it advertised; nothing was sent to it' },
  SKEIN_ERR_NO_PEERS: { status: 0, exit: 3, what: 'no trusted peer offers the routine (or every one failed)' },
  SKEIN_ERR_CALL_CANCELLED: { status: 0, exit: 3, what: 'the async call that was waited for ended cancelled (DELETE /v1/calls/<id>): it has no result' },
  SKEIN_ERR_CALL_INTERRUPTED: { status: 0, exit: 4, what: 'the agent stopped while the async call ran and the routine is not idempotent: it may or may not have taken effect' },
  // Discovery's multicast transport (agent/discovery/transport.ts).
  SKEIN_ERR_MULTICAST_UNAVAILABLE: {
    status: 0,
    exit: 2,
    what: 'a discovery multicast group cannot be joined or reached on this host (the message names the group, the interface and the step that failed)',
  },
  SKEIN_ERR_MULTICAST_SEND: { status: 0, exit: 1, what: 'a discovery advertisement was not sent: larger than the datagram limit, the transport closed, or the network refused it' },
  // Signatures (signing/): advertisements, plugin files, key files.
  SKEIN_ERR_SIG_MALFORMED: { status: 0, exit: 1, what: 'signed object or signature file cannot be decoded, has the wrong shape or an unsupported version' },
  SKEIN_ERR_SIG_NONCANONICAL: { status: 0, exit: 1, what: 'CBOR is well formed but not in the one deterministic encoding skein signs' },
  SKEIN_ERR_SIG_TOO_DEEP: { status: 0, exit: 1, what: 'CBOR nesting deeper than the allowed depth' },
  SKEIN_ERR_SIG_OVERSIZE: { status: 0, exit: 1, what: 'input larger than the allowed byte size or item count' },
  SKEIN_ERR_SIG_UNENCODABLE: { status: 0, exit: 1, what: 'value cannot be canonically encoded or signed' },
  SKEIN_ERR_SIG_CONTEXT: { status: 0, exit: 1, what: 'signed for another purpose (domain-separation context differs)' },
  SKEIN_ERR_SIG_UNKNOWN_KEY: { status: 0, exit: 1, what: 'signed by a key that is not in the trust store' },
  SKEIN_ERR_SIG_INVALID: { status: 0, exit: 1, what: 'signature does not verify against the trusted key' },
  SKEIN_ERR_SIG_MISSING: { status: 0, exit: 2, what: 'file has no detached signature (<file>.sig)' },
  SKEIN_ERR_SIG_TAMPERED: { status: 0, exit: 2, what: 'file content does not match the SHA-256 in its signature' },
  SKEIN_ERR_SIG_NAME_MISMATCH: { status: 0, exit: 2, what: 'signature is valid but names another plugin than expected' },
  SKEIN_ERR_SIG_KEY_PERMISSIONS: { status: 0, exit: 2, what: 'private key file is readable or writable by group or others (chmod 600)' },
  SKEIN_ERR_SIG_KEY_EXISTS: { status: 0, exit: 2, what: 'refusing to overwrite an existing private key' },
  SKEIN_ERR_SIG_KEY_INVALID: { status: 0, exit: 2, what: 'key file or key text is missing, unreadable or not an Ed25519 key' },
  // Routine code from URLs (agent/sources): each refusal has its own code; all stop start-up.
  SKEIN_ERR_SOURCE_SCHEME: { status: 0, exit: 2, what: 'routine URL is not https (or carries credentials)' },
  SKEIN_ERR_SOURCE_HOST: { status: 0, exit: 2, what: 'routine URL host (or a redirect target) is not on sandbox.allowedCodeHosts' },
  SKEIN_ERR_SOURCE_ADDRESS: { status: 0, exit: 2, what: 'routine URL resolved or connected to a private, loopback, link-local or otherwise non-public address' },
  SKEIN_ERR_SOURCE_REDIRECT: { status: 0, exit: 2, what: 'too many redirects, or a redirect without a valid Location' },
  SKEIN_ERR_SOURCE_TOO_LARGE: { status: 0, exit: 2, what: 'routine code body over its size limit' },
  SKEIN_ERR_SOURCE_TIMEOUT: { status: 0, exit: 2, what: 'routine code fetch exceeded its time limit' },
  SKEIN_ERR_SOURCE_HTTP: { status: 0, exit: 2, what: 'routine code server answered with an error status or an unsupported encoding' },
  SKEIN_ERR_SOURCE_PIN_MISMATCH: { status: 0, exit: 2, what: 'routine code does not match its sha256 pin' },
  SKEIN_ERR_SOURCE_PIN_MISSING: { status: 0, exit: 2, what: 'a routine URL needs a sha256 pin (64 hex characters)' },
  SKEIN_ERR_SOURCE_TLS: { status: 0, exit: 2, what: 'routine code server certificate refused' },
  SKEIN_ERR_SOURCE_ENCODING: { status: 0, exit: 2, what: 'routine code is not valid UTF-8' },
  SKEIN_ERR_SOURCE_NETWORK: { status: 0, exit: 2, what: 'routine code server unreachable (refused, reset, DNS failure, truncated body)' },
  // Outbound HTTPS (agent/http: plugins' ctx.http, JWKS): each refusal has its own code.
  SKEIN_ERR_HTTP_URL: { status: 0, exit: 2, what: 'outbound URL is not https, is malformed or carries credentials' },
  SKEIN_ERR_HTTP_OPTIONS: { status: 0, exit: 2, what: 'outbound request options are invalid (method, header, body or a limit out of range)' },
  SKEIN_ERR_HTTP_HOST: { status: 0, exit: 2, what: 'outbound URL host (or a redirect target) is not on the allowed hosts' },
  SKEIN_ERR_HTTP_ADDRESS: { status: 0, exit: 2, what: 'outbound request resolved or connected to an address its policy refuses (private, loopback, link-local, …)' },
  SKEIN_ERR_HTTP_REDIRECT: { status: 0, exit: 6, what: 'outbound request: too many redirects, or a redirect without a valid Location' },
  SKEIN_ERR_HTTP_TOO_LARGE: { status: 0, exit: 6, what: 'outbound response body over its size limit' },
  SKEIN_ERR_HTTP_TIMEOUT: { status: 0, exit: 5, what: 'outbound request did not complete (every hop, headers and body) within its deadline' },
  SKEIN_ERR_HTTP_STATUS: { status: 0, exit: 6, what: 'outbound request answered with an error status or an unsupported content encoding' },
  SKEIN_ERR_HTTP_TLS: { status: 0, exit: 6, what: 'outbound server certificate refused (unknown or unpinned CA, wrong name, expired)' },
  SKEIN_ERR_HTTP_NETWORK: { status: 0, exit: 6, what: 'outbound server unreachable (refused, reset, DNS failure, truncated body)' },
  SKEIN_ERR_HTTP_BODY: { status: 0, exit: 6, what: 'outbound response body is not what was asked for (not UTF-8 JSON)' },
  // Configuration and usage.
  SKEIN_ERR_CONFIG: { status: 0, exit: 2, what: 'invalid configuration; the message names the key' },
  SKEIN_ERR_USAGE: { status: 0, exit: 2, what: 'invalid command line' },
  SKEIN_ERR_OUTPUT: { status: 0, exit: 1, what: 'standard output or error could not be written (reader gone, disk full): the output is incomplete' },
  SKEIN_ERR_PKI: { status: 0, exit: 1, what: 'certificate or key could not be created or read' },
  SKEIN_ERR_STRICT: { status: 0, exit: 2, what: 'security.strict: the configuration is not secure (the message lists every violation and its key)' },
  SKEIN_ERR_PLUGIN_LOAD: { status: 0, exit: 2, what: 'a plugin could not be loaded (the message names it); the agent does not start half-configured' },
  SKEIN_ERR_SANDBOX: { status: 0, exit: 2, what: 'the sandbox profile cannot be provided on this host (the message lists what is missing)' },
} as const satisfies Record<string, { status: number; exit: number; what: string }>;

export type ErrorCode = keyof typeof ERROR_TABLE;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_TABLE, value);
}

export class SkeinError extends Error {
  override readonly name: string = 'SkeinError';
  readonly code: ErrorCode;
  /** Extra structured facts (exception type, peer, limit…) that travel with the error. */
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_TABLE[this.code].status;
  }

  get exitCode(): number {
    return ERROR_TABLE[this.code].exit;
  }
}

/** Normalises anything thrown into a SkeinError, keeping the original as `cause`. */
export function toSkeinError(err: unknown): SkeinError {
  if (err instanceof SkeinError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SkeinError('SKEIN_ERR_INTERNAL', message, {}, { cause: err });
}
