/**
 * Who a call is for, as the pool's scheduler sees it (agent/workers/scheduler.ts): the
 * caller's fairness key, its weight from calls.weights, and the call's priority from the
 * x-skein-priority header. The HTTP layer fills CallRequest.caller/weight/priority with these
 * after authentication.
 */
import { SkeinError } from '../../common/errors/index.ts';
import type { AgentConfig } from '../config/schema.ts';
import { compilePatternList } from '../plugin-host/allow-rules.ts';
import { compileIdentityPattern, type Identity, type Pattern } from '../plugin-host/api.ts';
import { DEFAULT_PRIORITY, PRIORITIES, type Priority } from '../workers/call.ts';
import type { Reloadable, Staged } from '../lifecycle/reloadable.ts';

export const PRIORITY_HEADER = 'x-skein-priority';

/**
 * The caller's fairness (and ownership) key: the transport peer id plus every token
 * principal, sorted and without duplicates, so it is stable whatever order the authenticate
 * hooks asserted them in, and two tokens with different principals presented over the same
 * client certificate are different callers. JSON keeps the parts apart whatever characters
 * a principal holds.
 *
 * @example
 *   callerKey({ peer: { id: 'spiffe://skein.local/client/ci' }, principals: ['jwt:bob'], claims: {} });
 *   // '["spiffe://skein.local/client/ci","jwt:bob"]'
 */
export function callerKey(identity: Pick<Identity, 'peer' | 'principals'>): string {
  return JSON.stringify([identity.peer.id, ...[...new Set(identity.principals)].sort()]);
}

/**
 * The call's priority from the x-skein-priority header: DEFAULT_PRIORITY when absent; any
 * other value than a level's name is refused (SKEIN_ERR_BAD_REQUEST), never guessed.
 */
export function parsePriority(header: string | undefined): Priority {
  if (header === undefined) return DEFAULT_PRIORITY;
  if ((PRIORITIES as readonly string[]).includes(header)) return header as Priority;
  throw new SkeinError('SKEIN_ERR_BAD_REQUEST', `${PRIORITY_HEADER} must be one of ${PRIORITIES.join(', ')}; got ${JSON.stringify(header.slice(0, 64))}`, {
    header: PRIORITY_HEADER,
    allowed: [...PRIORITIES],
  });
}

type Rules = Array<{ identities: Pattern[]; weight: number }>;

/** The calls keys a running agent applies (agent/lifecycle/reloadable.ts). */
export const CALLS_RELOAD_KEYS = ['calls.weights'] as const;

/** Compiles the rules; throws SKEIN_ERR_CONFIG naming the key of a malformed pattern. */
function compileRules(rules: AgentConfig['calls']['weights']): Rules {
  return rules.map((rule, i) => ({ identities: compilePatternList(rule.identities, `calls.weights[${i}].identities`, compileIdentityPattern), weight: rule.weight }));
}

/**
 * calls.weights compiled: the fair-share weight of a caller identity. It applies live
 * (agent/lifecycle/reloadable.ts): a reload that changes calls.weights weighs every call
 * submitted after it; calls already queued keep the weight they were given.
 */
export class CallerWeights implements Reloadable<{ calls: Pick<AgentConfig['calls'], 'weights'> }> {
  readonly name = 'calls.weights';
  readonly reloadKeys = CALLS_RELOAD_KEYS;
  #rules: Rules;

  /** Throws SKEIN_ERR_CONFIG naming the key of a malformed pattern. */
  constructor(rules: AgentConfig['calls']['weights']) {
    this.#rules = compileRules(rules);
  }

  /** A malformed pattern refuses the reload (SKEIN_ERR_CONFIG naming its key). */
  stage(next: { calls: Pick<AgentConfig['calls'], 'weights'> }, changed: readonly string[]): Staged | undefined {
    if (!changed.length) return undefined;
    const rules = compileRules(next.calls.weights);
    return { commit: () => (this.#rules = rules) };
  }

  /**
   * The weight of the first rule with a pattern matching the caller's peer id or one of its
   * principals (as authorization.allow matches), else 1.
   */
  weightOf(identity: Pick<Identity, 'peer' | 'principals'>): number {
    const subjects = [identity.peer.id, ...identity.principals];
    return this.#rules.find((r) => r.identities.some((p) => subjects.some((s) => p.re.test(s))))?.weight ?? 1;
  }
}
