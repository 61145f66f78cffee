/**
 * Reads every configured routine's source: a local file, or an https URL fetched once at
 * start-up under the SSRF rules of agent/sources and pinned by SHA-256. Each source's hash
 * is logged; any failure stops start-up naming the routine.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Audit } from '../audit/index.ts';
import type { AgentConfig } from '../config/schema.ts';
import { configError } from '../config/schema-dsl.ts';
import { PYTHON_IDENTIFIER_PATTERN } from '../../common/names/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import { fetchUrlSource } from './url.ts';
import type { RoutineSource } from '../workers/worker.ts';
import { embeddedRoutineSource } from './embedded.ts';

/** What the agent tells callers about a loaded routine (GET /v1/routines). */
export interface RoutineInfo {
  name: string;
  function: string;
  file: string;
  sha256: string;
  timeoutMs?: number;
}

export async function loadRoutines(config: AgentConfig, log: Logger, embedded: boolean, audit?: Audit) {
  const sources: Record<string, RoutineSource> = {};
  const infos = new Map<string, RoutineInfo>();
  const fetched = new Map<string, Promise<string>>();
  const ca = config.sandbox.codeCa ? readFileSync(config.sandbox.codeCa) : undefined;
  for (const [name, r] of Object.entries(config.routines)) {
    const fn = r.function ?? name;
    if (!PYTHON_IDENTIFIER_PATTERN.test(fn)) throw configError(`routines.${name}.function`, `"${fn}" is not a Python identifier; set "function" explicitly`);
    let source: string;
    let origin: string;
    let fromBinary = false;
    if (r.url !== undefined) {
      origin = r.url;
      const key = `${r.url} ${r.sha256}`;
      if (!fetched.has(key)) {
        fetched.set(
          key,
          fetchUrlSource({ url: r.url, sha256: r.sha256!, allowedHosts: config.sandbox.allowedCodeHosts, ...(ca ? { ca } : {}) }).then((f) => f.source),
        );
      }
      try {
        source = await fetched.get(key)!;
      } catch (err) {
        const e = err as SkeinError;
        throw new SkeinError(e.code ?? 'SKEIN_ERR_CONFIG', `routine "${name}": ${e.message}`, { ...e.details, key: `routines.${name}.url` }, { cause: err });
      }
    } else {
      origin = r.file!;
      try {
        source = readFileSync(r.file!, 'utf8');
      } catch (err) {
        const fallback = embedded ? embeddedRoutineSource(r.file!) : undefined;
        if (fallback === undefined) throw new SkeinError('SKEIN_ERR_CONFIG', `config key "routines.${name}.file": cannot read ${r.file}: ${(err as Error).message}`, { key: `routines.${name}.file` });
        source = fallback;
        fromBinary = true;
      }
    }
    const sha256 = createHash('sha256').update(source).digest('hex');
    sources[name] = { file: origin, function: fn, source };
    infos.set(name, { name, function: fn, file: basename(origin), sha256, ...(r.timeoutMs ? { timeoutMs: r.timeoutMs } : {}) });
    log.info('routine loaded', { routine: name, ...(r.url ? { url: r.url } : { file: r.file }), function: fn, sha256 });
    // embedded: the file was missing and the copy built into the binary runs instead.
    audit?.record('routine.loaded', { routine: name, ...(r.url ? { url: r.url } : { file: r.file }), function: fn, sha256, ...(fromBinary ? { embedded: true } : {}) });
  }
  return { sources, infos };
}
