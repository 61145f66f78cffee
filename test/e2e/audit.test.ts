/**
 * The audit stream through the compiled binary (docs/audit.md): every event kind appears in
 * the audit file with its documented fields — start-up with secrets redacted, plugins and
 * routines with the SHA-256 of their files, authn/authz allow and deny carrying the response's
 * request id, worker spawn/kill/crash/recycle, peers accepted and evicted, rejected adverts —
 * and an audit path that cannot be written stops nothing: one warning, a moving counter,
 * dispatch keeps answering. (Reload and rotation events are tested with the reload.)
 */
import { createHash } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_SCHEMA } from '../../agent/audit/index.ts';
import { connect, postJson } from '../helpers/h2.ts';
import { baseConfig, EXAMPLES, FIXTURES, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

const PLUGINS = join(FIXTURES, 'plugins');
const FIX = join(FIXTURES, 'routines.py');
const DEV_CLIENT = 'spiffe://skein.local/client/dev-client';
const ADMIN_TOKEN = 'admin-token-that-must-never-appear';
const KEY_OPS = 'ops-key-that-must-never-appear';
const KEY_LIMITED = 'limited-key-that-must-never-appear';

type Line = Record<string, any>;

afterAll(stopAll);

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function readAudit(path: string): Line[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
}

/** Polls the audit file until a line matches (lines are written asynchronously, in batches). */
async function waitForAudit(path: string, pred: (l: Line) => boolean, timeoutMs = 5000): Promise<Line> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const hit = readAudit(path).find(pred);
    if (hit) return hit;
    if (Date.now() > until) throw new Error(`no audit line matched within ${timeoutMs} ms; file:\n${existsSync(path) ? readFileSync(path, 'utf8') : '(missing)'}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const rid = (res: { headers: http2.IncomingHttpHeaders }) => String(res.headers['x-request-id']);

describe('audit file: start-up, code, decisions and workers', () => {
  let agent: StartedAgent;
  let path: string;
  let session: http2.ClientHttp2Session;

  beforeAll(async () => {
    const dir = tempDir();
    path = join(dir, 'audit.jsonl');
    agent = await startAgent({
      dir,
      config: baseConfig({
        admin: { token: ADMIN_TOKEN },
        audit: { sink: 'file', path: 'audit.jsonl' }, // relative to the config file
        workers: { poolSize: 1, maxCallsPerWorker: 3 },
        plugins: {
          dir: PLUGINS,
          enabled: [
            { name: 'test-key', options: { keys: { ops: KEY_OPS, limited: KEY_LIMITED } } },
            // key:limited may run echo only.
            { name: 'only-echo', options: { echoOnly: ['key:limited'] } },
          ],
        },
        routines: { echo: { file: EXAMPLES }, add: { file: EXAMPLES }, sleep: { file: EXAMPLES }, crash: { file: FIX } },
      }),
    });
    session = connect(agent.port, agent.pki);
  });
  afterAll(async () => {
    session?.close();
    await agent?.stop();
  });

  it('every line carries the schema, time, a gap-free sequence and the agent name', async () => {
    // The stream is written asynchronously: wait for the last start-up line (plugins load after
    // the workers spawn) so the tests below read the whole start-up.
    await waitForAudit(path, (l) => l.event === 'worker.spawn');
    await waitForAudit(path, (l) => l.event === 'plugin.loaded' && l.plugin === 'only-echo');
    const lines = readAudit(path);
    lines.forEach((l, i) => {
      expect(Object.keys(l).slice(0, 5)).toEqual(['schema', 'ts', 'seq', 'agent', 'event']);
      expect(l).toMatchObject({ schema: AUDIT_SCHEMA, seq: i + 1, agent: 'test' });
      expect(new Date(l.ts).toISOString()).toBe(l.ts);
    });
    // Audit lines go to the file, not to stderr.
    expect(agent.audit).toEqual([]);
  });

  it('agent.start records the effective config with secrets redacted', () => {
    const [start] = readAudit(path);
    expect(start).toMatchObject({ event: 'agent.start', pid: agent.pid, version: expect.any(String), source: agent.configPath });
    expect(start!.config.admin.token).toBe('[redacted]');
    expect(start!.config.plugins.enabled[0]).toEqual({ name: 'test-key', options: { keys: '[redacted]' } });
    expect(start!.config.plugins.enabled[1]).toEqual({ name: 'only-echo', options: { echoOnly: ['key:limited'] } });
    expect(start!.config.workers).toMatchObject({ poolSize: 1, maxCallsPerWorker: 3 });
    expect(start!.config.audit).toEqual({ sink: 'file', path, maxQueueLines: 10_000 });
    const text = readFileSync(path, 'utf8');
    for (const secret of [ADMIN_TOKEN, KEY_OPS, KEY_LIMITED]) expect(text).not.toContain(secret);
  });

  it('routine.loaded and plugin.loaded carry the SHA-256 of the files that run', () => {
    const lines = readAudit(path);
    const routines = lines.filter((l) => l.event === 'routine.loaded');
    expect(routines.map((l) => l.routine).sort()).toEqual(['add', 'crash', 'echo', 'fail', 'sleep']);
    expect(routines.find((l) => l.routine === 'echo')).toMatchObject({ file: EXAMPLES, function: 'echo', sha256: sha256(EXAMPLES) });
    expect(routines.find((l) => l.routine === 'crash')).toMatchObject({ file: FIX, function: 'crash', sha256: sha256(FIX) });
    const plugins = lines.filter((l) => l.event === 'plugin.loaded');
    expect(plugins.map((l) => l.plugin)).toEqual(['test-key', 'only-echo']);
    expect(plugins[0]).toMatchObject({ version: '1.0.0', file: join(PLUGINS, 'test-key.ts'), sha256: sha256(join(PLUGINS, 'test-key.ts')), signed: false, hooks: ['authenticate'] });
    expect(plugins[1]).toMatchObject({ file: join(PLUGINS, 'only-echo.ts'), sha256: sha256(join(PLUGINS, 'only-echo.ts')), hooks: ['authorize'] });
    expect(plugins[0]).not.toHaveProperty('keyId');
  });

  it('worker.spawn names the pid, the routines and the sandbox layers applied', () => {
    const spawn = readAudit(path).find((l) => l.event === 'worker.spawn');
    expect(spawn).toMatchObject({ worker: 'w1', reason: 'initial', pid: expect.any(Number), routines: ['echo', 'add', 'fail', 'sleep', 'crash'], python: expect.any(String) });
    expect(spawn!.layers).toEqual(expect.arrayContaining(['rlimits']));
    expect(spawn!.limits).toMatchObject({ openFiles: 64 });
  });

  it('authentication and authorization decisions, allow and deny, carry the request id the caller got back', async () => {
    // Plain mTLS: authenticated by the certificate, no authorize plugin has an opinion.
    const cert = await postJson(session, 'echo', { args: ['a'] });
    expect(cert.status).toBe(200);
    // A token on top; the caller's own request id is used.
    const token = await postJson(session, 'echo', { args: ['b'] }, { 'x-test-key': KEY_LIMITED, 'x-request-id': 'audit-e2e-allow' });
    expect(token.status).toBe(200);
    expect(rid(token)).toBe('audit-e2e-allow');
    const denied = await postJson(session, 'add', { args: [1, 2] }, { 'x-test-key': KEY_LIMITED });
    expect(denied.status).toBe(403);
    const rejected = await postJson(session, 'echo', { args: ['c'] }, { 'x-test-key': 'not-a-key' });
    expect(rejected.status).toBe(401);
    expect(rejected.json.requestId).toBe(rid(rejected));

    const decision = (event: string, requestId: string) => waitForAudit(path, (l) => l.event === event && l.requestId === requestId);
    const common = { method: 'POST', peer: DEV_CLIENT, remoteAddress: '127.0.0.1', fingerprint: expect.stringMatching(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/) };
    expect(await decision('authn.decision', rid(cert))).toMatchObject({ ...common, path: '/v1/dispatch/echo', routine: 'echo', principals: [], outcome: 'allow', via: 'certificate' });
    expect(await decision('authz.decision', rid(cert))).toMatchObject({ ...common, routine: 'echo', principals: [], outcome: 'allow', plugins: ['only-echo'] });
    expect(await decision('authn.decision', 'audit-e2e-allow')).toMatchObject({ principals: ['key:limited'], outcome: 'allow', via: 'token' });
    expect(await decision('authz.decision', 'audit-e2e-allow')).toMatchObject({ principals: ['key:limited'], outcome: 'allow' });
    expect(await decision('authz.decision', rid(denied))).toMatchObject({ ...common, routine: 'add', principals: ['key:limited'], outcome: 'deny', reason: 'ECHO_ONLY', plugin: 'only-echo' });
    expect(await decision('authn.decision', rid(rejected))).toMatchObject({ ...common, routine: 'echo', principals: [], outcome: 'deny', reason: 'BAD_TEST_KEY', plugin: 'test-key' });
    // Refused at authentication: no authorization decision at all.
    expect(readAudit(path).some((l) => l.event === 'authz.decision' && l.requestId === rid(rejected))).toBe(false);
  });

  it('worker.recycle after workers.maxCallsPerWorker calls, then a replacement spawn', async () => {
    // Two calls reached w1 above; the third retires it.
    expect((await postJson(session, 'echo', { args: ['third'] })).status).toBe(200);
    const recycle = await waitForAudit(path, (l) => l.event === 'worker.recycle');
    expect(recycle).toMatchObject({ worker: 'w1', reason: 'maxCalls', calls: 3, pid: expect.any(Number), routines: expect.arrayContaining(['echo']) });
    const spawn = await waitForAudit(path, (l) => l.event === 'worker.spawn' && l.reason === 'replacement');
    expect(spawn.seq).toBeGreaterThan(recycle.seq);
    expect(spawn.layers).toEqual(expect.arrayContaining(['rlimits']));
  });

  it('call.submitted, call.started and call.completed: one call id, in order, with the request id; none for a refused request', async () => {
    const ok = await postJson(session, 'echo', { args: ['calls'] }, { 'x-request-id': 'audit-e2e-call', 'x-skein-priority': 'high' });
    expect(ok.status).toBe(200);
    const denied = await postJson(session, 'add', { args: [1, 2] }, { 'x-test-key': KEY_LIMITED, 'x-request-id': 'audit-e2e-call-denied' });
    expect(denied.status).toBe(403);
    const completed = await waitForAudit(path, (l) => l.event === 'call.completed' && l.requestId === 'audit-e2e-call');
    const lines = readAudit(path).filter((l) => typeof l.event === 'string' && l.event.startsWith('call.') && l.requestId === 'audit-e2e-call');
    expect(lines.map((l) => l.event)).toEqual(['call.submitted', 'call.started', 'call.completed']);
    const callId = lines[0]!.callId;
    expect(callId).toEqual(expect.stringMatching(/^[0-9a-f-]{36}$/));
    expect(lines.every((l) => l.callId === callId && l.routine === 'echo' && l.shape === 'sync')).toBe(true);
    expect(lines[0]).toMatchObject({ caller: JSON.stringify([DEV_CLIENT]), priority: 'high' });
    expect(lines[1]).toMatchObject({ queuedMs: expect.any(Number) });
    expect(completed).toMatchObject({ outcome: 'ok', durationMs: expect.any(Number) });
    // Refused before the call existed: the authz.decision line says why, no call line does.
    await waitForAudit(path, (l) => l.event === 'authz.decision' && l.requestId === 'audit-e2e-call-denied');
    expect(readAudit(path).some((l) => typeof l.event === 'string' && l.event.startsWith('call.') && l.requestId === 'audit-e2e-call-denied')).toBe(false);
  });

  it('worker.kill on a deadline, with the request id and routine of the call', async () => {
    const res = await postJson(session, 'sleep', { args: [5] }, { 'x-skein-timeout-ms': '300' });
    expect(res.status).toBe(504);
    const kill = await waitForAudit(path, (l) => l.event === 'worker.kill');
    expect(kill).toMatchObject({ reason: 'deadline', requestId: rid(res), routine: 'sleep', signal: 'SIGKILL', pid: expect.any(Number) });
    expect(await waitForAudit(path, (l) => l.event === 'call.completed' && l.requestId === rid(res))).toMatchObject({ outcome: 'SKEIN_ERR_DEADLINE_EXCEEDED', routine: 'sleep' });
  });

  it('worker.crash when a routine exits the process, with its exit code', async () => {
    const res = await postJson(session, 'crash', {});
    expect(res.status).toBe(502);
    const crash = await waitForAudit(path, (l) => l.event === 'worker.crash');
    expect(crash).toMatchObject({ exitCode: 13, signal: null, stage: 'call', requestId: rid(res), routine: 'crash' });
  });

  it('agent.stop is the last line, after the drain', async () => {
    session.close();
    expect(await agent.stop()).toBe(0);
    const lines = readAudit(path);
    expect(lines.at(-1)).toMatchObject({ event: 'agent.stop', reason: 'shutdown' });
    expect(lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i + 1));
  });
});

describe('audit file: discovery', () => {
  const GROUP = `239.255.77.77:${40000 + Math.floor(Math.random() * 19000)}`;
  let pki: string;
  let keys: string;

  async function member(name: string, trusted: string[]): Promise<{ agent: StartedAgent; audit: string }> {
    if (!existsSync(join(pki, `agent-${name}.crt`))) expect((await runCli(['pki', 'issue', '--dir', pki, '--name', name, '--kind', 'agent', '--host', '127.0.0.1'])).code).toBe(0);
    const dir = tempDir();
    const agent = await startAgent({
      dir,
      config: {
        ...baseConfig({
          agent: { name, listen: '127.0.0.1:0', stateDir: 'state' },
          audit: { sink: 'file', path: 'audit.jsonl' },
          tls: { cert: join(pki, `agent-${name}.crt`), key: join(pki, `agent-${name}.key`), ca: join(pki, 'ca.crt'), trustDomain: 'fleet.test' },
          workers: { poolSize: 1 },
          discovery: { enabled: true, fleet: 'audit-fleet', signingKey: join(keys, `${name}.key`), trustedKeys: trusted, groups: [GROUP], intervalMs: 300, ttlMs: 1500 },
        }),
        routines: { echo: { file: EXAMPLES } },
      },
    });
    return { agent, audit: join(dir, 'audit.jsonl') };
  }
  const pub = (name: string) => readFileSync(join(keys, `${name}.key.pub`), 'utf8').trim();

  beforeAll(async () => {
    pki = tempDir();
    keys = tempDir();
    expect((await runCli(['pki', 'init', '--dir', pki, '--trust-domain', 'fleet.test'])).code).toBe(0);
    for (const n of ['alpha', 'beta', 'gamma']) expect((await runCli(['keygen', '--out', join(keys, `${n}.key`)])).code).toBe(0);
  });

  it('peer.accepted, advert.rejected (rate-limited) and peer.evicted on goodbye and on expiry', async () => {
    const trusted = ['alpha', 'beta', 'gamma'].map((n) => `${pub(n)}@spiffe://fleet.test/agent/${n}`);
    const alpha = await member('alpha', trusted);
    const beta = await member('beta', trusted);
    try {
      const accepted = await waitForAudit(alpha.audit, (l) => l.event === 'peer.accepted' && l.peer === 'beta');
      expect(accepted).toMatchObject({
        spiffe: 'spiffe://fleet.test/agent/beta',
        keyId: expect.stringMatching(/^[0-9a-f]{16}$/),
        endorsed: false,
        source: '127.0.0.1',
        endpoints: [`127.0.0.1:${beta.agent.port}`],
        routines: ['echo'],
        tlsFingerprint: expect.stringMatching(/^[0-9a-f]{64}$/),
      });

      // Twenty junk datagrams: the first rejection is recorded, the rest are held back.
      const socket = createSocket('udp4');
      await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
      socket.setMulticastInterface('127.0.0.1');
      const [group, port] = GROUP.split(':');
      for (let i = 0; i < 20; i++) await new Promise<void>((r) => socket.send(Buffer.from(`not an advert ${i}`), Number(port), group!, () => r()));
      socket.close();
      const rejected = await waitForAudit(alpha.audit, (l) => l.event === 'advert.rejected');
      expect(rejected).toMatchObject({ reason: 'malformed', source: '127.0.0.1', suppressed: 0 });
      await alpha.agent.waitForLog((l) => l.msg === 'advertisement rejected');
      await new Promise((r) => setTimeout(r, 300));
      expect(readAudit(alpha.audit).filter((l) => l.event === 'advert.rejected')).toHaveLength(1);

      await beta.agent.stop('SIGTERM');
      expect(await waitForAudit(alpha.audit, (l) => l.event === 'peer.evicted' && l.peer === 'beta')).toMatchObject({ reason: 'goodbye', keyId: accepted.keyId, source: '127.0.0.1' });

      const gamma = await member('gamma', trusted);
      await waitForAudit(alpha.audit, (l) => l.event === 'peer.accepted' && l.peer === 'gamma');
      // Let alpha finish its identity handshake with gamma first: a peer gone before it can
      // prove its identity is evicted for that instead (identity-mismatch), not on expiry.
      await alpha.agent.waitForLog((l) => l.msg === 'peer proved its identity' && l.peer === 'gamma');
      await gamma.agent.stop('SIGKILL'); // no goodbye: believed until its ttl passes
      expect(await waitForAudit(alpha.audit, (l) => l.event === 'peer.evicted' && l.peer === 'gamma', 5000)).toMatchObject({ reason: 'expired' });
    } finally {
      await Promise.all([alpha.agent.stop(), beta.agent.stop()]);
    }
  });
});

