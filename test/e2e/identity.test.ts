/**
 * Client identity through the compiled binary, with real certificates signed by the test
 * agent's own CA (openssl, as an operator would, or @peculiar/x509 where openssl 3.0 cannot
 * set the dates) and real HTTP/2 + mTLS clients (curl --http2 --cert, the client library,
 * `skein dispatch`):
 *
 *  - SPIFFE rules (X509-SVID §2, SPIFFE ID spec): several URI SANs, a malformed SPIFFE ID or
 *    one outside tls.trustDomains identify no one: 401 with a reason of its own and an
 *    authn.decision deny line naming it; the routine never runs.
 *  - Certificates refused at the TLS layer (unknown CA, expired, not yet valid, wrong
 *    (extended) key usage, none): the client library and `skein dispatch` say SKEIN_ERR_TLS
 *    with the reason; the agent logs it at info (rate-limited) and counts it in
 *    skein_tls_handshake_failures_total{reason}.
 * After every refusal the agent keeps serving a good client.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinClient } from '../../agent/client/index.ts';
import { baseConfig, failure, runCli, startAgent, startMustFail, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';
import { EKU, issueClient, KEY_USAGE, pkiIssuer, strangerIssuer } from '../helpers/certs.ts';

const exec = promisify(execFile);
const DAY = 86_400_000;

let agent: StartedAgent;
let admin: string;
let work: string;

// Authorization is deny by default: these tests are about who the caller is, so every
// identity the trust rules accept may run the example routines.
const ANY_ACCEPTED = { authorization: { allow: [{ identities: ['spiffe://skein.local/**', 'spiffe://partner.example/**'], routines: ['*'] }] } };

beforeAll(async () => {
  agent = await startAgent({ config: baseConfig(ANY_ACCEPTED) });
  admin = String((await agent.waitForLog((l) => l.msg === 'admin listening')).address);
  work = tempDir('skein-identity-');
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

async function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('curl', ['--silent', '--show-error', '--max-time', '10', ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A client certificate signed by `pkiDir`'s CA with openssl, its SAN given verbatim. */
async function opensslClient(pkiDir: string, name: string, san: string): Promise<{ cert: string; key: string }> {
  const key = join(work, `${name}.key`);
  const csr = join(work, `${name}.csr`);
  const cert = join(work, `${name}.crt`);
  const ext = join(work, `${name}.ext`);
  // "#" starts a comment in an OpenSSL config file: escape it.
  writeFileSync(ext, `subjectAltName=${san.replaceAll('#', '\\#')}\nextendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n`);
  await exec('openssl', ['ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', key]);
  await exec('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', csr]);
  await exec('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    join(pkiDir, 'ca.crt'),
    '-CAkey',
    join(pkiDir, 'ca.key'),
    '-CAcreateserial',
    '-CAserial',
    join(work, 'ca.srl'),
    '-days',
    '2',
    '-extfile',
    ext,
    '-out',
    cert,
  ]);
  return { cert, key };
}

function curlDispatch(a: StartedAgent, creds: { cert: string; key: string } | undefined, routine = 'echo', body = '{"args":["hi"]}', requestId = `id-${Math.random().toString(36).slice(2)}`) {
  const certArgs = creds ? ['--cert', creds.cert, '--key', creds.key] : [];
  return curl([
    '--http2',
    ...certArgs,
    '--cacert',
    a.pki.ca,
    '-H',
    'content-type: application/json',
    '-H',
    `x-request-id: ${requestId}`,
    '--data-binary',
    body,
    '-w',
    '\n%{http_code}',
    `https://127.0.0.1:${a.port}/v1/dispatch/${routine}`,
  ]);
}

