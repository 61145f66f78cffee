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

/** calls.weights compiled: the fair-share weight of a caller identity. */
export class CallerWeights {
  #rules: Array<{ identities: Pattern[]; weight: number }>;

  /** Compiles the rules; throws SKEIN_ERR_CONFIG naming the key of a malformed pattern. */
  constructor(rules: AgentConfig['calls']['weights']) {
    this.#rules = rules.map((rule, i) => ({ identities: compilePatternList(rule.identities, `calls.weights[${i}].identities`, compileIdentityPattern), weight: rule.weight }));
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