describe('an audit path that cannot be written', () => {
  it('is warned about once and counted on /metrics, and dispatch keeps answering', async () => {
    const dir = tempDir();
    // A directory: opening it for writing fails (EISDIR) even as root, unlike a chmod.
    const agent = await startAgent({ config: baseConfig({ audit: { sink: 'file', path: dir } }) });
    const client = agent.client();
    try {
      const admin = String((await agent.waitForLog((l) => l.msg === 'admin listening')).address);
      const dropped = async () => {
        const text = await (await fetch(`http://${admin}/metrics`)).text();
        return Number(/^skein_audit_events_dropped_total\{reason="sink"\} (\d+)$/m.exec(text)?.[1] ?? NaN);
      };
      const warning = await agent.waitForLog((l) => l.msg === 'audit sink failed');
      expect(warning).toMatchObject({ level: 'warn', sink: 'file', path: dir, code: 'EISDIR' });

      for (let i = 0; i < 5; i++) expect(await client.dispatch('add', { args: [i, 1] })).toBe(i + 1);
      await new Promise((r) => setTimeout(r, 100));
      const before = await dropped();
      expect(before).toBeGreaterThan(5); // start-up lines and two decisions per call
      for (let i = 0; i < 5; i++) expect(await client.dispatch('echo', { args: [i] })).toBe(i);
      await new Promise((r) => setTimeout(r, 100));
      expect(await dropped()).toBeGreaterThanOrEqual(before + 10);
      expect(agent.logs.filter((l) => l.msg === 'audit sink failed')).toHaveLength(1);
    } finally {
      await client.close();
      expect(await agent.stop()).toBe(0);
    }
  });
});
