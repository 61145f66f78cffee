/**
 * routine-policy: pattern matching (SPIFFE segments, principals, routine globs), claims,
 * the specificity order and deny-beats-allow at equal specificity, defaults, and option
 * validation that names the key.
 */
import { describe, expect, it } from 'vitest';
import plugin from '../../plugins/routine-policy.ts';
import type { AuthzResult, Identity } from '../../agent/plugin-host/api.ts';
import { authzRequest, identity, optionsError, setupPlugin } from './helpers.ts';

const TD = 'spiffe://skein.local';
const DEV = `${TD}/client/dev-client`;

type Rule = { effect: 'allow' | 'deny'; identities: string[]; routines: string[]; claims?: Record<string, unknown> };

async function decide(rules: Rule[], who: Identity, routine: string | null, dflt?: 'abstain' | 'deny'): Promise<AuthzResult> {
  const h = await setupPlugin(plugin, { rules, ...(dflt ? { default: dflt } : {}) });
  return h.authorize!(authzRequest(who, routine));
}

async function decision(rules: Rule[], who: Identity, routine: string | null, dflt?: 'abstain' | 'deny'): Promise<string> {
  const r = await decide(rules, who, routine, dflt);
  return r.decision === 'deny' ? `deny:${r.reason}` : r.decision;
}

const allow = (identities: string[], routines: string[], claims?: Record<string, unknown>): Rule => ({ effect: 'allow', identities, routines, ...(claims ? { claims } : {}) });
const deny = (identities: string[], routines: string[], claims?: Record<string, unknown>): Rule => ({ effect: 'deny', identities, routines, ...(claims ? { claims } : {}) });

describe('routine-policy: matching', () => {
  it('exact identity and routine → allow (reason POLICY_ALLOW); anything else → default abstain', async () => {
    const rules = [allow([DEV], ['echo'])];
    expect(await decide(rules, identity(DEV), 'echo')).toEqual({ decision: 'allow', reason: 'POLICY_ALLOW', rule: 'rules[0]' });
    expect(await decision(rules, identity(DEV), 'add')).toBe('abstain');
    expect(await decision(rules, identity(`${TD}/client/other`), 'echo')).toBe('abstain');
    expect(await decision(rules, identity(`${DEV}/x`), 'echo')).toBe('abstain');
  });

  it('SPIFFE "*" matches exactly one path segment; "**" one or more trailing segments', async () => {
    const one = [allow([`${TD}/client/*`], ['echo'])];
    expect(await decision(one, identity(DEV), 'echo')).toBe('allow');
    expect(await decision(one, identity(`${TD}/client/team/dev`), 'echo')).toBe('abstain');
    expect(await decision(one, identity(`${TD}/client`), 'echo')).toBe('abstain');
    expect(await decision(one, identity(`spiffe://other.domain/client/dev-client`), 'echo')).toBe('abstain');
    const many = [allow([`${TD}/client/**`], ['echo'])];
    expect(await decision(many, identity(DEV), 'echo')).toBe('allow');
    expect(await decision(many, identity(`${TD}/client/team/dev`), 'echo')).toBe('allow');
    expect(await decision(many, identity(`${TD}/client`), 'echo')).toBe('abstain');
    expect(await decision(many, identity(`${TD}/agent/a`), 'echo')).toBe('abstain');
    const partial = [allow([`${TD}/client/dev-*`], ['echo'])];
    expect(await decision(partial, identity(DEV), 'echo')).toBe('allow');
    expect(await decision(partial, identity(`${TD}/client/ops-client`), 'echo')).toBe('abstain');
    const anyDomain = [allow(['spiffe://*/client/dev-client'], ['echo'])];
    expect(await decision(anyDomain, identity('spiffe://elsewhere/client/dev-client'), 'echo')).toBe('allow');
  });

  it('patterns are literal apart from "*": regex characters in them mean themselves', async () => {
    const rules = [allow(['jwt:a.b+c'], ['echo'])];
    expect(await decision(rules, identity('anonymous', ['jwt:a.b+c']), 'echo')).toBe('allow');
    expect(await decision(rules, identity('anonymous', ['jwt:aXbbc']), 'echo')).toBe('abstain');
  });

  it('principals match too: jwt:*, nonce:<name>; "*" in a principal pattern crosses "/"', async () => {
    const rules = [allow(['jwt:*'], ['echo']), allow(['nonce:deploy-bot'], ['deploy'])];
    expect(await decision(rules, identity('anonymous', ['jwt:alice']), 'echo')).toBe('allow');
    expect(await decision(rules, identity('anonymous', ['jwt:https://idp/users/7']), 'echo')).toBe('allow');
    expect(await decision(rules, identity('anonymous', ['nonce:deploy-bot']), 'deploy')).toBe('allow');
    expect(await decision(rules, identity('anonymous', ['nonce:deploy-bot']), 'echo')).toBe('abstain');
    expect(await decision(rules, identity(DEV), 'echo')).toBe('abstain');
  });

  it('"**" alone matches every identity, anonymous included', async () => {
    const rules = [deny(['**'], ['shutdown'])];
    for (const who of [identity('anonymous'), identity(DEV), identity('cn:host', ['jwt:x'])]) {
      expect(await decision(rules, who, 'shutdown')).toBe('deny:POLICY_DENY');
    }
  });

  it('routine globs: "report.*", "*"', async () => {
    const rules = [allow([DEV], ['report.*'])];
    expect(await decision(rules, identity(DEV), 'report.daily')).toBe('allow');
    expect(await decision(rules, identity(DEV), 'report')).toBe('abstain');
    expect(await decision(rules, identity(DEV), 'reportXdaily')).toBe('abstain');
    expect(await decision([allow([DEV], ['*'])], identity(DEV), 'anything')).toBe('allow');
  });

  it('claims: every listed claim must match within ONE token; lists and list-valued claims', async () => {
    const rules = [allow(['jwt:*'], ['deploy'], { role: ['admin', 'ops'], mfa: true })];
    const ok = identity('anonymous', ['jwt:alice'], { 'bearer-jwt': { role: 'ops', mfa: true } });
    expect(await decision(rules, ok, 'deploy')).toBe('allow');
    const noMfa = identity('anonymous', ['jwt:alice'], { 'bearer-jwt': { role: 'ops', mfa: 'true' } });
    expect(await decision(rules, noMfa, 'deploy')).toBe('abstain');
    const split = identity('anonymous', ['jwt:alice'], { 'bearer-jwt': { role: 'ops' }, other: { mfa: true } });
    expect(await decision(rules, split, 'deploy')).toBe('abstain');
    const second = identity('anonymous', ['jwt:alice'], { other: { role: 'x' }, 'bearer-jwt': { role: 'admin', mfa: true } });
    expect(await decision(rules, second, 'deploy')).toBe('allow');
    const groups = [allow(['jwt:*'], ['deploy'], { groups: 'release' })];
    expect(await decision(groups, identity('anonymous', ['jwt:a'], { p: { groups: ['dev', 'release'] } }), 'deploy')).toBe('allow');
    expect(await decision(groups, identity('anonymous', ['jwt:a'], { p: { groups: ['dev'] } }), 'deploy')).toBe('abstain');
    expect(await decision(groups, identity('anonymous', ['jwt:a']), 'deploy')).toBe('abstain');
    // Inherited properties are not claims.
    expect(await decision([allow(['**'], ['x'], { constructor: 'Object' })], identity('anonymous', [], { p: {} }), 'x')).toBe('abstain');
  });

  it('a request without a routine (non-dispatch endpoint) → abstain, even with default deny', async () => {
    expect(await decision([allow(['**'], ['*'])], identity(DEV), null, 'deny')).toBe('abstain');
  });
});

