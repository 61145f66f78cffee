/**
 * The two network-level SSRF checks, kept apart from the fetch loop so each can be tested on
 * its own:
 *
 *  1. `guardedLookup` wraps the resolver handed to https.request. Node connects to exactly the
 *     address(es) this lookup returns, so refusing a non-public answer here leaves no window
 *     between "check" and "connect" for DNS rebinding to slip through.
 *  2. `watchPeer` checks `socket.remoteAddress` once TCP is connected: whatever the resolver
 *     said, the address actually reached must be public. The check runs on 'connect', before
 *     the TLS handshake completes and therefore before any request bytes are written.
 *
 * Both judge addresses with `classify` (address.ts classifyAddress; a unit test passes its
 * own to stand a loopback server in for a public host). There is no switch that lets
 * private addresses through.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import type { LookupFunction, Socket } from 'node:net';
import type { SkeinError } from '../../common/errors/index.ts';
import { classifyAddress, type AddressClass } from '../http/address.ts';
import { sourceError } from './errors.ts';

export type Lookup = typeof dnsLookup;
export type Classify = (address: string) => AddressClass;

const SSRF_FIX = 'routine code may only come from public addresses (SSRF guard); if this host is meant to be internal, serve the code from a public host instead';

/** Refuses `remoteAddress` unless it is a public address; returns it when it is. */
export function assertPublicPeer(remoteAddress: string | undefined, url: string, classify: Classify = classifyAddress): string {
  if (remoteAddress === undefined || remoteAddress === '') {
    throw sourceError('SKEIN_ERR_SOURCE_ADDRESS', `routine source ${url}: the runtime did not report which address the connection reached, so it is refused; ${SSRF_FIX}`, { url });
  }
  const cls = classify(remoteAddress);
  if (cls !== 'public') {
    throw sourceError('SKEIN_ERR_SOURCE_ADDRESS', `routine source ${url}: the connection reached ${remoteAddress} (${cls}), not a public address; ${SSRF_FIX}`, {
      url,
      address: remoteAddress,
      addressClass: cls,
    });
  }
  return remoteAddress;
}

/**
 * Resolver for https.request that answers like `base` but fails with SKEIN_ERR_SOURCE_ADDRESS
 * when any answer is not public (a mixed answer is how rebinding attacks look). `onRefuse`
 * sees the error first, because some runtimes re-wrap errors a lookup reports.
 */
export function guardedLookup(base: Lookup, url: string, classify: Classify, onRefuse: (err: SkeinError) => void): LookupFunction {
  return (hostname: string, options: LookupOptions, callback) => {
    base(hostname, options, (err, address, family) => {
      if (err) {
        callback(err, address, family);
        return;
      }
      const answers: LookupAddress[] = Array.isArray(address) ? address : [{ address, family }];
      for (const answer of answers) {
        const cls = classify(answer.address);
        if (cls === 'public') continue;
        const refusal = sourceError('SKEIN_ERR_SOURCE_ADDRESS', `routine source ${url}: ${hostname} resolves to ${answer.address} (${cls}), not a public address; ${SSRF_FIX}`, {
          url,
          host: hostname,
          address: answer.address,
          addressClass: cls,
        });
        onRefuse(refusal);
        callback(refusal, address, family);
        return;
      }
      callback(null, address, family);
    });
  };
}

/**
 * Calls `done(null, address)` once `socket` is connected to a public address, or destroys
 * the socket and calls `done(err)` when it is not.
 */
export function watchPeer(socket: Socket, url: string, classify: Classify, done: (err: SkeinError | null, address?: string) => void): void {
  const check = () => {
    try {
      done(null, assertPublicPeer(socket.remoteAddress, url, classify));
    } catch (err) {
      // Down first, so nothing can be written to the refused peer while `done` runs.
      socket.destroy(err as SkeinError);
      done(err as SkeinError);
    }
  };
  if (!socket.connecting && socket.remoteAddress !== undefined) check();
  else socket.once('connect', check);
}
