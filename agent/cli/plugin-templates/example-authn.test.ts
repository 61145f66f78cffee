/** Tests of the example-authn plugin, no agent needed. Run: skein plugin test */
import { describe, expect, it } from 'bun:test';
import plugin from './example-authn.ts';
import { authnRequest, fail, hooksOf } from './skein-plugin-testing.ts';

const KEY = 'k'.repeat(32);

describe('example-authn options', () => {
  it('accepts no options', () => {
    expect(plugin.options?.({}, fail)).toEqual({ apiKeys: {} });
  });

  it.each([
    [{ apiKeys: { ci: 'short' } }, /apiKeys\.ci/],
    [{ apiKeys: { 'Bad Label': KEY } }, /label must be/],
    [{ apiKey: {} }, /apiKey/],
  ])('refuses %j', (raw, message) => {
    expect(() => plugin.options?.(raw, fail)).toThrow(message);
  });
});

describe('example-authn authenticate', () => {
  it('skips without the header, so other plugins and the certificate decide', async () => {
    const h = await hooksOf(plugin, { apiKeys: { ci: KEY } });
    expect(await h.authenticate!(authnRequest('deploy'))).toEqual({ outcome: 'skip' });
  });

  it('authenticates a known key as key:<label>', async () => {
    const h = await hooksOf(plugin, { apiKeys: { ci: KEY } });
    expect(await h.authenticate!(authnRequest('deploy', { 'x-api-key': KEY }))).toEqual({ outcome: 'authenticated', identity: 'key:ci' });
  });

  it('rejects an unknown key', async () => {
    const h = await hooksOf(plugin, { apiKeys: { ci: KEY } });
    expect(await h.authenticate!(authnRequest('deploy', { 'x-api-key': 'x'.repeat(32) }))).toMatchObject({ outcome: 'rejected', reason: 'BAD_API_KEY' });
  });
});