describe('routine-policy: precedence', () => {
  it('deny beats allow at equal specificity, whatever the rule order', async () => {
    const a = allow([`${TD}/client/*`], ['echo']);
    const d = deny([`${TD}/client/*`], ['echo']);
    expect(await decision([a, d], identity(DEV), 'echo')).toBe('deny:POLICY_DENY');
    expect(await decision([d, a], identity(DEV), 'echo')).toBe('deny:POLICY_DENY');
  });

  it('a deny names the rule, and its message (for the audit line only) the patterns that matched', async () => {
    const r = await decide([allow(['jwt:*'], ['*']), deny(['jwt:*'], ['*'])], identity(DEV, ['jwt:mallory']), 'add');
    expect(r).toEqual({ decision: 'deny', reason: 'POLICY_DENY', rule: 'rules[1]', message: 'denied by rules[1] (identity "jwt:*", routine "*")' });
  });

  it('an exact identity beats a wildcard identity (allow overrides a broader deny, and vice versa)', async () => {
    expect(await decision([deny([`${TD}/client/*`], ['echo']), allow([DEV], ['echo'])], identity(DEV), 'echo')).toBe('allow');
    expect(await decision([allow([`${TD}/client/*`], ['echo']), deny([DEV], ['echo'])], identity(DEV), 'echo')).toBe('deny:POLICY_DENY');
    // Identity is compared before routine: an exact identity on "*" beats a wildcard on an exact routine.
    expect(await decision([deny(['jwt:*'], ['billing.refund']), allow(['jwt:alice'], ['*'])], identity('anonymous', ['jwt:alice']), 'billing.refund')).toBe('allow');
  });

  it('all exact identities are equally specific: peer vs principal falls through to deny-beats-allow', async () => {
    expect(await decision([allow([DEV], ['echo']), deny(['jwt:alice'], ['echo'])], identity(DEV, ['jwt:alice']), 'echo')).toBe('deny:POLICY_DENY');
  });

  it('between wildcards, more literal characters win; then no "**" beats "**"; then fewer "*"', async () => {
    const who = identity(`${TD}/client/team/dev`);
    expect(await decision([deny([`${TD}/**`], ['echo']), allow([`${TD}/client/**`], ['echo'])], who, 'echo')).toBe('allow');
    expect(await decision([allow([`${TD}/client/**`], ['echo']), deny([`${TD}/client/*/dev`], ['echo'])], who, 'echo')).toBe('deny:POLICY_DENY');
    const one = identity(DEV);
    expect(await decision([deny([`${TD}/client/**`], ['echo']), allow([`${TD}/client/*`], ['echo'])], one, 'echo')).toBe('allow');
    expect(await decision([deny(['jwt:*-*'], ['echo']), allow(['jwt:*'], ['echo'])], identity('anonymous', ['jwt:a-b']), 'echo')).toBe('deny:POLICY_DENY');
    expect(await decision([deny(['jwt:*a*'], ['echo']), allow(['jwt:a*'], ['echo'])], identity('anonymous', ['jwt:ab']), 'echo')).toBe('allow');
  });

  it('a rule is as specific as its most specific matching identity pattern', async () => {
    const rules = [deny([DEV], ['echo']), allow(['jwt:*', DEV], ['echo'])];
    // Both rules match DEV exactly: equal → deny.
    expect(await decision(rules, identity(DEV, ['jwt:a']), 'echo')).toBe('deny:POLICY_DENY');
    // Only the allow rule matches (via jwt:*).
    expect(await decision(rules, identity('anonymous', ['jwt:a']), 'echo')).toBe('allow');
  });

  it('with identity equal, an exact routine beats a glob, and a longer glob beats a shorter one', async () => {
    expect(await decision([deny(['jwt:*'], ['*']), allow(['jwt:*'], ['report.daily'])], identity('a', ['jwt:x']), 'report.daily')).toBe('allow');
    expect(await decision([allow(['jwt:*'], ['*']), deny(['jwt:*'], ['report.*'])], identity('a', ['jwt:x']), 'report.daily')).toBe('deny:POLICY_DENY');
    expect(await decision([deny(['jwt:*'], ['report.*']), allow(['jwt:*'], ['report.d*'])], identity('a', ['jwt:x']), 'report.daily')).toBe('allow');
  });

  it('claims add specificity: more claim conditions win when identity and routine tie', async () => {
    const admin = identity('anonymous', ['jwt:alice'], { 'bearer-jwt': { role: 'admin', team: 'ops' } });
    const rules = [deny(['jwt:*'], ['deploy']), allow(['jwt:*'], ['deploy'], { role: 'admin' })];
    expect(await decision(rules, admin, 'deploy')).toBe('allow');
    expect(await decision(rules, identity('anonymous', ['jwt:bob'], { 'bearer-jwt': { role: 'dev' } }), 'deploy')).toBe('deny:POLICY_DENY');
    const more = [...rules, deny(['jwt:*'], ['deploy'], { role: 'admin', team: 'ops' })];
    expect(await decision(more, admin, 'deploy')).toBe('deny:POLICY_DENY');
  });

  it('no matching rule → default: abstain, or deny with POLICY_DEFAULT_DENY', async () => {
    expect(await decide([allow([DEV], ['echo'])], identity(DEV), 'add')).toEqual({ decision: 'abstain' });
    expect(await decide([allow([DEV], ['echo'])], identity(DEV, ['jwt:a']), 'add', 'deny')).toEqual({
      decision: 'deny',
      reason: 'POLICY_DEFAULT_DENY',
      rule: 'default',
      message: `no rule lets ${DEV}, jwt:a call "add" (default: deny)`,
    });
    expect(await decision([], identity(DEV), 'add', 'deny')).toBe('deny:POLICY_DEFAULT_DENY');
  });
});

