/**
 * The SSRF guard of outbound HTTPS, as an undici connector: undici asks it for a socket and
 * it alone opens one, so every connection any request makes passes three checks.
 *
 *  1. The resolver handed to net.connect refuses a name whose answers include an address the
 *     policy refuses (a mixed answer is how DNS rebinding looks). net.connect dials exactly
 *     what this lookup returns, so nothing slips in between "check" and "connect".
 *  2. On the TCP 'connect' event, before a single TLS byte is written, the address actually
 *     reached (`socket.remoteAddress`) is judged again, whatever the resolver said.
 *  3. TLS ≥ 1.2 with certificate verification against the system CAs, or against the pinned
 *     CA alone when one is given; the server name is checked as usual.
 *
 * Address classes come from agent/http/address.ts (one classifier for every guard).
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { connect as netConnect, type LookupFunction, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { buildConnector } from 'undici/index.js';
import { SkeinError } from '../../common/errors/index.ts';
import { isTlsFailure } from '../pki/tls-refusal.ts';
import { classifyAddress, isIpLiteral, parseIPv6, type AddressClass } from './address.ts';
import { httpError } from './errors.ts';

export type Lookup = typeof dnsLookup;

/**
 * Which addresses a request may reach. "public": publicly routed unicast only. "private" adds
 * loopback, RFC 1918, CGNAT and IPv6 unique/site-local space (an internal identity provider),
 * but never link-local (the cloud metadata service at 169.254.169.254 lives there),
 * unspecified, multicast, broadcast, documentation or reserved space.
 */
export type AddressPolicy = 'public' | 'private';

const PRIVATE_POLICY_ADMITS: ReadonlySet<AddressClass> = new Set(['public', 'private', 'loopback', 'unique-local', 'site-local', 'cgnat']);

/** What the messages of a refusal name: who asked, for which URL, and the settings that change the answer. */
export interface GuardContext {
  /** e.g. 'plugin "bearer-jwt"' */
  label: string;
  /** The URL of the request (not of the hop) the refusal belongs to. */
  url: string;
  /** The setting that lets private addresses through, named in the fix; absent when none exists (routine sources). */
  privateSetting?: string | undefined;
}

/** "::ffff:a.b.c.d" (in any IPv6 spelling) to "a.b.c.d"; anything else unchanged. */
function unmapped(ip: string): string {
  const words = parseIPv6(ip.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, ''));
  if (!words || words.slice(0, 5).some((w) => w !== 0) || words[5] !== 0xffff) return ip;
  const [hi, lo] = [words[6] as number, words[7] as number];
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/** The class of `ip` when `policy` refuses it, undefined when it may be reached. */
export function refusedClass(ip: string, policy: AddressPolicy): AddressClass | undefined {
  const cls = classifyAddress(policy === 'private' ? unmapped(ip) : ip);
  if (cls === 'public') return undefined;
  return policy === 'private' && PRIVATE_POLICY_ADMITS.has(cls) ? undefined : cls;
}

function fix(policy: AddressPolicy, ctx: GuardContext): string {
  if (policy === 'public' && ctx.privateSetting === undefined) return 'only public addresses may be reached (SSRF guard), and no setting lifts that; serve it from a public host instead';
  return policy === 'public'
    ? `only public addresses may be reached (SSRF guard); if the server is meant to be internal, set ${ctx.privateSetting} (warned about at start)`
    : 'link-local (cloud metadata), multicast, unspecified, documentation and reserved addresses are never reachable, whatever the settings';
}

/** The refusal for a host name or IP literal that is (or resolves to) a refused address. */
export function addressRefusal(ctx: GuardContext, policy: AddressPolicy, what: string, address: string, cls: AddressClass, extra: Record<string, unknown> = {}): SkeinError {
  return httpError('SKEIN_ERR_HTTP_ADDRESS', `${ctx.label}: ${ctx.url}: ${what} ${address} (${cls}); ${fix(policy, ctx)}`, {
    url: ctx.url,
    address,
    addressClass: cls,
    policy,
    ...extra,
  });
}

/** A resolver for net.connect that answers like `base` but refuses any answer the policy refuses. */
export function guardedLookup(base: Lookup, policy: AddressPolicy, ctx: GuardContext): LookupFunction {
  return (hostname: string, options: LookupOptions, callback) => {
    base(hostname, options, (err, address, family) => {
      if (err) {
        callback(err, address, family);
        return;
      }
      const answers: LookupAddress[] = Array.isArray(address) ? address : [{ address, family }];
      for (const answer of answers) {
        const cls = refusedClass(answer.address, policy);
        if (cls === undefined) continue;
        callback(addressRefusal(ctx, policy, `${hostname} resolves to`, answer.address, cls, { host: hostname }), address, family);
        return;
      }
      callback(null, address, family);
    });
  };
}

