import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type Server } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runPki } from '../../agent/cli/pki.ts';
import { loadConfig } from '../../agent/config/load.ts';
import { SkeinError, type ErrorCode } from '../../common/errors/index.ts';
import { describeCertificate, ensureDevPki, initCa, issueCert, readPkiInfo, type IssuedPaths } from '../../agent/pki/index.ts';

const roots: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'skein-pki-'));
  roots.push(dir);
  return dir;
};
afterAll(() => roots.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

const cert = (path: string) => new X509Certificate(readFileSync(path));
const mode = (path: string) => statSync(path).mode & 0o777;

async function rejection(promise: Promise<unknown> | (() => unknown)): Promise<SkeinError> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (err) {
    expect(err).toBeInstanceOf(SkeinError);
    return err as SkeinError;
  }
  throw new Error('expected a SkeinError, nothing was thrown');
}
const expectCode = async (promise: Promise<unknown> | (() => unknown), code: ErrorCode) => {
  const err = await rejection(promise);
  expect(err.code).toBe(code);
  return err;
};

describe('CA and leaf issuance', () => {
  let dir: string;
  let agent: IssuedPaths;
  let client: IssuedPaths;

  beforeAll(async () => {
    dir = join(tempDir(), 'pki');
    await initCa(dir, 'example.org');
    agent = await issueCert(dir, { name: 'edge-1', kind: 'agent', hosts: ['edge-1.example.org', '10.0.0.7', '[2001:db8::7]'] });
    client = await issueCert(dir, { name: 'ops', kind: 'client' });
  });

  it('lays out the directory with private keys and directory closed to others', () => {
    expect(mode(dir)).toBe(0o700);
    for (const key of [join(dir, 'ca.key'), agent.key, client.key]) expect(mode(key)).toBe(0o600);
    expect(agent).toEqual({ cert: join(dir, 'agent-edge-1.crt'), key: join(dir, 'agent-edge-1.key'), ca: join(dir, 'ca.crt') });
    expect(readPkiInfo(dir)).toEqual({ dir, trustDomain: 'example.org' });
  });

  it('makes a P-256 CA with CA:TRUE', () => {
    const ca = cert(join(dir, 'ca.crt'));
    expect(ca.ca).toBe(true);
    expect(ca.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(ca.verify(ca.publicKey)).toBe(true);
    const years = (Date.parse(ca.validTo) - Date.now()) / (365.25 * 86_400_000);
    expect(years).toBeGreaterThan(9.9);
  });

  it('puts the SPIFFE ID, loopback and extra hosts in the agent certificate', () => {
    const leaf = cert(agent.cert);
    expect(leaf.ca).toBe(false);
    const san = leaf.subjectAltName ?? '';
    expect(san).toContain('URI:spiffe://example.org/agent/edge-1');
    expect(san).toContain('DNS:localhost');
    expect(san).toContain('DNS:edge-1.example.org');
    expect(san).toContain('IP Address:127.0.0.1');
    expect(san).toContain('IP Address:10.0.0.7');
    expect(leaf.checkIP('::1')).toBeDefined();
    expect(leaf.checkIP('2001:db8::7')).toBeDefined();
    expect(leaf.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
    expect(leaf.subject).toBe('CN=edge-1');
  });

  it('gives the client certificate only its SPIFFE ID and clientAuth', () => {
    const leaf = cert(client.cert);
    expect(leaf.subjectAltName).toBe('URI:spiffe://example.org/client/ops');
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
  });

  it('signs leaves with the CA, and another CA does not verify them', async () => {
    const caKey = cert(join(dir, 'ca.crt')).publicKey;
    expect(cert(agent.cert).verify(caKey)).toBe(true);
    expect(cert(client.cert).verify(caKey)).toBe(true);
    expect(cert(agent.cert).checkIssued(cert(join(dir, 'ca.crt')))).toBe(true);

    const other = join(tempDir(), 'other');
    await initCa(other, 'example.org');
    const foreign = await issueCert(other, { name: 'ops', kind: 'client' });
    expect(cert(foreign.cert).verify(caKey)).toBe(false);
    expect(cert(agent.cert).verify(cert(join(other, 'ca.crt')).publicKey)).toBe(false);
  });

  it('uses random positive 16-byte serials', () => {
    const serials = [agent.cert, client.cert, join(dir, 'ca.crt')].map((p) => cert(p).serialNumber);
    for (const serial of serials) {
      expect(serial).toMatch(/^[0-9A-F]{32}$/);
      expect(Number.parseInt(serial.slice(0, 2), 16)).toBeLessThan(0x80);
    }
    expect(new Set(serials).size).toBe(3);
  });

  it('honours days and backdates notBefore by five minutes', async () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const paths = await issueCert(dir, { name: 'short', kind: 'client', days: 10, now });
    const leaf = cert(paths.cert);
    expect(new Date(leaf.validFrom).toISOString()).toBe('2029-12-31T23:55:00.000Z');
    expect(new Date(leaf.validTo).toISOString()).toBe('2030-01-11T00:00:00.000Z');
  });

  it('describes a certificate', () => {
    const pem = readFileSync(agent.cert, 'utf8');
    const d = describeCertificate(pem);
    expect(d.spiffeId).toBe('spiffe://example.org/agent/edge-1');
    expect(d.subjectCN).toBe('edge-1');
    expect(d.notAfter.getTime()).toBe(Date.parse(cert(agent.cert).validTo));
    expect(d.sha256).toBe(cert(agent.cert).fingerprint256.replaceAll(':', '').toLowerCase());
    expect(describeCertificate(readFileSync(join(dir, 'ca.crt'), 'utf8')).spiffeId).toBeUndefined();
  });

  it('refuses a second init without force, and replaces the CA with it', async () => {
    const before = readFileSync(join(dir, 'ca.crt'), 'utf8');
    const err = await expectCode(initCa(dir, 'example.org'), 'SKEIN_ERR_PKI');
    expect(err.message).toMatch(/already exists/);
    expect(readFileSync(join(dir, 'ca.crt'), 'utf8')).toBe(before);

    const forced = join(tempDir(), 'forced');
    await initCa(forced, 'example.org');
    const first = readFileSync(join(forced, 'ca.crt'), 'utf8');
    await initCa(forced, 'example.net', { force: true });
    expect(readFileSync(join(forced, 'ca.crt'), 'utf8')).not.toBe(first);
    expect(readPkiInfo(forced).trustDomain).toBe('example.net');
  });

  it.each(['', 'a/b', '../x', '..', 'x'.repeat(65), 'sp ace', 'ü'])('rejects name %j as a usage error', async (name) => {
    await expectCode(issueCert(dir, { name, kind: 'client' }), 'SKEIN_ERR_USAGE');
  });

  // One name syntax (common/names): an agent certificate the config could not name was issuable before.
  it.each(['1node', '-node', '.node'])('refuses %j, a name agent.name refuses too, naming the syntax', async (name) => {
    const err = await expectCode(issueCert(dir, { name, kind: 'agent' }), 'SKEIN_ERR_USAGE');
    expect(err.message).toContain(`certificate name ${JSON.stringify(name)} is invalid: it must be a name of letters, digits, "_", "." or "-", starting with a letter or "_" (max 64)`);
    expect(() => loadConfig({ env: {}, flags: { 'agent.name': name }, cwd: tempDir() })).toThrow(/config key "agent.name"/);
  });

  it('rejects bad hosts, days, kinds and trust domains as usage errors', async () => {
    await expectCode(issueCert(dir, { name: 'x', kind: 'agent', hosts: ['no spaces'] }), 'SKEIN_ERR_USAGE');
    await expectCode(issueCert(dir, { name: 'x', kind: 'agent', days: 0 }), 'SKEIN_ERR_USAGE');
    await expectCode(issueCert(dir, { name: 'x', kind: 'client', hosts: ['a.example'] }), 'SKEIN_ERR_USAGE');
    await expectCode(issueCert(dir, { name: 'x', kind: 'server' as never }), 'SKEIN_ERR_USAGE');
    await expectCode(initCa(join(tempDir(), 'td'), 'Upper.Case'), 'SKEIN_ERR_USAGE');
  });

  it('tells the user to run init when there is no PKI', async () => {
    const err = await expectCode(issueCert(join(tempDir(), 'none'), { name: 'x', kind: 'client' }), 'SKEIN_ERR_PKI');
    expect(err.message).toContain('skein pki init');
  });
});

describe('ensureDevPki', () => {
  const opts = { trustDomain: 'skein.local', agentName: 'dev-agent', listenHost: '127.0.0.1' };

  it('creates, reuses, and re-issues the agent leaf for a new listen host', async () => {
    const state = tempDir();
    const first = await ensureDevPki(state, opts);
    expect(first.created).toBe(true);
    expect(first.dir).toBe(join(state, 'pki'));
    expect(first.client.cert).toBe(join(state, 'pki', 'client-dev-client.crt'));
    expect(describeCertificate(readFileSync(first.agent.cert, 'utf8')).spiffeId).toBe('spiffe://skein.local/agent/dev-agent');
    const caBefore = readFileSync(first.agent.ca, 'utf8');
    const agentBefore = readFileSync(first.agent.cert, 'utf8');
    const clientBefore = readFileSync(first.client.cert, 'utf8');

    const second = await ensureDevPki(state, opts);
    expect(second.created).toBe(false);
    expect(second).toEqual({ ...first, created: false });
    expect(readFileSync(first.agent.cert, 'utf8')).toBe(agentBefore);

    const moved = await ensureDevPki(state, { ...opts, listenHost: '192.0.2.10' });
    expect(moved.created).toBe(true);
    expect(cert(moved.agent.cert).checkIP('192.0.2.10')).toBeDefined();
    // Same CA and client: only the agent leaf changed.
    expect(readFileSync(first.agent.ca, 'utf8')).toBe(caBefore);
    expect(readFileSync(first.client.cert, 'utf8')).toBe(clientBefore);
    expect((await ensureDevPki(state, { ...opts, listenHost: '192.0.2.10' })).created).toBe(false);
  });

  it('issues a missing leaf and replaces one from a foreign CA', async () => {
    const state = tempDir();
    const first = await ensureDevPki(state, opts);
    rmSync(first.client.cert);
    expect((await ensureDevPki(state, opts)).created).toBe(true);
    expect(statSync(first.client.cert).isFile()).toBe(true);

    const other = join(tempDir(), 'other');
    await initCa(other, 'skein.local');
    const foreign = await issueCert(other, { name: 'dev-agent', kind: 'agent' });
    writeFileSync(first.agent.cert, readFileSync(foreign.cert));
    writeFileSync(first.agent.key, readFileSync(foreign.key));
    expect((await ensureDevPki(state, opts)).created).toBe(true);
    expect(cert(first.agent.cert).verify(cert(first.agent.ca).publicKey)).toBe(true);
  });

  it('refuses a PKI made for another trust domain', async () => {
    const state = tempDir();
    await ensureDevPki(state, opts);
    await expectCode(ensureDevPki(state, { ...opts, trustDomain: 'other.example' }), 'SKEIN_ERR_PKI');
  });
});

describe('mutual TLS with issued certificates', () => {
  let dir: string;
  let agent: IssuedPaths;
  let client: IssuedPaths;
  let foreign: IssuedPaths;
  const servers: Server[] = [];

  beforeAll(async () => {
    dir = join(tempDir(), 'pki');
    await initCa(dir, 'skein.local');
    agent = await issueCert(dir, { name: 'a1', kind: 'agent' });
    client = await issueCert(dir, { name: 'c1', kind: 'client' });
    const other = join(tempDir(), 'other');
    await initCa(other, 'skein.local');
    foreign = await issueCert(other, { name: 'c1', kind: 'client' });
  });

  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((done) => s.close(done))));
  });

  /** Starts an mTLS server that answers each authorized connection with the peer's URI SAN. */
  async function serve(): Promise<{ port: number; clientErrors: Error[] }> {
    const clientErrors: Error[] = [];
    const server = createServer(
      {
        cert: readFileSync(agent.cert),
        key: readFileSync(agent.key),
        ca: readFileSync(agent.ca),
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
      },
      (socket) => socket.end(`peer=${socket.getPeerCertificate().subjectaltname}`),
    );
    server.on('tlsClientError', (err) => clientErrors.push(err));
    servers.push(server);
    await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
    return { port: (server.address() as { port: number }).port, clientErrors };
  }

  function call(port: number, creds: IssuedPaths, ca: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, cert: readFileSync(creds.cert), key: readFileSync(creds.key), ca: readFileSync(ca) });
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (data += chunk));
      socket.on('end', () => (data ? resolve(data) : reject(new Error('closed without a reply'))));
      socket.on('error', reject);
    });
  }

  it('completes a handshake and shows the client SPIFFE ID to the server', async () => {
    const { port } = await serve();
    // The client also checks the server: its certificate must name 127.0.0.1.
    expect(await call(port, client, agent.ca)).toBe('peer=URI:spiffe://skein.local/client/c1');
  });

  it('accepts an agent certificate as a client (agents call each other)', async () => {
    const { port } = await serve();
    expect(await call(port, agent, agent.ca)).toMatch(/^peer=URI:spiffe:\/\/skein\.local\/agent\/a1, /);
  });

  it('refuses a client certificate from another CA', async () => {
    const { port, clientErrors } = await serve();
    await expect(call(port, foreign, agent.ca)).rejects.toThrow(/unknown ca|ECONNRESET|socket hang up|closed without a reply/i);
    await expect.poll(() => clientErrors.length).toBe(1);
  });

  it('refuses a server whose CA the client does not trust', async () => {
    const { port } = await serve();
    await expect(call(port, client, foreign.ca)).rejects.toThrow(/self.signed|unable to (get|verify)/i);
  });
});

