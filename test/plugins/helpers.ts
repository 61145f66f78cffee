/** Shared helpers for plugin unit tests: real host context, injected clock, request builders. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createContext } from '../../agent/plugin-host/context.ts';
import { createPluginHttp, HttpTally, type PluginHttpPolicy } from '../../agent/plugin-host/http.ts';
import { createLogger } from '../../agent/log/index.ts';
import type { AuthnRequest, AuthzRequest, Hooks, Identity, PluginDefinition } from '../../agent/plugin-host/api.ts';

/** The fail() the host passes to options(): an Error whose message starts with the key path. */
export const fail = (key: string, message: string) => new Error(`${key}: ${message}`);

/** Runs a plugin's options validation; returns the error message, or undefined when valid. */
export function optionsError(plugin: PluginDefinition<unknown>, raw: unknown): string | undefined {
  try {
    plugin.options!(raw, fail);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export interface Clock {
  now: number;
}

/** What a test plugin may reach over ctx.http, and whether it runs under security.strict. */
export interface HostSettings {
  http?: Partial<PluginHttpPolicy>;
  strict?: boolean;
  tally?: HttpTally;
}

/** Validates `raw` and runs setup with a real context; `clock.now` can be moved by the test. */
export async function setupPlugin<O>(plugin: PluginDefinition<O>, raw: unknown, clock: Clock = { now: Date.now() }, baseDir = tempDir(), host: HostSettings = {}): Promise<Hooks> {
  const options = plugin.options ? plugin.options(raw, fail) : (raw as O);
  const policy: PluginHttpPolicy = { allowedHosts: [], allowPrivateAddresses: false, key: 'plugins.enabled[0]', ...host.http };
  const http = createPluginHttp(plugin.name, policy, host.tally ?? new HttpTally(plugin.name));
  const ctx = createContext(plugin.name, options, { log: createLogger({ level: 'error' }), now: () => clock.now, baseDir, http, strict: host.strict ?? false });
  return plugin.setup(ctx);
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'skein-plugins-'));
}

export const PEER = 'spiffe://skein.local/client/dev-client';

/** `routine` null: a request that targets no routine (a non-dispatch endpoint). */
export function authnRequest(headers: Record<string, string | undefined>, routine: string | null = 'echo'): AuthnRequest {
  return {
    requestId: 'req-1',
    action: routine === null ? undefined : 'dispatch',
    routine: routine ?? undefined,
    method: 'POST',
    path: routine === null ? '/v1/routines' : `/v1/dispatch/${routine}`,
    headers,
    remoteAddress: '127.0.0.1',
    peer: { id: PEER, spiffeId: PEER },
  };
}

export function identity(peer: string, principals: string[] = [], claims: Identity['claims'] = {}): Identity {
  return { peer: { id: peer }, principals, claims };
}

/** `routine` null: a request that targets no routine (a non-dispatch endpoint). */
export function authzRequest(id: Identity, routine: string | null): AuthzRequest {
  return {
    requestId: 'req-1',
    action: routine === null ? undefined : 'dispatch',
    routine: routine ?? undefined,
    method: 'POST',
    path: routine === null ? '/v1/routines' : `/v1/dispatch/${routine}`,
    headers: {},
    remoteAddress: '127.0.0.1',
    identity: id,
  };
}
