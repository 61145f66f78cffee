/**
 * The config-level allow list (`authorization.allow`): who may run which routine without any
 * plugin. Its patterns are compiled by the plugin API's matcher (api.ts), the one
 * routine-policy uses, so a pattern means the same in both places. Rules only allow: what no
 * rule (and no plugin) allows falls to `authorization.default`, "deny" unless configured.
 */
import { configError } from '../config/schema-dsl.ts';
import type { AuthorizationConfig } from '../config/schema.ts';
import { compileIdentityPattern, compileRoutinePattern, type Pattern } from './api.ts';

interface CompiledRule {
  identities: Pattern[];
  routines: Pattern[];
}

export class AllowRules {
  #rules: CompiledRule[];

  /** Compiles the rules; throws SKEIN_ERR_CONFIG naming the key of a malformed pattern. */
  constructor(rules: AuthorizationConfig['allow']) {
    this.#rules = rules.map((rule, i) => ({
      identities: compilePatternList(rule.identities, `authorization.allow[${i}].identities`, compileIdentityPattern),
      routines: compilePatternList(rule.routines, `authorization.allow[${i}].routines`, compileRoutinePattern),
    }));
  }

  /**
   * The index of the first rule matching `routine` and one of `subjects` (the caller's peer
   * id and principals), or undefined. Rules only allow, so the first match is as good as the
   * most specific one, and order makes the audited rule predictable.
   */
  match(subjects: string[], routine: string): number | undefined {
    const i = this.#rules.findIndex((r) => r.routines.some((p) => p.re.test(routine)) && r.identities.some((p) => subjects.some((s) => p.re.test(s))));
    return i === -1 ? undefined : i;
  }
}

/**
 * Compiles the patterns listed under config key `key` (at least one); throws SKEIN_ERR_CONFIG
 * naming the key of a malformed one. Shared with calls.weights, whose patterns mean the same.
 */
export function compilePatternList(texts: string[], key: string, compile: (text: string) => Pattern | string): Pattern[] {
  if (texts.length === 0) throw configError(key, 'must list at least one pattern');
  return texts.map((text, i) => {
    const p = compile(text);
    if (typeof p === 'string') throw configError(`${key}[${i}]`, `${JSON.stringify(text)} ${p}`);
    return p;
  });
}
