/**
 * Helpers for testing skein plugins without an agent (written by `skein plugin new` beside
 * skein-plugin.ts; do not edit, it is replaced when it differs from the binary's). Tests run
 * with `skein plugin test` — the test runner is inside the skein binary, nothing to install.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AuthnRequest, AuthzRequest, Hooks, PluginContext, PluginDefinition } from './skein-plugin.ts';

/** What `options()` is given to report a bad option: an Error naming the key. */
export const fail = (key: string, message: string): Error => new Error(`option "${key}": ${message}`);

/** What the agent passes to setup(), reduced to what a test needs; `now` is fixed (ms). */
export function context<O>(name: string, options: O, now = Date.UTC(2025, 0, 6, 10)): PluginContext<O> {
  const unused = (what: string) => () => {
    throw new Error(`${what} is not available in this test context`);
  };
  return {
    name,
    options,
    log: { debug() {}, info() {}, warn() {}, error() {} },
    now: () => now,
    crypto: {
      timingSafeEqual: (a, b) => {
        const x = typeof a === 'string' ? Buffer.from(a) : a;
        const y = typeof b === 'string' ? Buffer.from(b) : b;
        return x.length === y.length && timingSafeEqual(x, y);
      },
      sha256Hex: (data) => createHash('sha256').update(data).digest('hex'),
      verifyJwt: () => Promise.reject(new Error('verifyJwt is not available in this test context')),
      verifyEd25519: unused('verifyEd25519'),
      parseEd25519PublicKey: unused('parseEd25519PublicKey'),
    },
    readFile: unused('readFile'),
    http: {
      request: () => Promise.reject(new Error('http is not available in this test context')),
      fetchJson: () => Promise.reject(new Error('http is not available in this test context')),
    },
    strict: false,
  };
}

/** Validates `raw` as the agent does (throwing on a bad option), then runs setup(). */
export async function hooksOf<O>(plugin: PluginDefinition<O>, raw: unknown, now?: number): Promise<Hooks> {
  const options = plugin.options ? plugin.options(raw, fail) : (raw as O);
  return plugin.setup(context(plugin.name, options, now));
}

const base = { requestId: 'req-1', method: 'POST', remoteAddress: '127.0.0.1' };

/** A dispatch of `routine` as an authenticate hook sees it. */
export function authnRequest(routine: string, headers: Record<string, string> = {}, peerId = 'anonymous'): AuthnRequest {
  return { ...base, action: 'dispatch', routine, path: `/v1/dispatch/${routine}`, headers, peer: { id: peerId, ...(peerId.startsWith('spiffe://') ? { spiffeId: peerId } : {}) } };
}

/** A request as an authorize hook sees it: `routine` undefined for one that names no routine. */
export function authzRequest(routine: string | undefined, principals: string[] = [], peerId = 'anonymous'): AuthzRequest {
  return {
    ...base,
    action: routine === undefined ? undefined : 'dispatch',
    routine,
    path: routine === undefined ? '/v1/peers' : `/v1/dispatch/${routine}`,
    headers: {},
    identity: { peer: { id: peerId }, principals, claims: {} },
  };
}
