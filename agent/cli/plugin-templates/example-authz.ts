/**
 * example-authz: a skein authorization plugin (docs/plugins.md). Scaffolded by
 * `skein plugin new example-authz --kind authz`.
 *
 * What the example hook does (adapt it): `allow` maps a routine to the identities that may
 * run it — principals from token plugins ("jwt:alice", "key:ci") or certificate identities
 * ("spiffe://…"). A listed routine is denied to everyone else (403); an unlisted routine gets
 * no opinion ("abstain"), so other plugins and then authorization.allow / authorization.default
 * in the agent config decide. Any plugin's deny wins.
 *
 * Enable it in the agent config:
 *   "plugins": { "enabled": [{ "name": "example-authz", "options": {
 *     "allow": { "deploy": ["key:ci", "spiffe://skein.local/client/ops"] } } }] }
 *
 * Import ./skein-plugin.ts and nothing else: the agent runs a verified copy of this one
 * file beside its own copy of the API, so other imports would not resolve (and would not be
 * covered by its signature). Clock, crypto, logging and files come through `ctx`.
 *
 * `skein plugin sign` reads the version literal below: bump it when the file changes.
 */
import { definePlugin, type AuthzResult, type Identity, type OptionsFail } from './skein-plugin.ts';

interface Options {
  /** Routine → identities allowed to run it: principals ("key:ci") or peer ids ("spiffe://…"). */
  allow: Record<string, string[]>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates plugins.enabled[].options (the agent passes {} when there are none). Throwing
 * `fail(key, message)` stops the agent at start-up with exit 2, naming this plugin and key.
 */
function parseOptions(raw: unknown, fail: OptionsFail): Options {
  if (!isObject(raw)) throw fail('options', 'must be a JSON object');
  for (const key of Object.keys(raw)) {
    if (key !== 'allow') throw fail(key, 'unknown option (known: allow)');
  }
  const allow = raw.allow ?? {};
  if (!isObject(allow)) throw fail('allow', 'must be an object of routine → identities');
  for (const [routine, ids] of Object.entries(allow)) {
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string' && id !== '')) throw fail(`allow.${routine}`, 'must be an array of identities');
  }
  return { allow: allow as Record<string, string[]> };
}

/** Every name the caller is known by: the certificate's peer id and the token principals. */
function namesOf(identity: Identity): string[] {
  return [identity.peer.id, ...identity.principals];
}

export default definePlugin<Options>({
  name: 'example-authz',
  version: '0.1.0',
  options: parseOptions,
  setup: (ctx) => {
    // A Map: a routine named like an Object.prototype key must not find an inherited value.
    const allow = new Map(Object.entries(ctx.options.allow));
    ctx.log.info('ready', { routines: [...allow.keys()] });
    return {
      // Hooks may be async; each call has plugins.hookTimeoutMs. Throwing, returning
      // something that is not an AuthzResult, or running late fails closed (403, PLUGIN_FAILED).
      authorize(req): AuthzResult {
        // A request that names no routine, or a routine these rules do not cover.
        const allowed = req.routine === undefined ? undefined : allow.get(req.routine);
        if (allowed === undefined) return { decision: 'abstain' };
        const match = namesOf(req.identity).find((n) => allowed.includes(n));
        // `rule` names what decided: the agent's audit line records it as "<plugin>:<rule>".
        const rule = `allow.${req.routine}`;
        if (match !== undefined) return { decision: 'allow', reason: 'LISTED', rule };
        // The caller sees only the reason code and the request id; rule and message go to the
        // audit line, so the message may say what the operator needs to know.
        return { decision: 'deny', reason: 'NOT_LISTED', rule, message: `${namesOf(req.identity).join(', ')} not in options.allow["${req.routine}"]` };
      },
    };
  },
});
