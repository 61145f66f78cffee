/**
 * routine-policy: authorizes routine calls by identity, routine and token claims.
 *
 * Options:
 *   rules    required list (1–10,000) of
 *              { "effect": "allow" | "deny",
 *                "identities": [pattern, …],     non-empty
 *                "routines": [name or glob, …],  non-empty
 *                "claims": { "<claim>": value | [values] } }   optional
 *   default  "abstain" (default) or "deny": the decision when no rule matches
 *
 * A rule matches a request when
 *   - one of its identity patterns matches one of the caller's identities: the mTLS peer
 *     (identity.peer.id, e.g. spiffe://skein.local/client/dev-client, or "anonymous") or a
 *     principal from an authenticate hook (jwt:alice, nonce:deploy-bot);
 *   - one of its routine patterns matches the routine called;
 *   - and, with `claims`, ONE token's claims (identity.claims holds one record per
 *     authenticating plugin) satisfy every listed claim: the claim equals the value or one of
 *     the listed values (strict equality, no type coercion); a claim holding a list (e.g.
 *     "groups", "aud") matches when any element does. Claim names are top-level names, taken
 *     literally (no dotted paths).
 *
 * Patterns: the host's matcher (compileIdentityPattern / compileRoutinePattern in
 * skein-plugin.ts), the same one the agent's authorization.allow rules use:
 *   - without "*": exact, case-sensitive match;
 *   - SPIFFE patterns (starting with "spiffe://"): "*" matches within one path segment
 *     (a whole-segment "*" matches exactly one non-empty segment: spiffe://td/client/*), and
 *     "**" as the last segment matches one or more trailing segments (spiffe://td/client/**);
 *   - other identity patterns (jwt:*, nonce:ci-*): "*" matches any run of characters;
 *   - "**" alone matches every identity, "anonymous" included;
 *   - routine patterns: "*" matches any run of characters ("report.*", "*").
 *
 * Decision: among the matching rules the MOST SPECIFIC wins; at equal specificity deny beats
 * allow. Specificity compares, in order (the first difference decides):
 *   1. the identity pattern that matched (the rule's most specific one):
 *        an exact pattern beats any wildcard (all exact patterns are equal, whether they named
 *        the peer or a principal); between wildcards, more literal (non-"*") characters win,
 *        then a pattern without "**" beats one with it, then fewer "*" win;
 *   2. the routine pattern that matched: exact beats glob; between globs, more literal
 *      characters win, then fewer "*";
 *   3. the number of claim conditions: more is more specific (no claims = 0).
 * So "allow jwt:alice on *" beats "deny jwt:* on billing.refund" (identity is compared first),
 * and "allow jwt:* on deploy if role=admin" beats "deny jwt:* on deploy".
 * No matching rule → `default`.
 *
 * Results: allow (reason POLICY_ALLOW), deny with reason POLICY_DENY or POLICY_DEFAULT_DENY,
 * or abstain. Allow and deny name the rule that decided ("rules[3]", or "default"), and a deny's
 * message names the patterns that matched: the host writes both to the audit line only, never
 * to the caller, who sees the reason code and the request id. Requests that target no
 * routine (non-dispatch endpoints) are not this plugin's business: it abstains, and so it
 * does for reading, cancelling and listing async calls (action call.read, call.cancel,
 * call.list); its rules decide `dispatch` and `call.submit` alike.
 *
 * Decision hooks for anything this rule language cannot express are simply other plugins'
 * authorize hooks: enable a plugin of your own next to this one and the host combines their
 * decisions (and abstentions) like any others.
 *
 * Only './skein-plugin.ts' is imported: the compiled agent loads this file from disk, where
 * nothing else resolves.
 */
import {
  bestMatch,
  compareSpecificity,
  compileIdentityPattern,
  compileRoutinePattern,
  definePlugin,
  type AuthzRequest,
  type AuthzResult,
  type Identity,
  type OptionsFail,
  type Pattern,
} from './skein-plugin.ts';

