/**
 * Rotation and reload without a restart, through the compiled binary:
 * - certificates re-issued in place (`skein pki issue` over the served files) while clients
 *   keep dispatching: no call fails, new connections see the new certificate, a corrupt file
 *   is refused and the last good certificate keeps serving;
 * - a CA bundle extended on disk: a client of the new CA is accepted on its next handshake;
 * - SIGHUP with a valid config (plugin policy, log level; restart-only keys reported) and an
 *   invalid one (refused with the key named; the old policy stays), with a call in flight.
 */
import { renameSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinClient } from '../../agent/client/index.ts';
import { baseConfig, failure, ROOT, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

afterAll(stopAll);

async function ok(args: string[]): Promise<void> {
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`skein ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
}

/** SHA-256 of the certificate the agent presents to a NEW connection. */
function presented(port: number, client: { cert: string; key: string; ca: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(
      {
        host: '127.0.0.1',
        port,
        ALPNProtocols: ['h2'],
        cert: readFileSync(client.cert),
        key: readFileSync(client.key),
        ca: readFileSync(client.ca),
        servername: 'localhost',
        checkServerIdentity: () => undefined,
      },
      () => {
        const fp = s.getPeerCertificate().fingerprint256.replaceAll(':', '').toLowerCase();
        s.destroy();
        resolve(fp);
      },
    );
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy(new Error('handshake timed out')));
  });
}

const sha256Of = (file: string) => new X509Certificate(readFileSync(file)).fingerprint256.replaceAll(':', '').toLowerCase();

/** Replaces a file the way deploy tools do: write aside, then rename over. */
function replaceFile(path: string, content: string | Buffer): void {
  writeFileSync(`${path}.tmp`, content, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

/** Audit lines of `event` in the agent's audit file, waiting up to 3 s for the first one. */
async function auditEvents(agent: StartedAgent, event: string, min = 1, file = join(agent.dir, 'audit.jsonl')): Promise<Array<Record<string, unknown>>> {
  let found: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 60; i++) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // not written yet
    }
    found = text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.event === event);
    if (found.length >= min) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return found;
}

async function metric(agent: StartedAgent, admin: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : NaN;
}

describe('certificate rotation under load', () => {
  let pki: string;
  let agent: StartedAgent;
  let admin: string;
  let creds: { cert: string; key: string; ca: string };

  beforeAll(async () => {
    pki = tempDir();
    await ok(['pki', 'init', '--dir', pki]);
    await ok(['pki', 'issue', '--dir', pki, '--name', 'rot', '--kind', 'agent', '--host', '127.0.0.1']);
    await ok(['pki', 'issue', '--dir', pki, '--name', 'ops', '--kind', 'client']);
    creds = { cert: join(pki, 'client-ops.crt'), key: join(pki, 'client-ops.key'), ca: join(pki, 'ca.crt') };
    agent = await startAgent({
      config: baseConfig({
        agent: { name: 'rot' },
        tls: { cert: join(pki, 'agent-rot.crt'), key: join(pki, 'agent-rot.key'), ca: join(pki, 'ca.crt') },
        // In the watched folder on purpose: under load it never goes quiet, and rotations
        // must still be picked up (the watch is throttled, not debounced forever).
        audit: { sink: 'file', path: join(pki, 'audit.jsonl') },
        // The clients of this test's CAs (ops, and newops of the CA added later).
        authorization: { allow: [{ identities: ['spiffe://skein.local/client/ops', 'spiffe://skein.local/client/newops'], routines: ['*'] }] },
      }),
    });
    admin = String((await agent.waitForLog((l) => l.msg === 'admin listening')).address);
  });

  it('keeps every call working while certificates are replaced; new connections see the new one; a corrupt file is refused', async () => {
    const certFile = join(pki, 'agent-rot.crt');
    const first = sha256Of(certFile);
    expect(await presented(agent.port, creds)).toBe(first);

    // Load: one long-lived connection and a stream of fresh ones, until told to stop.
    let stop = false;
    let calls = 0;
    const failures: string[] = [];
    const clientOpts = { peer: `127.0.0.1:${agent.port}`, cert: readFileSync(creds.cert), key: readFileSync(creds.key), ca: readFileSync(creds.ca), servername: 'localhost' };
    const longLived = new SkeinClient(clientOpts);
    const loop = async (fresh: boolean) => {
      for (let i = 0; i < 5000 && !stop; i++) {
        const client = fresh ? new SkeinClient(clientOpts) : longLived;
        try {
          expect(await client.dispatch('add', { args: [i, 1] })).toBe(i + 1);
          calls++;
        } catch (err) {
          failures.push((err as Error).message);
        } finally {
          if (fresh) await client.close();
        }
      }
    };
    const loops = [loop(false), loop(false), loop(true), loop(true)];
    try {
      // Re-issue in place, the way an operator (or cert-manager) renews.
      await new Promise((r) => setTimeout(r, 300));
      await ok(['pki', 'issue', '--dir', pki, '--name', 'rot', '--kind', 'agent', '--host', '127.0.0.1']);
      const second = sha256Of(certFile);
      expect(second).not.toBe(first);
      await agent.waitForLog((l) => l.msg === 'TLS material reloaded' && l.sha256 === second);
      expect(await presented(agent.port, creds)).toBe(second);
      await new Promise((r) => setTimeout(r, 300));

      // A corrupt certificate: refused, naming the file; the last good one keeps serving.
      // (Only lines from now on: the renewal above writes the key before the certificate, and a
      // watch event in between may already have logged a "does not belong" refusal.)
      const good = readFileSync(certFile);
      const mark = agent.logs.length;
      const since = (l: (typeof agent.logs)[number]) => agent.logs.indexOf(l) >= mark;
      replaceFile(certFile, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
      const refused = await agent.waitForLog((l) => since(l) && l.msg === 'TLS reload refused; the old certificate keeps serving');
      expect(String(refused.error)).toContain(`tls.cert file ${certFile}: not a PEM certificate`);
      expect(await presented(agent.port, creds)).toBe(second);

      // A key that does not belong to the certificate: refused as well.
      replaceFile(certFile, good);
      const keyFile = join(pki, 'agent-rot.key');
      const goodKey = readFileSync(keyFile);
      replaceFile(keyFile, readFileSync(join(pki, 'client-ops.key')));
      await agent.waitForLog((l) => l.msg === 'TLS reload refused; the old certificate keeps serving' && String(l.error).includes('does not belong to the certificate'));
      expect(await presented(agent.port, creds)).toBe(second);
      replaceFile(keyFile, goodKey);
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      stop = true;
      await Promise.all(loops);
      await longLived.close();
    }
    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(20);
    expect(await metric(agent, admin, 'skein_reloads_total{kind="tls",outcome="applied"}')).toBeGreaterThanOrEqual(1);
    expect(await metric(agent, admin, 'skein_reloads_total{kind="tls",outcome="refused"}')).toBeGreaterThanOrEqual(2);
    // The audit stream has each rotation and each refusal, with the documented fields.
    const auditFile = join(pki, 'audit.jsonl');
    const reloaded = await auditEvents(agent, 'tls.reloaded', 1, auditFile);
    expect(reloaded[0]).toMatchObject({
      schema: 'skein.audit/v1',
      agent: 'rot',
      event: 'tls.reloaded',
      trigger: 'watch',
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      previousSha256: first,
      spiffe: 'spiffe://skein.local/agent/rot',
      notAfter: expect.any(String),
      minVersion: 'TLSv1.3',
    });
    const refusedLines = await auditEvents(agent, 'tls.reload_refused', 2, auditFile);
    expect(refusedLines.find((l) => l.key === 'tls.cert')).toMatchObject({
      event: 'tls.reload_refused',
      trigger: 'watch',
      key: 'tls.cert',
      path: certFile,
      error: expect.stringContaining('not a PEM certificate'),
    });
    expect(refusedLines.some((l) => l.key === 'tls.key' && String(l.error).includes('does not belong'))).toBe(true);
  }, 60_000);

  it('accepts clients of a new CA once the CA bundle on disk includes it', async () => {
    const other = tempDir();
    await ok(['pki', 'init', '--dir', other]);
    await ok(['pki', 'issue', '--dir', other, '--name', 'newops', '--kind', 'client']);
    const newClient = { cert: join(other, 'client-newops.crt'), key: join(other, 'client-newops.key'), ca: join(pki, 'ca.crt') };
    const client = () =>
      new SkeinClient({ peer: `127.0.0.1:${agent.port}`, cert: readFileSync(newClient.cert), key: readFileSync(newClient.key), ca: readFileSync(newClient.ca), servername: 'localhost' });
    const before = client();
    try {
      expect(['SKEIN_ERR_TLS', 'SKEIN_ERR_TRANSPORT']).toContain((await failure(before.dispatch('add', { args: [1, 1] }))).code);
    } finally {
      await before.close();
    }
    const bundle = join(pki, 'ca.crt');
    const reloaded = agent.logs.filter((l) => l.msg === 'TLS material reloaded').length;
    replaceFile(bundle, Buffer.concat([readFileSync(bundle), readFileSync(join(other, 'ca.crt'))]));
    for (let i = 0; i < 100 && agent.logs.filter((l) => l.msg === 'TLS material reloaded').length === reloaded; i++) await new Promise((r) => setTimeout(r, 50));
    expect(agent.logs.filter((l) => l.msg === 'TLS material reloaded').length, agent.stderr().slice(-3000)).toBe(reloaded + 1);
    const after = client();
    try {
      expect(await after.dispatch('add', { args: [1, 1] })).toBe(2);
    } finally {
      await after.close();
    }
  }, 30_000);
});

describe('SIGHUP reload', () => {
  let agent: StartedAgent;
  const policy = (routines: string[]) => ({
    dir: join(ROOT, 'plugins'),
    enabled: [{ name: 'routine-policy', options: { rules: [{ effect: 'allow', identities: ['spiffe://skein.local/client/*'], routines }], default: 'deny' } }],
  });
  const write = (config: unknown) => writeFileSync(agent.configPath, typeof config === 'string' ? config : JSON.stringify(config, null, 2), { mode: 0o600 });
  const reloads = () => agent.logs.filter((l) => l.msg === 'config reloaded' || l.msg === 'config reload refused; the running configuration stays').length;
  const hup = async () => {
    const n = reloads();
    process.kill(agent.pid, 'SIGHUP');
    for (let i = 0; i < 100 && reloads() === n; i++) await new Promise((r) => setTimeout(r, 50));
    return agent.logs.filter((l) => l.msg === 'config reloaded' || l.msg === 'config reload refused; the running configuration stays').at(-1)!;
  };

  beforeAll(async () => {
    agent = await startAgent({ config: baseConfig({ plugins: policy(['add', 'sleep']), audit: { sink: 'file', path: 'audit.jsonl' } }) });
  });

  it('applies a valid config without dropping an in-flight call, and reports keys that need a restart', async () => {
    const client = agent.client();
    try {
      expect(await client.dispatch('add', { args: [2, 3] })).toBe(5);
      const inFlight = client.dispatch('sleep', { args: [1.5] });
      await new Promise((r) => setTimeout(r, 200));
      write(baseConfig({ plugins: policy(['echo', 'sleep']), log: { level: 'debug' }, limits: { queueSize: 7 }, audit: { sink: 'file', path: 'audit.jsonl' } }));
      const line = await hup();
      expect(line).toMatchObject({ msg: 'config reloaded', applied: expect.arrayContaining(['plugins.enabled', 'log.level']), pending: ['limits.queueSize'] });
      expect(agent.logs.some((l) => l.level === 'warn' && String(l.msg).startsWith('config reloaded; some changes need a restart') && JSON.stringify(l.pending) === '["limits.queueSize"]')).toBe(true);
      // The new policy decides new calls; the call already running finishes.
      const denied = await failure(client.dispatch('add', { args: [2, 3] }));
      expect(denied.code).toBe('SKEIN_ERR_FORBIDDEN');
      expect(await client.dispatch('echo', { args: ['hi'] })).toBe('hi');
      await expect(inFlight).resolves.not.toBeUndefined();
      // log.level applied: debug lines now appear.
      expect(agent.logs.some((l) => l.level === 'debug')).toBe(true);
      const [audited] = await auditEvents(agent, 'config.reloaded');
      expect(audited).toMatchObject({
        schema: 'skein.audit/v1',
        event: 'config.reloaded',
        trigger: 'sighup',
        applied: expect.arrayContaining(['plugins.enabled', 'log.level']),
        pending: ['limits.queueSize'],
      });
      // The reloaded plugin is recorded as loaded, with its hash.
      expect((await auditEvents(agent, 'plugin.loaded', 2)).length).toBeGreaterThanOrEqual(2);
    } finally {
      await client.close();
    }
  }, 30_000);

  it.each([
    ['malformed JSON', '{ "agent": ', 'SKEIN_ERR_CONFIG', undefined],
    ['a value out of range', JSON.stringify(baseConfig({ plugins: policy(['add']), limits: { queueSize: -1 } })), 'SKEIN_ERR_CONFIG', 'limits.queueSize'],
    ['a plugin that does not exist', JSON.stringify(baseConfig({ plugins: { dir: join(ROOT, 'plugins'), enabled: [{ name: 'no-such-plugin' }] } })), 'SKEIN_ERR_PLUGIN_LOAD', undefined],
    ['a TLS file that does not exist', JSON.stringify(baseConfig({ tls: { cert: '/nonexistent/a.crt', key: '/nonexistent/a.key', ca: '/nonexistent/ca.crt' } })), 'SKEIN_ERR_CONFIG', 'tls'],
  ])('refuses %s and keeps the running configuration', async (_what, text, code, key) => {
    write(text);
    const line = await hup();
    expect(line).toMatchObject({ msg: 'config reload refused; the running configuration stays', level: 'error', code });
    if (key) expect(line.key).toBe(key);
    const audited = (await auditEvents(agent, 'config.reload_refused')).at(-1);
    expect(audited).toMatchObject({ event: 'config.reload_refused', trigger: 'sighup', code, error: line.error });
    // The policy from the last good reload still decides.
    const client = agent.client();
    try {
      expect(await client.dispatch('echo', { args: ['still'] })).toBe('still');
      expect((await failure(client.dispatch('add', { args: [1, 1] }))).code).toBe('SKEIN_ERR_FORBIDDEN');
    } finally {
      await client.close();
    }
  });
});