async function goodClientStillServed(a: StartedAgent): Promise<void> {
  const r = await curlDispatch(a, { cert: a.pki.cert, key: a.pki.key }, 'add', '{"args":[20,22]}');
  expect(r.stdout).toBe('{"result":42}\n200');
  const client = a.client();
  try {
    expect(await client.dispatch('echo', { args: ['still here'] })).toBe('still here');
  } finally {
    await client.close();
  }
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('SPIFFE identity rules: 401 with a reason of its own, audited, routine not run', () => {
  it('the audit case: a certificate with two URI SANs is refused, not run as the first one', async () => {
    const creds = await opensslClient(agent.pki.dir, 'two-sans', 'URI:spiffe://skein.local/client/dev-client,URI:spiffe://skein.local/client/ops');
    const requestId = 'two-sans-1';
    const r = await curlDispatch(agent, creds, 'echo', '{"args":["must not run"]}', requestId);
    const [body, status] = r.stdout.split('\n');
    expect(status).toBe('401');
    const json = JSON.parse(body!);
    expect(json).toMatchObject({ code: 'SKEIN_ERR_UNAUTHENTICATED', requestId, meta: { peer: 'anonymous', reason: 'MULTIPLE_URI_SANS' } });
    expect(json.message).toBe(
      'authentication failed: the client certificate has 2 URI SANs ("spiffe://skein.local/client/dev-client", "spiffe://skein.local/client/ops"); an X.509-SVID has exactly one',
    );
    const line = await agent.waitForAudit((l) => l.event === 'authn.decision' && l.requestId === requestId);
    expect(line).toMatchObject({ outcome: 'deny', reason: 'MULTIPLE_URI_SANS', peer: 'anonymous', routine: 'echo' });
    expect(line.fingerprint).toMatch(/^[0-9A-F:]{95}$/);
    expect(await metric('skein_auth_rejections_total', 'kind="authn",reason="MULTIPLE_URI_SANS"')).toBeGreaterThanOrEqual(1);
    await goodClientStillServed(agent);
    // Refused before authorization, so no routine ran for it: the good client's authz line
    // (written after ours) is there, ours is not.
    await agent.waitForAudit((l) => l.event === 'authz.decision' && l.outcome === 'allow');
    expect(agent.audit.some((l) => l.event === 'authz.decision' && l.requestId === requestId)).toBe(false);
  });

  it('the client library gets SKEIN_ERR_UNAUTHENTICATED with the reason', async () => {
    const creds = await opensslClient(agent.pki.dir, 'two-sans-lib', 'URI:spiffe://skein.local/client/ops,URI:spiffe://skein.local/client/dev-client');
    const client = agent.client({ cert: readFileSync(creds.cert), key: readFileSync(creds.key) });
    try {
      const err = await failure(client.dispatch('echo', { args: [1] }));
      expect(err.code).toBe('SKEIN_ERR_UNAUTHENTICATED');
      expect(err.details.reason).toBe('MULTIPLE_URI_SANS');
      expect(err.message).toMatch(/has 2 URI SANs/);
    } finally {
      await client.destroy();
    }
  });

  it.each([
    [
      'outside the trust domain',
      'URI:spiffe://evil.example/client/ops',
      'UNTRUSTED_TRUST_DOMAIN',
      /SPIFFE ID spiffe:\/\/evil.example\/client\/ops is in trust domain "evil.example", which is not in tls.trustDomains \(skein.local\)/,
    ],
    ['no path', 'URI:spiffe://skein.local', 'INVALID_SPIFFE_ID', /"spiffe:\/\/skein.local" is not a valid SPIFFE ID: it has no path/],
    ['query', 'URI:spiffe://skein.local/client/ops?admin=1', 'INVALID_SPIFFE_ID', /must not have a query/],
    ['fragment', 'URI:spiffe://skein.local/client/ops#admin', 'INVALID_SPIFFE_ID', /must not have a fragment/],
    ['port', 'URI:spiffe://skein.local:8443/client/ops', 'INVALID_SPIFFE_ID', /must not carry a port/],
    ['user info', 'URI:spiffe://root@skein.local/client/ops', 'INVALID_SPIFFE_ID', /must not carry user info/],
    ['percent-encoding', 'URI:spiffe://skein.local/client/%6Fps', 'INVALID_SPIFFE_ID', /must not contain percent-encoding/],
    ['".." segment', 'URI:spiffe://skein.local/client/../agent/test', 'INVALID_SPIFFE_ID', /path segment "\.\." is not allowed/],
    ['"." segment', 'URI:spiffe://skein.local/client/./ops', 'INVALID_SPIFFE_ID', /path segment "\." is not allowed/],
    ['empty segment', 'URI:spiffe://skein.local/client//ops', 'INVALID_SPIFFE_ID', /empty segment/],
    ['trailing slash', 'URI:spiffe://skein.local/client/ops/', 'INVALID_SPIFFE_ID', /empty segment/],
    ['upper-case trust domain', 'URI:spiffe://SKEIN.LOCAL/client/ops', 'INVALID_SPIFFE_ID', /trust domain "SKEIN.LOCAL" must be lower case/],
    ['upper-case scheme', 'URI:SPIFFE://skein.local/client/ops', 'INVALID_SPIFFE_ID', /scheme must be "spiffe:\/\/" in lower case/],
    ['another URI scheme', 'URI:https://skein.local/client/ops', 'INVALID_SPIFFE_ID', /does not start with "spiffe:\/\/"/],
  ])('%s → 401 %s', async (name, san, reason, message) => {
    const creds = await opensslClient(agent.pki.dir, `bad-${name.replace(/\W+/g, '-')}`, san);
    const requestId = `bad-${name.replace(/\W+/g, '-')}`;
    const r = await curlDispatch(agent, creds, 'echo', '{"args":[1]}', requestId);
    const [body, status] = r.stdout.split('\n');
    expect(status).toBe('401');
    const json = JSON.parse(body!);
    expect(json.code).toBe('SKEIN_ERR_UNAUTHENTICATED');
    expect(json.meta.reason).toBe(reason);
    expect(json.message).toMatch(message);
    const line = await agent.waitForAudit((l) => l.event === 'authn.decision' && l.requestId === requestId);
    expect(line).toMatchObject({ outcome: 'deny', reason, peer: 'anonymous' });
    await goodClientStillServed(agent);
  });

  it('one valid SPIFFE ID in the trust domain, signed by the CA with openssl, is that identity', async () => {
    const creds = await opensslClient(agent.pki.dir, 'ops', 'URI:spiffe://skein.local/client/ops');
    const requestId = 'ops-ok';
    const r = await curlDispatch(agent, creds, 'add', '{"args":[1,2]}', requestId);
    expect(r.stdout).toBe('{"result":3}\n200');
    const line = await agent.waitForAudit((l) => l.event === 'authn.decision' && l.requestId === requestId);
    expect(line).toMatchObject({ outcome: 'allow', peer: 'spiffe://skein.local/client/ops' });
  });

  it('the accepted trust domain comes from the CA certificate, logged at start', async () => {
    const line = await agent.waitForLog((l) => l.msg === 'client SPIFFE IDs accepted from');
    expect(line).toMatchObject({ level: 'info', trustDomains: ['skein.local'], from: 'tls.ca' });
    const ca = (await exec('openssl', ['x509', '-in', agent.pki.ca, '-noout', '-ext', 'subjectAltName'])).stdout;
    expect(ca).toContain('URI:spiffe://skein.local');
  });
});

describe('tls.trustDomains', () => {
  let partner: StartedAgent;
  beforeAll(async () => {
    partner = await startAgent({ config: baseConfig({ ...ANY_ACCEPTED, tls: { trustDomains: ['partner.example'] } }) });
  });
  afterAll(async () => {
    await partner?.stop();
  });

  it('refuses the development client of another trust domain, serves one in the listed domain', async () => {
    const line = await partner.waitForLog((l) => l.msg === 'client SPIFFE IDs accepted from');
    expect(line).toMatchObject({ trustDomains: ['partner.example'], from: 'tls.trustDomains' });
    const client = partner.client();
    try {
      const err = await failure(client.dispatch('echo', { args: [1] }));
      expect(err.code).toBe('SKEIN_ERR_UNAUTHENTICATED');
      expect(err.details.reason).toBe('UNTRUSTED_TRUST_DOMAIN');
      expect(err.message).toMatch(/spiffe:\/\/skein.local\/client\/dev-client is in trust domain "skein.local", which is not in tls.trustDomains \(partner.example\)/);
    } finally {
      await client.destroy();
    }
    const ok = await opensslClient(partner.pki.dir, 'partner-ok', 'URI:spiffe://partner.example/client/ops');
    const r = await curlDispatch(partner, ok, 'add', '{"args":[2,2]}');
    expect(r.stdout).toBe('{"result":4}\n200');
  });

  it('applies a changed list on SIGHUP to new connections', async () => {
    const config = JSON.parse(readFileSync(partner.configPath, 'utf8'));
    config.tls.trustDomains = ['partner.example', 'skein.local'];
    writeFileSync(partner.configPath, JSON.stringify(config));
    const reloads = partner.logs.filter((l) => l.msg === 'config reloaded').length;
    process.kill(partner.pid, 'SIGHUP');
    await expect.poll(() => partner.logs.filter((l) => l.msg === 'config reloaded').length).toBe(reloads + 1);
    expect(partner.logs.filter((l) => l.msg === 'config reloaded').at(-1)).toMatchObject({ applied: ['tls.trustDomains'] });
    expect(partner.logs.filter((l) => l.msg === 'TLS material reloaded').at(-1)).toMatchObject({ trustDomains: ['partner.example', 'skein.local'] });
    await goodClientStillServed(partner);
  });

  it('an empty list is refused at start, naming the key', async () => {
    const stderr = await startMustFail(baseConfig({ tls: { trustDomains: [] } }));
    expect(stderr).toContain('SKEIN_ERR_CONFIG');
    expect(stderr).toContain('"tls.trustDomains": must list at least one trust domain');
  });

  it('an invalid trust domain is refused at start, naming the key', async () => {
    const stderr = await startMustFail(baseConfig({ tls: { trustDomains: ['Partner.Example'] } }));
    expect(stderr).toContain('tls.trustDomains[0]');
    expect(stderr).toMatch(/is not a SPIFFE trust domain/);
  });
});

describe('certificates refused at the TLS layer: SKEIN_ERR_TLS with the reason, logged and counted', () => {
  const uris = ['spiffe://skein.local/client/x'];
  const cases: Array<[string, () => Promise<{ cert: string; key: string }>, string, RegExp]> = [
    [
      'expired',
      async () => issueClient(work, await pkiIssuer(agent.pki.dir), { name: 'expired', uris, notBefore: new Date(Date.now() - 60 * DAY), notAfter: new Date(Date.now() - 30 * DAY) }),
      'expired',
      /the agent refused the client certificate: certificate expired \(notAfter \d{4}-/,
    ],
    [
      'not yet valid',
      async () => issueClient(work, await pkiIssuer(agent.pki.dir), { name: 'future', uris, notBefore: new Date(Date.now() + 30 * DAY), notAfter: new Date(Date.now() + 60 * DAY) }),
      'not-yet-valid',
      /the agent refused the client certificate: certificate not yet valid \(notBefore \d{4}-/,
    ],
    [
      'unknown CA',
      async () => issueClient(work, await strangerIssuer(), { name: 'stranger', uris }),
      'unknown-ca',
      /the agent refused the client certificate: unknown CA \(not issued by a CA the agent trusts\)/,
    ],
    [
      'serverAuth only',
      async () => issueClient(work, await pkiIssuer(agent.pki.dir), { name: 'server-eku', uris, eku: [EKU.serverAuth] }),
      'bad-key-usage',
      /the agent refused the client certificate: the certificate's extended key usage lacks clientAuth/,
    ],
  ];

  it.each(cases)('%s: client library, skein dispatch, agent log and metric', async (_name, make, reason, message) => {
    const creds = await make();
    const before = await metric('skein_tls_handshake_failures_total', `reason="${reason}"`);
    const client = agent.client({ cert: readFileSync(creds.cert), key: readFileSync(creds.key) });
    try {
      const err = await failure(client.dispatch('echo', { args: [1] }));
      expect(err.code).toBe('SKEIN_ERR_TLS');
      expect(err.details.reason).toBe(reason);
      expect(err.details.sent).toBe(false);
      expect(err.message).toMatch(message);
    } finally {
      await client.destroy();
    }
    const cli = await runCli(['dispatch', 'echo', '--args', '[1]', '--peer', `127.0.0.1:${agent.port}`, '--cert', creds.cert, '--key', creds.key, '--ca', agent.pki.ca]);
    expect(cli.code).toBe(6);
    expect(cli.stderr).toContain('[SKEIN_ERR_TLS]');
    expect(cli.stderr).toMatch(message);
    const logged = await agent.waitForLog((l) => l.msg === 'TLS handshake refused' && l.reason === reason);
    expect(logged.level).toBe('info');
    // Both attempts counted, whatever the log's rate limit let through.
    await expect.poll(() => metric('skein_tls_handshake_failures_total', `reason="${reason}"`)).toBeGreaterThanOrEqual(before + 2);
    await goodClientStillServed(agent);
  });

  it('no client certificate: the agent\'s "certificate required" alert becomes SKEIN_ERR_TLS no-certificate', async () => {
    const client = new SkeinClient({ peer: `127.0.0.1:${agent.port}`, ca: readFileSync(agent.pki.ca) });
    try {
      const err = await failure(client.dispatch('echo', { args: [1] }));
      expect(err.code).toBe('SKEIN_ERR_TLS');
      expect(err.details.reason).toBe('no-certificate');
      expect(err.message).toMatch(/the agent refused the client certificate: none was presented \(TLS alert certificate_required\)/);
    } finally {
      await client.destroy();
    }
    // curl may read the alert or find the socket already gone (TLS 1.3: its side of the
    // handshake is over when the alert is sent); it never gets a response.
    const r = await curlDispatch(agent, undefined);
    expect(r.stdout).toBe('\n000');
    await agent.waitForLog((l) => l.msg === 'TLS handshake refused' && l.reason === 'no-certificate');
    await goodClientStillServed(agent);
  });

  it('a key usage without digitalSignature: refused by the agent (curl) and by the local TLS library (skein dispatch)', async () => {
    const creds = await issueClient(work, await pkiIssuer(agent.pki.dir), { name: 'ku', uris, keyUsage: KEY_USAGE.keyEncipherment });
    const r = await curlDispatch(agent, creds);
    expect(r.stdout).toBe('\n000');
    await agent.waitForLog((l) => l.msg === 'TLS handshake refused' && l.reason === 'bad-key-usage');
    const cli = await runCli(['dispatch', 'echo', '--peer', `127.0.0.1:${agent.port}`, '--cert', creds.cert, '--key', creds.key, '--ca', agent.pki.ca]);
    expect(cli.code).toBe(6);
    expect(cli.stderr).toMatch(/\[SKEIN_ERR_TLS\].*the client certificate cannot be used: key usage or extended key usage does not allow TLS client authentication/);
    await goodClientStillServed(agent);
  });

  it('the log line is rate-limited per reason; the metric counts every refusal', async () => {
    // An agent of its own, so no earlier refusal has started the 10 s window.
    const fresh = await startAgent({ config: baseConfig() });
    try {
      const freshAdmin = String((await fresh.waitForLog((l) => l.msg === 'admin listening')).address);
      const count = async () => {
        const text = await (await fetch(`http://${freshAdmin}/metrics`)).text();
        return Number(
          text
            .split('\n')
            .find((l) => l.startsWith('skein_tls_handshake_failures_total{reason="unknown-ca"}'))
            ?.split(' ')
            .pop(),
        );
      };
      expect(await count()).toBe(0);
      const creds = await issueClient(work, await strangerIssuer(), { name: 'stranger-flood', uris });
      for (let i = 0; i < 6; i++) expect((await curlDispatch(fresh, creds)).stdout).toBe('\n000');
      await expect.poll(count).toBe(6);
      const lines = fresh.logs.filter((l) => l.msg === 'TLS handshake refused' && l.reason === 'unknown-ca');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: 'info', error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', remote: '127.0.0.1', suppressed: 0 });
      await goodClientStillServed(fresh);
    } finally {
      await fresh.stop();
    }
  });
});