type ClaimValue = string | number | boolean;

export interface PolicyRule {
  effect: 'allow' | 'deny';
  identities: string[];
  routines: string[];
  claims?: Record<string, ClaimValue[]>;
}

export interface RoutinePolicyOptions {
  rules: PolicyRule[];
  default: 'abstain' | 'deny';
}

const MAX_RULES = 10_000;
const MAX_PATTERNS = 1000;
const RULE_KEYS = ['effect', 'identities', 'routines', 'claims'];

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function patternList(raw: unknown, key: string, compile: (text: string) => Pattern | string, fail: OptionsFail): Pattern[] {
  if (raw === undefined) throw fail(key, 'is required: a non-empty list of patterns');
  if (!Array.isArray(raw) || raw.length === 0) throw fail(key, 'must be a non-empty list of patterns');
  if (raw.length > MAX_PATTERNS) throw fail(key, `at most ${MAX_PATTERNS} patterns`);
  return raw.map((p, i) => {
    if (typeof p !== 'string') throw fail(`${key}[${i}]`, 'must be a string');
    const compiled = compile(p);
    if (typeof compiled === 'string') throw fail(`${key}[${i}]`, compiled);
    return compiled;
  });
}

function claimConditions(raw: unknown, key: string, fail: OptionsFail): Record<string, ClaimValue[]> {
  if (!isPlainObject(raw)) throw fail(key, 'must be an object: { "<claim>": value or [values] }');
  const names = Object.keys(raw);
  if (names.length === 0) throw fail(key, 'must name at least one claim (omit "claims" to match any token)');
  const isValue = (v: unknown): v is ClaimValue => typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
  const out: Record<string, ClaimValue[]> = {};
  for (const name of names) {
    if (name.length > 128) throw fail(`${key}.${name.slice(0, 32)}…`, 'claim names are at most 128 characters');
    const v = raw[name];
    if (isValue(v)) out[name] = [v];
    else if (Array.isArray(v) && v.length > 0 && v.length <= MAX_PATTERNS && v.every(isValue)) out[name] = [...v];
    else throw fail(`${key}.${name}`, 'must be a string, number or boolean, or a non-empty list of them');
  }
  return out;
}

/** Options after validation; patterns stay compiled (they are checked once, here). */
interface CompiledRule {
  effect: 'allow' | 'deny';
  identities: Pattern[];
  routines: Pattern[];
  claims: Record<string, ClaimValue[]> | undefined;
}

interface CompiledOptions extends RoutinePolicyOptions {
  compiled: CompiledRule[];
}

function parseOptions(raw: unknown, fail: OptionsFail): CompiledOptions {
  if (raw === undefined) throw fail('rules', 'is required: a list of { effect, identities, routines, claims? }');
  if (!isPlainObject(raw)) throw fail('options', 'must be an object with "rules"');
  for (const k of Object.keys(raw)) {
    if (k !== 'rules' && k !== 'default') throw fail(k, 'unknown option (known: rules, default)');
  }
  const dflt = raw.default ?? 'abstain';
  if (dflt !== 'abstain' && dflt !== 'deny') throw fail('default', `must be "abstain" or "deny", got ${JSON.stringify(raw.default)}`);
  if (raw.rules === undefined) throw fail('rules', 'is required: a list of { effect, identities, routines, claims? }');
  if (!Array.isArray(raw.rules)) throw fail('rules', 'must be a list of { effect, identities, routines, claims? }');
  if (raw.rules.length > MAX_RULES) throw fail('rules', `at most ${MAX_RULES} rules`);
  const rules: PolicyRule[] = [];
  const compiled: CompiledRule[] = [];
  raw.rules.forEach((r, i) => {
    const at = `rules[${i}]`;
    if (!isPlainObject(r)) throw fail(at, 'must be an object { effect, identities, routines, claims? }');
    for (const k of Object.keys(r)) {
      if (!RULE_KEYS.includes(k)) throw fail(`${at}.${k}`, `unknown key (known: ${RULE_KEYS.join(', ')})`);
    }
    if (r.effect !== 'allow' && r.effect !== 'deny') throw fail(`${at}.effect`, `must be "allow" or "deny", got ${JSON.stringify(r.effect)}`);
    const identities = patternList(r.identities, `${at}.identities`, compileIdentityPattern, fail);
    const routines = patternList(r.routines, `${at}.routines`, compileRoutinePattern, fail);
    const claims = r.claims === undefined ? undefined : claimConditions(r.claims, `${at}.claims`, fail);
    rules.push({ effect: r.effect, identities: identities.map((p) => p.text), routines: routines.map((p) => p.text), ...(claims ? { claims } : {}) });
    compiled.push({ effect: r.effect, identities, routines, claims });
  });
  return { rules, default: dflt, compiled };
}