describe('routine-policy: options validation names the key', () => {
  const ok = { effect: 'allow', identities: [DEV], routines: ['echo'] };
  const cases: Array<[string, unknown, RegExp]> = [
    ['no options', undefined, /^rules: is required/],
    ['not an object', [], /^options: must be an object/],
    ['unknown option', { rules: [ok], defualt: 'deny' }, /^defualt: unknown option/],
    ['bad default', { rules: [ok], default: 'allow' }, /^default: must be "abstain" or "deny"/],
    ['rules missing', { default: 'deny' }, /^rules: is required/],
    ['rules not a list', { rules: ok }, /^rules: must be a list/],
    ['rule not an object', { rules: [ok, 'allow all'] }, /^rules\[1\]: must be an object/],
    ['unknown rule key', { rules: [ok, { ...ok, effcet: 'deny' }] }, /^rules\[1\]\.effcet: unknown key/],
    ['bad effect', { rules: [{ ...ok, effect: 'permit' }] }, /^rules\[0\]\.effect: must be "allow" or "deny", got "permit"/],
    ['identities missing', { rules: [{ effect: 'allow', routines: ['echo'] }] }, /^rules\[0\]\.identities: is required/],
    ['empty identities', { rules: [{ ...ok, identities: [] }] }, /^rules\[0\]\.identities: must be a non-empty list/],
    ['identity not a string', { rules: [{ ...ok, identities: [DEV, 3] }] }, /^rules\[0\]\.identities\[1\]: must be a string/],
    ['empty identity', { rules: [{ ...ok, identities: [''] }] }, /^rules\[0\]\.identities\[0\]: must be 1-512 characters/],
    ['"**" mid-path', { rules: [{ ...ok, identities: [`${TD}/**/dev`] }] }, /^rules\[0\]\.identities\[0\]: "\*\*" is only allowed as the last path segment/],
    ['"**" inside a segment', { rules: [{ ...ok, identities: [`${TD}/client/dev**`] }] }, /^rules\[0\]\.identities\[0\]: "\*\*" must be a whole path segment/],
    ['"**" in a principal', { rules: [{ ...ok, identities: ['jwt:**'] }] }, /^rules\[0\]\.identities\[0\]: "\*\*" is only allowed alone/],
    ['"***"', { rules: [{ ...ok, identities: ['***'] }] }, /^rules\[0\]\.identities\[0\]: "\*\*\*" is not a pattern/],
    ['routines missing', { rules: [{ effect: 'allow', identities: [DEV] }] }, /^rules\[0\]\.routines: is required/],
    ['bad routine pattern', { rules: [{ ...ok, routines: ['echo', 'a b'] }] }, /^rules\[0\]\.routines\[1\]: must be a routine name or a glob/],
    ['"**" routine', { rules: [{ ...ok, routines: ['**'] }] }, /^rules\[0\]\.routines\[0\]: "\*\*" is not a routine pattern/],
    ['claims not an object', { rules: [{ ...ok, claims: ['role'] }] }, /^rules\[0\]\.claims: must be an object/],
    ['empty claims', { rules: [{ ...ok, claims: {} }] }, /^rules\[0\]\.claims: must name at least one claim/],
    ['claim value object', { rules: [{ ...ok, claims: { role: { any: 1 } } }] }, /^rules\[0\]\.claims\.role: must be a string, number or boolean/],
    ['claim empty list', { rules: [{ ...ok, claims: { role: [] } }] }, /^rules\[0\]\.claims\.role: must be a string, number or boolean, or a non-empty list/],
  ];
  for (const [what, raw, expected] of cases) {
    it(what, () => {
      expect(optionsError(plugin, raw)).toMatch(expected);
    });
  }

  it('defaults to abstain and keeps the rules as given (claims normalised to lists)', () => {
    const o = plugin.options!({ rules: [{ ...ok, claims: { role: 'admin', level: [1, 2] } }] }, (k, m) => new Error(`${k}: ${m}`));
    expect(o.default).toBe('abstain');
    expect(o.rules).toEqual([{ effect: 'allow', identities: [DEV], routines: ['echo'], claims: { role: ['admin'], level: [1, 2] } }]);
  });
});

describe('routine-policy: actions', () => {
  it('decides running a routine (dispatch, call.submit) and abstains on reading, cancelling and listing async calls, whatever its default', async () => {
    const h = await setupPlugin(plugin, { rules: [allow([DEV], ['echo']), deny(['**'], ['add'])], default: 'deny' });
    const ask = (action: string, routine: string) => h.authorize!({ ...authzRequest(identity(DEV), routine), action } as Parameters<NonNullable<typeof h.authorize>>[0]);
    for (const action of ['dispatch', 'call.submit']) {
      expect(await ask(action, 'echo'), action).toMatchObject({ decision: 'allow' });
      expect(await ask(action, 'add'), action).toMatchObject({ decision: 'deny', reason: 'POLICY_DENY' });
      expect(await ask(action, 'other'), action).toMatchObject({ decision: 'deny', reason: 'POLICY_DEFAULT_DENY' });
    }
    // "may run echo" is not "may read everyone's echo calls"; nor does a deny hide one's own.
    for (const action of ['call.read', 'call.cancel', 'call.list'])
      for (const routine of ['echo', 'add', 'other']) expect(await ask(action, routine), `${action} ${routine}`).toEqual({ decision: 'abstain' });
  });
});
