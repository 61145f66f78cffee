/**
 * testssl.sh (Debian package testssl.sh, binary `testssl`) against the dispatch listener on
 * 127.0.0.1, as configured by default (mutual TLS: testssl needs only the ServerHello for
 * protocol and cipher checks, so the client-certificate request does not stop it):
 *  - by default nothing older than TLS 1.3 is offered;
 *  - with tls.minVersion "TLSv1.2", TLS 1.2 offers only ECDHE key exchange with AEAD
 *    ciphers: no CBC, no RSA key exchange, no NULL/anonymous/EXPORT/LOW/RC4/3DES.
 * Skipped (naming the package) only when testssl is missing outside CI; in CI that fails
 * (test/helpers/requires.ts).
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { baseConfig, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';
import { requires } from '../helpers/requires.ts';

const TESTSSL = ['testssl', 'testssl.sh'].find((bin) => {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
});
const withTestssl = requires({ what: 'testssl', ok: TESTSSL !== undefined, debian: 'testssl.sh' });

interface Finding {
  id: string;
  severity: string;
  finding: string;
}

/** Protocols (-p), cipher categories (-s) and ciphers per protocol (-E); JSON findings. */
function testssl(port: number): Promise<Finding[]> {
  const out = join(tempDir('skein-testssl-'), 'result.json');
  const args = ['--quiet', '--warnings', 'off', '--color', '0', '--nodns', 'none', '--connect-timeout', '5', '--openssl-timeout', '5', '-p', '-s', '-E', '--jsonfile', out, `127.0.0.1:${port}`];
  return new Promise((resolve, reject) => {
    // testssl's exit status counts findings, so the JSON file is what tells success.
    execFile(TESTSSL!, args, { timeout: 80_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout) => {
      try {
        resolve(JSON.parse(readFileSync(out, 'utf8')) as Finding[]);
      } catch {
        reject(new Error(`testssl produced no JSON (${err?.message ?? 'no error'}):\n${stdout}`));
      }
    });
  });
}

const find = (findings: Finding[], id: string) => findings.find((f) => f.id === id)?.finding;
/** "TLS 1.2   xc02c   ECDHE-ECDSA-AES256-GCM-SHA384   ECDH 253   AESGCM   256   TLS_ECDHE_…" */
const cipher = (f: Finding) => {
  const [, , hex, name, kx, , enc, , iana] = f.finding.trim().split(/\s+/);
  return { hex, name: name ?? '', kx: kx ?? '', enc: enc ?? '', iana: iana ?? '' };
};
const OLD = ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1'];

withTestssl.describe('testssl.sh against the dispatch listener', () => {
  let tls13: StartedAgent;
  let tls12: StartedAgent;
  let results: [Finding[], Finding[]];

  beforeAll(async () => {
    if (TESTSSL === undefined) throw new Error('testssl is not installed, and CI requires it: add the Debian package testssl.sh (.ci/run installs it)');
    [tls13, tls12] = await Promise.all([
      startAgent({ config: baseConfig({ workers: { poolSize: 1 } }) }),
      startAgent({ config: baseConfig({ workers: { poolSize: 1 }, tls: { minVersion: 'TLSv1.2' } }) }),
    ]);
    // Both scans at once: each is ~10-15 s of handshakes.
    results = await Promise.all([testssl(tls13.port), testssl(tls12.port)]);
  }, 90_000);
  afterAll(async () => {
    await Promise.all([tls13?.stop(), tls12?.stop()]);
    await stopAll();
  });

  it('by default: TLS 1.3 only, nothing older offered', () => {
    const [f] = results;
    for (const id of [...OLD, 'TLS1_2']) expect(find(f, id), id).toBe('not offered');
    expect(find(f, 'TLS1_3')).toMatch(/^offered/);
    const ciphers = f.filter((x) => x.id.startsWith('cipher-'));
    expect(ciphers.length).toBeGreaterThan(0);
    for (const c of ciphers) expect(c.id, c.finding).toMatch(/^cipher-tls1_3_/);
  });

  it('with tls.minVersion TLSv1.2: only ECDHE AEAD suites, no weak category', () => {
    const [, f] = results;
    for (const id of OLD) expect(find(f, id), id).toBe('not offered');
    expect(find(f, 'TLS1_2')).toMatch(/^offered/);
    expect(find(f, 'TLS1_3')).toMatch(/^offered/);
    // -s categories: NULL, anonymous, EXPORT, LOW (DES, RC4, 64-bit), 3DES/IDEA, and AVERAGE
    // (the obsoleted CBC ciphers) are all absent.
    for (const id of ['cipherlist_NULL', 'cipherlist_aNULL', 'cipherlist_EXPORT', 'cipherlist_LOW', 'cipherlist_3DES_IDEA', 'cipherlist_AVERAGE']) expect(find(f, id), id).toBe('not offered');
    const tls12 = f.filter((x) => x.id.startsWith('cipher-tls1_2_')).map(cipher);
    expect(tls12.length).toBeGreaterThan(0);
    for (const c of tls12) {
      expect(c.name, c.iana).toMatch(/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
      expect(c.kx, c.name).toBe('ECDH');
      expect(c.enc, c.name).toMatch(/^(AESGCM|ChaCha20)$/);
      expect(c.iana, c.name).not.toMatch(/CBC|RC4|3DES|NULL|EXPORT|anon/);
    }
  });
});