function claimsMatch(conditions: Record<string, ClaimValue[]>, tokens: Identity['claims']): boolean {
  const entries = Object.entries(conditions);
  return Object.values(tokens).some((claims) =>
    entries.every(([name, allowed]) => {
      if (!Object.prototype.hasOwnProperty.call(claims, name)) return false;
      const v = claims[name];
      return Array.isArray(v) ? v.some((e) => allowed.includes(e as ClaimValue)) : allowed.includes(v as ClaimValue);
    }),
  );
}

export default definePlugin<CompiledOptions>({
  name: 'routine-policy',
  version: '1.0.0',
  options: parseOptions,
  setup(ctx) {
    const { compiled, default: dflt } = ctx.options;
    return {
      authorize(req: AuthzRequest): AuthzResult {
        const routine = req.routine;
        if (routine === undefined) return { decision: 'abstain' };
        // The rules say who may RUN a routine (now or as an async call), never whose async
        // calls one may read, cancel or list: "may run X" must not become "may read everyone's
        // X calls". (A host before `action` existed sends none: those requests were dispatches.)
        if (req.action !== undefined && req.action !== 'dispatch' && req.action !== 'call.submit') return { decision: 'abstain' };
        const subjects = [req.identity.peer.id, ...req.identity.principals];
        let winner: { index: number; score: number[]; identity: string; routine: string } | undefined;
        compiled.forEach((rule, index) => {
          const r = bestMatch(rule.routines, [routine]);
          if (!r) return;
          const id = bestMatch(rule.identities, subjects);
          if (!id) return;
          if (rule.claims && !claimsMatch(rule.claims, req.identity.claims)) return;
          const score = [...id.score, ...r.score, rule.claims ? Object.keys(rule.claims).length : 0];
          const c = winner ? compareSpecificity(score, winner.score) : 1;
          // More specific wins; at equal specificity deny beats allow, then the earlier rule.
          if (c > 0 || (c === 0 && rule.effect === 'deny' && compiled[winner!.index]!.effect === 'allow')) {
            winner = { index, score, identity: id.text, routine: r.text };
          }
        });
        if (winner) {
          const rule = compiled[winner.index]!;
          ctx.log.debug('policy decision', { requestId: req.requestId, rule: winner.index, effect: rule.effect, routine });
          const ruleName = `rules[${winner.index}]`;
          if (rule.effect === 'allow') return { decision: 'allow', reason: 'POLICY_ALLOW', rule: ruleName };
          // Rule and message reach the audit line only (see AuthzResult in skein-plugin.ts).
          return {
            decision: 'deny',
            reason: 'POLICY_DENY',
            rule: ruleName,
            message: `denied by ${ruleName} (identity "${winner.identity}", routine "${winner.routine}")`,
          };
        }
        if (dflt === 'deny') {
          const who = [req.identity.peer.id, ...req.identity.principals].join(', ');
          return { decision: 'deny', reason: 'POLICY_DEFAULT_DENY', rule: 'default', message: `no rule lets ${who} call "${routine}" (default: deny)` };
        }
        return { decision: 'abstain' };
      },
    };
  },
});
