/** Tests of the example-authz plugin, no agent needed. Run: skein plugin test */
import { describe, expect, it } from 'bun:test';
import plugin from './example-authz.ts';
import { authzRequest, fail, hooksOf } from './skein-plugin-testing.ts';

const OPS = 'spiffe://skein.local/client/ops';
const options = { allow: { deploy: ['key:ci', OPS] } };

describe('example-authz options', () => {
  it('accepts no options', () => {
    expect(plugin.options?.({}, fail)).toEqual({ allow: {} });
  });

  it.each([
    [{ allow: { deploy: 'key:ci' } }, /allow\.deploy/],
    [{ allow: { deploy: [''] } }, /allow\.deploy/],
    [{ alow: {} }, /alow/],
  ])('refuses %j', (raw, message) => {
    expect(() => plugin.options?.(raw, fail)).toThrow(message);
  });
});

describe('example-authz authorize', () => {
  it('allows a listed principal or peer', async () => {
    const h = await hooksOf(plugin, options);
    expect(await h.authorize!(authzRequest('deploy', ['key:ci']))).toMatchObject({ decision: 'allow' });
    expect(await h.authorize!(authzRequest('deploy', [], OPS))).toMatchObject({ decision: 'allow' });
  });

  it('denies anyone else a listed routine, naming the rule for the audit line', async () => {
    const h = await hooksOf(plugin, options);
    expect(await h.authorize!(authzRequest('deploy', ['key:other']))).toMatchObject({ decision: 'deny', reason: 'NOT_LISTED', rule: 'allow.deploy' });
  });

  it('abstains on routines it does not list and on other endpoints', async () => {
    const h = await hooksOf(plugin, options);
    expect(await h.authorize!(authzRequest('echo', ['key:other']))).toEqual({ decision: 'abstain' });
    expect(await h.authorize!(authzRequest('constructor'))).toEqual({ decision: 'abstain' });
    expect(await h.authorize!(authzRequest(undefined))).toEqual({ decision: 'abstain' });
  });
});
