/**
 * The one SPIFFE ID parser (common/spiffe/index.ts), table-driven against the SPIFFE ID spec,
 * and what is built on it: a certificate's identity from its URI SANs, the trust domains a
 * CA bundle names, advert validation, and the TLS failure vocabulary.
 */
import { describe, expect, it } from 'vitest';
import { parseSpiffeId, type SpiffeProblem } from '../../common/spiffe/index.ts';
import { caTrustDomains, sanIdentity } from '../../agent/pki/describe.ts';
import { isValidSpiffeId } from '../../agent/discovery/advert.ts';
import { isValidTrustDomain } from '../../agent/pki/index.ts';
import { createCaCertificate, generateKeyPair } from '../../agent/pki/x509.ts';
import { isTlsFailure, tlsFailureReason } from '../../agent/pki/tls-refusal.ts';
import { transportError } from '../../agent/client/transport-error.ts';

describe('parseSpiffeId: valid workload IDs', () => {
  it.each([
    ['spiffe://skein.local/client/dev-client', 'skein.local', '/client/dev-client'],
    ['spiffe://example.org/a', 'example.org', '/a'],
    ['spiffe://a_b-c.9/Mixed.Case/x_y-z', 'a_b-c.9', '/Mixed.Case/x_y-z'],
    ['spiffe://td/...', 'td', '/...'],
    [`spiffe://${'t'.repeat(255)}/p`, 't'.repeat(255), '/p'],
  ])('%s', (id, trustDomain, path) => {
    expect(parseSpiffeId(id)).toEqual({ ok: true, id, trustDomain, path });
    expect(isValidSpiffeId(id)).toBe(id.length <= 512);
  });
});

describe('parseSpiffeId: each malformation has its own problem and message', () => {
  const cases: Array<[string, unknown, SpiffeProblem, RegExp]> = [
    ['empty string', '', 'empty', /it is empty/],
    ['not a string', 42, 'empty', /it is empty/],
    ['other scheme', 'https://skein.local/client/a', 'scheme', /does not start with "spiffe:\/\/"/],
    ['upper-case scheme', 'SPIFFE://skein.local/client/a', 'scheme', /scheme must be "spiffe:\/\/" in lower case/],
    ['no slashes', 'spiffe:skein.local/a', 'scheme', /does not start with/],
    ['no trust domain', 'spiffe:///client/a', 'trust-domain-missing', /has no trust domain/],
    ['upper-case trust domain', 'spiffe://Skein.Local/client/a', 'trust-domain-case', /trust domain "Skein.Local" must be lower case/],
    ['bad trust domain character', 'spiffe://skein!local/a', 'trust-domain-chars', /may hold only a-z, 0-9/],
    ['trust domain too long', `spiffe://${'t'.repeat(256)}/a`, 'trust-domain-too-long', /longer than 255/],
    ['port', 'spiffe://skein.local:8443/client/a', 'port', /must not carry a port/],
    ['user info', 'spiffe://admin@skein.local/client/a', 'userinfo', /must not carry user info/],
    ['user info with password', 'spiffe://a:b@skein.local/client/a', 'userinfo', /user info/],
    ['percent-encoding in path', 'spiffe://skein.local/client/a%2Fb', 'percent-encoding', /percent-encoding/],
    ['percent-encoding in trust domain', 'spiffe://skein%2elocal/a', 'percent-encoding', /percent-encoding/],
    ['query', 'spiffe://skein.local/client/a?x=1', 'query', /must not have a query/],
    ['fragment', 'spiffe://skein.local/client/a#frag', 'fragment', /must not have a fragment/],
    ['empty path (trust domain only)', 'spiffe://skein.local', 'path-missing', /has no path: spiffe:\/\/skein.local names a trust domain/],
    ['root path', 'spiffe://skein.local/', 'empty-segment', /empty segment/],
    ['trailing slash', 'spiffe://skein.local/client/', 'empty-segment', /empty segment/],
    ['double slash', 'spiffe://skein.local//client', 'empty-segment', /empty segment/],
    ['dot segment', 'spiffe://skein.local/client/./a', 'dot-segment', /segment "\." is not allowed/],
    ['dot-dot segment', 'spiffe://skein.local/client/../ops', 'dot-segment', /segment "\.\." is not allowed/],
    ['space in path', 'spiffe://skein.local/client/a b', 'segment-chars', /segment "a b" may hold only/],
    ['non-ASCII in path', 'spiffe://skein.local/client/é', 'segment-chars', /may hold only/],
    ['comma (a second SAN smuggled in one)', 'spiffe://skein.local/a, URI:spiffe://skein.local/b', 'segment-chars', /may hold only/],
    ['over 2048 bytes', `spiffe://td/${'a'.repeat(2048)}`, 'too-long', /longer than 2048 bytes/],
  ];
  it.each(cases)('%s', (_name, id, problem, message) => {
    const r = parseSpiffeId(id);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problem).toBe(problem);
    expect(r.message).toMatch(message);
    expect(isValidSpiffeId(id)).toBe(false);
  });
});

describe("parseSpiffeId: trust domain IDs (a CA's URI SAN)", () => {
  it.each([
    ['spiffe://skein.local', true],
    ['spiffe://skein.local/ca', false],
    ['spiffe://Skein.local', false],
  ])('%s → %s', (id, ok) => {
    expect(parseSpiffeId(id, 'trust-domain').ok).toBe(ok);
  });

  it('isValidTrustDomain uses the same rules', () => {
    expect(isValidTrustDomain('skein.local')).toBe(true);
    expect(isValidTrustDomain('a_b-c.9')).toBe(true);
    for (const bad of ['', 'Skein.local', 'a/b', 'a:1', 'a?b', 'x'.repeat(256)]) expect(isValidTrustDomain(bad)).toBe(false);
  });
});

