/**
 * ctx.http: the guarded outbound client (agent/http) as a plugin sees it. What a plugin may
 * reach is the operator's decision, written next to the plugin in the config
 * (plugins.enabled[i].allowedHosts, .allowPrivateAddresses), never the plugin's: a plugin
 * cannot widen it. Every request is counted by outcome, for skein_plugin_http_requests_total.
 */
import { SkeinError } from '../../common/errors/index.ts';
import { httpError } from '../http/errors.ts';
import { outboundRequest, type OutboundRequest } from '../http/client.ts';
import type { PluginHttpRecorder } from '../metrics/index.ts';
import type { HttpRequestOptions, HttpResponse, PluginHttp } from './api.ts';

/** What the operator allowed one enabled plugin to reach. */
export interface PluginHttpPolicy {
  allowedHosts: readonly string[];
  allowPrivateAddresses: boolean;
  /** "plugins.enabled[2]": the config path the messages name. */
  key: string;
}

/**
 * Counts a plugin's requests by outcome ("ok" or the SKEIN_ERR_HTTP_* code). Plugins make
 * requests in setup, before the agent's metrics are handed to the auth pipeline, so counts
 * wait here until `bind` and go straight to the recorder after it.
 */
export class HttpTally {
  #plugin: string;
  #pending = new Map<string, number>();
  #recorder: PluginHttpRecorder | undefined;

  constructor(plugin: string) {
    this.#plugin = plugin;
  }

  record(outcome: string): void {
    if (this.#recorder) this.#recorder.pluginHttpRequest(this.#plugin, outcome);
    else this.#pending.set(outcome, (this.#pending.get(outcome) ?? 0) + 1);
  }

  bind(recorder: PluginHttpRecorder): void {
    this.#recorder = recorder;
    for (const [outcome, n] of this.#pending) recorder.pluginHttpRequest(this.#plugin, outcome, n);
    this.#pending.clear();
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

export function createPluginHttp(plugin: string, policy: PluginHttpPolicy, tally: HttpTally): PluginHttp {
  const label = `plugin "${plugin}"`;
  const send = async (url: string, options: HttpRequestOptions): Promise<HttpResponse> => {
    if (typeof options !== 'object' || options === null) throw httpError('SKEIN_ERR_HTTP_OPTIONS', `${label}: request options must be an object`);
    const req: OutboundRequest = {
      url,
      allowedHosts: policy.allowedHosts,
      addressPolicy: policy.allowPrivateAddresses ? 'private' : 'public',
      label,
      settings: { allowedHosts: `${policy.key}.allowedHosts`, allowPrivate: `${policy.key}.allowPrivateAddresses` },
      ...(options.method !== undefined ? { method: options.method } : {}),
      ...(options.headers !== undefined ? { headers: options.headers } : {}),
      ...(options.body !== undefined ? { body: options.body } : {}),
      ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.maxRedirects !== undefined ? { maxRedirects: options.maxRedirects } : {}),
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
    };
    const res = await outboundRequest(req);
    const body = new Uint8Array(res.body.buffer, res.body.byteOffset, res.body.byteLength);
    return { status: res.status, headers: res.headers, body, url: res.url, text: () => Buffer.from(body).toString('utf8') };
  };
  /** Runs one call of the API and counts its outcome once. */
  const counted = async <T>(call: () => Promise<T>, outcome: (value: T) => string): Promise<T> => {
    try {
      const value = await call();
      tally.record(outcome(value));
      return value;
    } catch (err) {
      tally.record(err instanceof SkeinError ? err.code : 'SKEIN_ERR_INTERNAL');
      throw err;
    }
  };
  return {
    request: (url, options = {}) =>
      counted(
        () => send(url, options),
        (res) => (res.status >= 400 ? 'SKEIN_ERR_HTTP_STATUS' : 'ok'),
      ),
    fetchJson: (url, options = {}) =>
      counted(
        async () => {
          const res = await send(url, { ...options, method: 'GET', headers: { accept: 'application/json', ...(options.headers ?? {}) } });
          if (res.status < 200 || res.status >= 300) {
            throw httpError('SKEIN_ERR_HTTP_STATUS', `${label}: ${res.url}: the server answered ${res.status}; check the URL and the server`, { url, target: res.url, status: res.status });
          }
          try {
            return JSON.parse(decoder.decode(res.body)) as unknown;
          } catch (err) {
            throw httpError('SKEIN_ERR_HTTP_BODY', `${label}: ${res.url}: the body is not UTF-8 JSON (${(err as Error).message})`, { url, target: res.url }, err);
          }
        },
        () => 'ok',
      ),
  };
}