/** Refuses what `socket` is connected to unless the policy admits it; returns the address. */
export function checkPeer(socket: Socket, policy: AddressPolicy, ctx: GuardContext): string {
  const remote = socket.remoteAddress;
  if (remote === undefined || remote === '') {
    throw httpError('SKEIN_ERR_HTTP_ADDRESS', `${ctx.label}: ${ctx.url}: the runtime did not report which address the connection reached, so it is refused`, { url: ctx.url });
  }
  const cls = refusedClass(remote, policy);
  if (cls !== undefined) throw addressRefusal(ctx, policy, 'the connection reached', remote, cls);
  return remote;
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/** A socket or TLS failure as HTTP_TLS or HTTP_NETWORK (SkeinErrors pass through). */
export function transportError(err: unknown, ctx: GuardContext, target: URL | string, pinned: boolean): SkeinError {
  if (err instanceof SkeinError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : 'ERROR';
  const message = e?.message ?? String(err);
  const href = String(target);
  // Name the URL that was asked for (the connector only knows the hop's origin), and the hop when a redirect left that origin.
  const where = sameOrigin(href, ctx.url) ? ctx.url : `${ctx.url} (at ${href})`;
  if (isTlsFailure(err)) {
    const host = new URL(href).hostname;
    return httpError(
      'SKEIN_ERR_HTTP_TLS',
      `${ctx.label}: ${where}: TLS failed (${code}: ${message}); the server must present a certificate for "${host}" from ${pinned ? 'the pinned CA' : 'a CA the system trusts'}, over TLS 1.2 or later`,
      { url: ctx.url, target: href, tlsCode: code },
      err,
    );
  }
  return httpError(
    'SKEIN_ERR_HTTP_NETWORK',
    `${ctx.label}: ${where}: cannot connect (${code}: ${message}); check that the host resolves and serves https`,
    { url: ctx.url, target: href, errno: code },
    err,
  );
}

export interface ConnectorOptions {
  policy: AddressPolicy;
  ctx: GuardContext;
  /** Trusted CAs instead of the system's (pinning). */
  ca?: Array<string | Buffer>;
  lookup: Lookup;
  /** Every socket opened, so the caller can destroy them all when the request ends. */
  sockets: Set<Socket>;
  /** Called with the address each connection reached. */
  onPeer(address: string): void;
}

/**
 * An undici connector that opens TCP itself (guarded lookup, address check on 'connect'),
 * then TLS over that socket. undici never dials on its own, so no connection escapes the guard.
 */
export function guardedConnector(o: ConnectorOptions): buildConnector.connector {
  return (opts, callback) => {
    let done = false;
    const finish = (err: SkeinError | null, socket?: TLSSocket) => {
      if (done) return;
      done = true;
      if (err) callback(err, null);
      else callback(null, socket as TLSSocket);
    };
    const host = opts.hostname.replace(/^\[(.*)\]$/, '$1');
    const target = `https://${opts.hostname}${opts.port ? `:${opts.port}` : ''}/`;
    if (opts.protocol !== 'https:') {
      finish(httpError('SKEIN_ERR_HTTP_URL', `${o.ctx.label}: ${o.ctx.url}: ${opts.protocol} is not https`, { url: o.ctx.url }));
      return;
    }
    const tcp = netConnect({ host, port: Number(opts.port || 443), lookup: guardedLookup(o.lookup, o.policy, o.ctx) });
    o.sockets.add(tcp);
    tcp.once('error', (err) => finish(transportError(err, o.ctx, target, o.ca !== undefined)));
    // A socket destroyed without an error (the request's deadline destroys every socket) emits
    // only 'close': answer undici then too, or its request waits for this connector forever.
    tcp.once('close', () =>
      finish(httpError('SKEIN_ERR_HTTP_NETWORK', `${o.ctx.label}: ${o.ctx.url}: the connection closed before TLS was established; retry, or check the server`, { url: o.ctx.url, target })),
    );
    tcp.once('connect', () => {
      try {
        o.onPeer(checkPeer(tcp, o.policy, o.ctx));
      } catch (err) {
        // Down first, so nothing is written to the refused peer.
        tcp.destroy();
        finish(err as SkeinError);
        return;
      }
      const secure = tlsConnect({
        socket: tcp,
        ...(isIpLiteral(host) ? {} : { servername: host }),
        ...(o.ca !== undefined ? { ca: o.ca } : {}),
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        ALPNProtocols: ['http/1.1'],
      });
      o.sockets.add(secure);
      secure.once('error', (err: Error) => finish(transportError(err, o.ctx, target, o.ca !== undefined)));
      secure.once('secureConnect', () => finish(null, secure));
    });
  };
}
