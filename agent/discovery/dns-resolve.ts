/**
 * Resolving discovery.dns: SRV records (RFC 2782) to the endpoints they name — each target's
 * A and AAAA addresses with the record's port — through node:dns's Resolver, pointed at
 * discovery.dns.resolver when set (setServers) and at the system's resolvers otherwise.
 *
 * What counts as an answer: a name that does not exist (NXDOMAIN, ENOTFOUND) or has no SRV
 * records (NODATA) is an answer with no endpoints — a Kubernetes headless Service with no
 * ready pods, a Consul service with no healthy instance — and its peers go. Anything else (a
 * timeout, a refused query, SERVFAIL, no server answering) is a failure: the caller keeps its
 * last good answer for a while (dns-source.ts).
 *
 * @example
 *   const { endpoints } = await resolveEndpoints(createResolver('10.96.0.10:53'), ['_skein._tcp.skein.fleet.svc.cluster.local'], 256);
 *   // [{ endpoint: '10.0.1.7:7443', record: '_skein._tcp…', target: '10-0-1-7.skein.fleet.svc.cluster.local' }, …]
 */
import { isIP } from 'node:net';
import { Resolver } from 'node:dns/promises';

/** One dialable endpoint an SRV record led to. */
export interface DnsEndpoint {
  /** "10.0.1.7:7443" or "[fd00::7]:7443". */
  endpoint: string;
  /** The SRV name (discovery.dns.names) it came from. */
  record: string;
  /** The SRV target host. */
  target: string;
}

export interface DnsAnswer {
  endpoints: DnsEndpoint[];
  /** Endpoints left out because maxRecords was reached (targets past it are not resolved: each counts once). */
  dropped: number;
}

/** A lookup that found nothing: an answer (no such name, no records of the type), not a failure. */
const EMPTY = new Set(['ENOTFOUND', 'ENODATA']);

/**
 * Queries time out after 2 s, tried twice: a round is bounded even when the server is gone.
 * Make one per resolution: under Bun a Resolver's channel kept every answer it got (a "no
 * such name" included) for its whole life, so a record that changed was never seen again;
 * caching by TTL is the DNS server's job (CoreDNS, Consul, dnsmasq).
 */
export function createResolver(server: string | undefined): Resolver {
  const resolver = new Resolver({ timeout: 1000, tries: 2 });
  if (server !== undefined) resolver.setServers([server]);
  return resolver;
}

async function orEmpty<T>(lookup: Promise<T[]>): Promise<T[]> {
  try {
    return await lookup;
  } catch (err) {
    if (EMPTY.has((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw err;
  }
}

/** Every endpoint of `names`, at most `max` (in record order: priority, then weight). Throws when the resolver fails. */
export async function resolveEndpoints(resolver: Resolver, names: readonly string[], max: number): Promise<DnsAnswer> {
  const endpoints: DnsEndpoint[] = [];
  const seen = new Set<string>();
  let dropped = 0;
  for (const record of names) {
    const srv = await orEmpty(resolver.resolveSrv(record));
    // Lower priority first, then higher weight: the order the SRV RFC prefers targets in, so
    // when maxRecords cuts the list the preferred targets stay.
    srv.sort((a, b) => a.priority - b.priority || b.weight - a.weight || a.name.localeCompare(b.name) || a.port - b.port);
    for (const { name: target, port } of srv) {
      // "." means "no service here" (RFC 2782).
      if (target === '' || target === '.') continue;
      // Past the cap no more lookups: a huge record set costs one query per name, not per target.
      if (endpoints.length >= max) {
        dropped++;
        continue;
      }
      const addresses = isIP(target) ? [target] : [...(await orEmpty(resolver.resolve4(target))), ...(await orEmpty(resolver.resolve6(target)))];
      for (const address of addresses) {
        const endpoint = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
        if (seen.has(endpoint)) continue;
        seen.add(endpoint);
        if (endpoints.length >= max) dropped++;
        else endpoints.push({ endpoint, record, target });
      }
    }
  }
  return { endpoints, dropped };
}
