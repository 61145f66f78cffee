/**
 * A start-up that fails on the file system (a read-only state folder under systemd's
 * ProtectSystem, a path through a regular file, a full disk) becomes a typed configuration
 * error naming the path and the config key that chose it, instead of an internal error
 * with a stack trace.
 */
import { resolve, sep } from 'node:path';
import type { AgentConfig } from '../config/schema.ts';
import { storePathOf } from '../calls/store.ts';
import { SkeinError } from '../../common/errors/index.ts';

const WHY: Record<string, string> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a component of the path is not a folder',
  EISDIR: 'it is a folder',
  ENOENT: 'no such file or folder',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EEXIST: 'it already exists and is not a folder',
  ELOOP: 'too many symbolic links',
};

const HINT: Partial<Record<string, string>> = {
  'agent.stateDir': 'set agent.stateDir to a writable folder (under systemd, StateDirectory=skein provides /var/lib/skein)',
  'audit.path': 'point audit.path at a writable file (under systemd, LogsDirectory=skein provides /var/log/skein)',
  'calls.store': 'point calls.store at a file in a writable folder (it holds the async calls; SQLite also writes -wal and -shm files next to it)',
};

/** The config keys whose values are paths, with those paths (absolute). */
function pathKeys(config: AgentConfig): Array<[string, string]> {
  const keys: Array<[string, string | undefined]> = [
    ['agent.stateDir', config.agent.stateDir],
    ['audit.path', config.audit.path],
    ['calls.store', storePathOf(config)],
    ['plugins.dir', config.plugins.dir],
    ['tls.cert', config.tls.cert],
    ['tls.key', config.tls.key],
    ['tls.ca', config.tls.ca],
    ['discovery.signingKey', config.discovery.signingKey],
    ['discovery.endorsement', config.discovery.endorsement],
    ...Object.entries(config.routines).map(([name, r]): [string, string | undefined] => [`routines.${name}.file`, r.file]),
  ];
  return keys.filter((k): k is [string, string] => typeof k[1] === 'string').map(([k, p]) => [k, resolve(p)]);
}

/** Turns an errno error from start-up into SKEIN_ERR_CONFIG naming path and key; anything else is returned as is. */
export function startupFailure(err: unknown, config: AgentConfig): unknown {
  // A typed error that merely wraps a file-system failure (the dev PKI's) gets the same treatment.
  const inner = err instanceof SkeinError && (err.code === 'SKEIN_ERR_PKI' || err.code === 'SKEIN_ERR_INTERNAL') ? err.cause : err;
  if (inner instanceof SkeinError || (err instanceof SkeinError && inner === undefined)) return err;
  const e = inner as NodeJS.ErrnoException;
  if (typeof e?.code !== 'string' || typeof e.path !== 'string') return err;
  const path = resolve(e.path);
  // The most specific key whose path is this one or a folder above it; failing that, the
  // nearest key below it (a folder that could not be created on the way to the key's path).
  let best: [string, string] | undefined;
  let below: [string, string] | undefined;
  for (const [key, p] of pathKeys(config)) {
    if ((path === p || path.startsWith(p + sep)) && (!best || p.length > best[1].length)) best = [key, p];
    else if (p.startsWith(path + sep) && (!below || p.length < below[1].length)) below = [key, p];
  }
  best ??= below;
  const why = WHY[e.code] ?? e.code;
  const op = e.syscall === 'mkdir' ? 'create the folder' : e.syscall === 'open' ? 'open' : e.syscall ? `${e.syscall}` : 'use';
  const named = best ? ` (${best[0]} is ${JSON.stringify(best[1])})` : '';
  const hint = best && HINT[best[0]] ? `: ${HINT[best[0]]}` : '';
  return new SkeinError('SKEIN_ERR_CONFIG', `cannot ${op} ${path}${named}: ${why} (${e.code})${hint}`, { path, errno: e.code, ...(best ? { key: best[0] } : {}) }, { cause: err });
}
