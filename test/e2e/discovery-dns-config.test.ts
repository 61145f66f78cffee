/**
 * discovery.dns keys that cannot work stop the start (exit 2, SKEIN_ERR_CONFIG naming the key),
 * before anything is dialled: a SPIFFE ID pattern that does not compile, a record name that is
 * not a DNS name, a resolver that is not an address.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { baseConfig, startMustFail, stopAll } from '../helpers/agent.ts';

const dns = (over: Record<string, unknown>) => baseConfig({ discovery: { enabled: true, groups: [], dns: { names: ['_skein._tcp.fleet.test'], ...over } } });

describe('discovery.dns configuration errors', () => {
  afterAll(stopAll);

  it.each([
    [
      { identities: ['spiffe://fleet.test/agent/***'] },
      /SKEIN_ERR_CONFIG.*config key "discovery\.dns\.identities\[0\]".*"spiffe:\/\/fleet\.test\/agent\/\*\*\*" "\*\*\*" is not a pattern: use "\*" or "\*\*"/,
    ],
    [{ names: ['_skein._tcp.fleet test'] }, /SKEIN_ERR_CONFIG.*config key "discovery\.dns\.names\[0\]".*a DNS name/],
    [{ resolver: 'dns.example:53' }, /SKEIN_ERR_CONFIG.*config key "discovery\.dns\.resolver".*an IP address, optionally with a port/],
  ])('%j is refused at start, naming the key', async (over, message) => {
    const stderr = await startMustFail(dns(over));
    expect(stderr).toMatch(message);
  });
});