describe('skein pki CLI', () => {
  const io = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s) } };
  };

  it.each([['--help'], ['-h'], ['init', '--help'], ['issue', '-h']])('prints usage for %j', async (...argv) => {
    const t = io();
    expect(await runPki(argv, t.io)).toBe(0);
    expect(t.out.join('\n')).toMatch(/^Usage: skein pki/);
  });

  it('inits and issues, printing paths and the SPIFFE ID', async () => {
    const dir = join(tempDir(), 'cli');
    const t = io();
    expect(await runPki(['init', '--dir', dir, '--trust-domain', 'fleet.example'], t.io)).toBe(0);
    expect(t.out.join('\n')).toContain(join(dir, 'ca.crt'));
    expect(await runPki(['issue', '--dir', dir, '--name', 'n1', '--kind', 'agent', '--host', 'n1.fleet.example', '--host', '10.9.8.7', '--days', '30'], t.io)).toBe(0);
    const printed = t.out.join('\n');
    expect(printed).toContain('spiffe://fleet.example/agent/n1');
    expect(printed).toContain(join(dir, 'agent-n1.crt'));
    expect(printed).toContain(join(dir, 'agent-n1.key'));
    expect(cert(join(dir, 'agent-n1.crt')).checkIP('10.9.8.7')).toBeDefined();
    expect(cert(join(dir, 'agent-n1.crt')).checkHost('n1.fleet.example')).toBeDefined();
  });

  it.each([
    [[], /missing pki command/],
    [['frobnicate'], /unknown pki command/],
    [['init', '--bogus'], /bogus/],
    [['init', '--trust-domain', 'Bad Domain'], /--trust-domain/],
    [['issue', '--kind', 'agent'], /--name/],
    [['issue', '--name', 'x'], /--kind/],
    [['issue', '--name', 'x', '--kind', 'server'], /--kind/],
    [['issue', '--name', 'x/y', '--kind', 'client'], /--name/],
    [['issue', '--name', 'x', '--kind', 'client', '--host', 'h'], /--host/],
    [['issue', '--name', 'x', '--kind', 'agent', '--host', 'bad host'], /--host/],
    [['issue', '--name', 'x', '--kind', 'client', '--days', '0'], /--days/],
    [['issue', '--name', 'x', '--kind', 'client', '--dir', ''], /--dir/],
  ])('%j is a usage error', async (argv, message) => {
    const err = await expectCode(() => runPki(argv, io().io), 'SKEIN_ERR_USAGE');
    expect(err.message).toMatch(message);
  });

  it('reports a missing CA as a PKI error', async () => {
    const err = await expectCode(() => runPki(['issue', '--name', 'x', '--kind', 'client', '--dir', join(tempDir(), 'nope')], io().io), 'SKEIN_ERR_PKI');
    expect(err.message).toContain('skein pki init');
  });
});
