/**
 * example-authn: a skein authentication plugin (docs/plugins.md). Scaffolded by
 * `skein plugin new example-authn --kind authn`.
 *
 * What the example hook does (adapt it): accepts an API key in the `x-api-key` header and
 * asserts the identity `key:<label>`. No header (or no keys configured): "skip", so other
 * plugins and the client certificate decide. A wrong key: "rejected" (401, reason BAD_API_KEY).
 * Authorization then decides what `key:<label>` may run (authorization.allow in the agent
 * config, routine-policy, or an authz plugin of your own).
 *
 * Enable it in the agent config (authenticate hooks run in plugins.enabled order):
 *   "plugins": { "enabled": [{ "name": "example-authn", "options": {
 *     "apiKeys": { "ci": "<at least 32 random characters>" } } }] }
 *
 * Import ./skein-plugin.ts and nothing else: the agent runs a verified copy of this one
 * file beside its own copy of the API, so other imports would not resolve (and would not be
 * covered by its signature). Clock, crypto, logging and files come through `ctx`.
 *
 * `skein plugin sign` reads the version literal below: bump it when the file changes.
 */
import { definePlugin, type AuthnResult, type OptionsFail } from './skein-plugin.ts';

interface Options {
  /** Label → API key. Empty: authenticate always skips. */
  apiKeys: Record<string, string>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates plugins.enabled[].options (the agent passes {} when there are none). Throwing
 * `fail(key, message)` stops the agent at start-up with exit 2, naming this plugin and key.
 */
function parseOptions(raw: unknown, fail: OptionsFail): Options {
  if (!isObject(raw)) throw fail('options', 'must be a JSON object');
  for (const key of Object.keys(raw)) {
    if (key !== 'apiKeys') throw fail(key, 'unknown option (known: apiKeys)');
  }
  const apiKeys = raw.apiKeys ?? {};
  if (!isObject(apiKeys)) throw fail('apiKeys', 'must be an object of label → key');
  for (const [label, key] of Object.entries(apiKeys)) {
    if (!/^[a-z0-9-]{1,32}$/.test(label)) throw fail(`apiKeys.${label}`, 'label must be 1-32 of a-z 0-9 -');
    if (typeof key !== 'string' || key.length < 32) throw fail(`apiKeys.${label}`, 'must be a string of at least 32 characters');
  }
  return { apiKeys: apiKeys as Record<string, string> };
}

export default definePlugin<Options>({
  name: 'example-authn',
  version: '0.1.0',
  options: parseOptions,
  setup: (ctx) => {
    const keys = Object.entries(ctx.options.apiKeys);
    ctx.log.info('ready', { apiKeys: keys.length });
    return {
      // Hooks may be async; each call has plugins.hookTimeoutMs. Throwing, returning
      // something that is not an AuthnResult, or running late fails closed (401, PLUGIN_FAILED).
      authenticate(req): AuthnResult {
        const given = req.headers['x-api-key'];
        if (given === undefined || keys.length === 0) return { outcome: 'skip' };
        // Compare with every key, in constant time, so timing does not tell which one matched.
        let label: string | undefined;
        for (const [l, key] of keys) if (ctx.crypto.timingSafeEqual(given, key)) label = l;
        if (label === undefined) return { outcome: 'rejected', reason: 'BAD_API_KEY', message: 'unknown API key' };
        return { outcome: 'authenticated', identity: `key:${label}` };
      },
    };
  },
});
