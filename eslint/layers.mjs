/**
 * The layering of skein's folders, lowest first. An import may point to its own folder or to
 * a folder listed BEFORE it, never after: so the folder graph has no cycle by construction,
 * and "where does this belong" has one answer (docs/architecture.md draws the same list).
 *
 * A folder is a top-level folder, or agent/<name> for the agent's concepts. Adding a folder
 * means placing it here; an import into an unlisted folder is an error that says so.
 */
export const LAYERS = [
  'common', // the errors table, file helpers, the SPIFFE ID parser: shared by everything
  'signing', // Ed25519 keys, signed envelopes, canonical CBOR: a library of its own
  'agent/version',
  'agent/lifecycle', // the start/close/destroy/reload contract: imports nothing
  'agent/config',
  'agent/log',
  'agent/codec',
  'agent/pki',
  'agent/audit',
  'agent/metrics',
  'agent/http',
  'agent/sandbox',
  'agent/workers',
  'agent/plugin-host',
  'agent/security',
  'agent/sources',
  'agent/calls', // the call seam: sync, streaming and async calls, the results store
  'agent/server',
  'agent/client', // below discovery: the DNS source reads its peers' routines and load through it
  'agent/discovery',
  'agent/admin',
  'agent/systemd',
  'agent/runtime',
  'agent/cli',
  'agent', // agent/main.ts
];

/** Folders outside the layering: they may import anything (tests, benchmarks, the build). */
export const UNLAYERED = ['test', 'bench', 'clients', 'eslint', '.'];

/** The folder a repository path belongs to, as LAYERS names it. */
export function folderOf(path) {
  const parts = path.split('/');
  if (parts.length === 1) return '.';
  if (parts[0] === 'agent') return parts.length > 2 ? `agent/${parts[1]}` : 'agent';
  return parts[0];
}