describe('sanIdentity: a certificate identifies at most one SPIFFE ID', () => {
  it.each([
    ['one SPIFFE ID', 'URI:spiffe://skein.local/client/ops', { spiffeId: 'spiffe://skein.local/client/ops', trustDomain: 'skein.local' }],
    ['DNS and IP SANs beside it', 'DNS:host, URI:spiffe://skein.local/agent/a1, IP Address:127.0.0.1', { spiffeId: 'spiffe://skein.local/agent/a1' }],
    ['no URI SAN', 'DNS:host', { spiffeId: undefined, uris: [] }],
    ['no SAN at all', undefined, { spiffeId: undefined, uris: [] }],
    [
      'two URI SANs',
      'URI:spiffe://skein.local/client/dev-client, URI:spiffe://skein.local/client/ops',
      { error: 'multiple', message: expect.stringMatching(/has 2 URI SANs .*an X.509-SVID has exactly one/) },
    ],
    ['a SPIFFE ID and an https URI', 'URI:https://example.org/x, URI:spiffe://skein.local/client/ops', { error: 'multiple' }],
    ['one invalid SPIFFE ID', 'URI:spiffe://skein.local/client/../ops', { error: 'invalid', problem: 'dot-segment', message: expect.stringContaining('is not a valid SPIFFE ID') }],
    ['one non-SPIFFE URI', 'URI:https://example.org/x', { error: 'invalid', problem: 'scheme' }],
    // Node quotes a SAN value holding ", " so it cannot pass for two entries.
    [
      'a quoted value holding ", URI:"',
      'URI:"spiffe://skein.local/a, URI:spiffe://skein.local/b"',
      { error: 'invalid', problem: 'segment-chars', uris: ['spiffe://skein.local/a, URI:spiffe://skein.local/b'] },
    ],
  ])('%s', (_name, san, expected) => {
    expect(sanIdentity(san)).toMatchObject(expected);
  });
});

describe('caTrustDomains', () => {
  it('reads the URI SAN skein pki init gives a CA, across a bundle, ignoring CAs without one', async () => {
    const now = Date.now();
    const mk = async (trustDomainId?: string) =>
      createCaCertificate({ keys: await generateKeyPair(), commonName: 'ca', ...(trustDomainId ? { trustDomainId } : {}), notBefore: new Date(now - 1000), notAfter: new Date(now + 86_400_000) });
    const a = await mk('spiffe://fleet-a.example');
    const plain = await mk();
    const b = await mk('spiffe://fleet-b.example');
    expect(caTrustDomains(`${a}\n${plain}\n${b}\n${a}`)).toEqual(['fleet-a.example', 'fleet-b.example']);
    expect(caTrustDomains(plain)).toEqual([]);
  });
});

describe('tlsFailureReason: a bounded vocabulary for the handshake-failure metric', () => {
  it.each([
    ['CERT_HAS_EXPIRED', 'expired'],
    ['CERT_NOT_YET_VALID', 'not-yet-valid'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unknown-ca'],
    ['SELF_SIGNED_CERT_IN_CHAIN', 'unknown-ca'],
    ['INVALID_PURPOSE', 'bad-key-usage'],
    ['ERR_SSL_KEY_USAGE_BIT_INCORRECT', 'bad-key-usage'],
    ['ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', 'no-certificate'],
    ['ERR_TLS_HANDSHAKE_TIMEOUT', 'handshake-timeout'],
    ['ERR_SSL_UNSUPPORTED_PROTOCOL', 'protocol'],
    ['ECONNRESET', 'closed'],
    ['SOMETHING_NEW', 'other'],
    [undefined, 'other'],
  ])('%s → %s', (code, reason) => {
    expect(tlsFailureReason({ code })).toBe(reason);
  });
});

describe('isTlsFailure: the one classifier of outbound TLS failures (client library and routine URLs)', () => {
  it.each([
    [{ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, true],
    [{ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, true],
    [{ code: 'ERR_TLS_CERT_ALTNAME_INVALID', message: "Hostname/IP does not match certificate's altnames" }, true],
    [{ code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' }, true],
    [{ code: 'ERR_OSSL_X509_KEY_VALUES_MISMATCH' }, true],
    [{ code: 'EPROTO', message: 'SSL routines:ssl3_get_record:wrong version number' }, true],
    [{ code: 'ERR_HTTP2_ERROR', cause: { code: 'CERT_HAS_EXPIRED' } }, true],
    [{ message: 'unable to verify the first certificate' }, true],
    [{ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:1' }, false],
    [{ code: 'ECONNRESET', message: 'Client network socket disconnected before secure TLS connection was established' }, false],
    [{ code: 'EPROTO', message: 'protocol error' }, false],
    [{ code: 'ENOTFOUND', message: 'getaddrinfo ENOTFOUND code.test' }, false],
  ])('%j → %s', (err, tls) => {
    expect(isTlsFailure(err)).toBe(tls);
    // Both users agree, whatever their own codes.
    expect(transportError(Object.assign(new Error(String((err as { message?: string }).message ?? '')), err)).code).toBe(tls ? 'SKEIN_ERR_TLS' : 'SKEIN_ERR_TRANSPORT');
  });
});
