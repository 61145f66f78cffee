/**
 * The audit stream on its own: line format, batching, redaction, the bounded queue, a failing
 * sink (warned once, every lost line counted, dispatch never blocked) and reopen (logrotate).
 */
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { AUDIT_EVENTS, AUDIT_SCHEMA, createAudit, nullAudit, type AuditLoss } from '../../agent/audit/index.ts';
import { auditedConfig, isSecretName, redactByName, REDACTED } from '../../agent/audit/redact.ts';
import { loadConfig } from '../../agent/config/load.ts';
import { createLogger } from '../../agent/log/index.ts';

const dirs: string[] = [];
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), 'skein-audit-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const NOW = new Date('2026-11-23T10:00:00.123Z');

function harness(config: { sink: 'file' | 'stderr'; path?: string; maxQueueLines?: number }, extra: { retryMs?: number; writeIntervalMs?: number } = {}) {
  const logs: Array<Record<string, unknown>> = [];
  const lost: Array<[number, AuditLoss]> = [];
  const out: string[] = [];
  const log = createLogger({ write: (l) => logs.push(JSON.parse(l)) });
  const audit = createAudit(
    { maxQueueLines: 10_000, ...config },
    { log, agent: 'edge-1', now: () => NOW, onFailure: (n, reason) => lost.push([n, reason]), stderr: (text, done) => (out.push(text), done()), ...extra },
  );
  const lostLines = () => lost.reduce((sum, [n]) => sum + n, 0);
  return { audit, logs, lost, lostLines, out, warnings: () => logs.filter((l) => l.level === 'warn') };
}

const lines = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const tick = () => new Promise((r) => setImmediate(r));

describe('audit lines', () => {
  it('carry the schema, time, a gap-free sequence, the agent and the event, then the fields', async () => {
    const { audit, out } = harness({ sink: 'stderr' });
    audit.record('authz.decision', { requestId: 'r1', outcome: 'allow', seq: 99, schema: 'forged', skipped: undefined });
    audit.record('worker.crash', { worker: 'w1', exitCode: 3 });
    await audit.close();
    const [a, b] = lines(out.join(''));
    expect(a).toEqual({ schema: AUDIT_SCHEMA, ts: NOW.toISOString(), seq: 1, agent: 'edge-1', event: 'authz.decision', requestId: 'r1', outcome: 'allow' });
    expect(Object.keys(a!).slice(0, 5)).toEqual(['schema', 'ts', 'seq', 'agent', 'event']);
    expect(b).toMatchObject({ seq: 2, event: 'worker.crash', worker: 'w1', exitCode: 3 });
  });

  it('are written in one batch per tick, not one write per line', async () => {
    const { audit, out } = harness({ sink: 'stderr' });
    for (let i = 0; i < 100; i++) audit.record('authn.decision', { requestId: `r${i}` });
    expect(out).toEqual([]); // record() never writes synchronously
    await audit.close();
    expect(out).toHaveLength(1);
    expect(lines(out[0]!)).toHaveLength(100);
  });

  it('keep the header first and in place whatever the fields are named (integer-like keys, header names)', async () => {
    const { audit, out } = harness({ sink: 'stderr' });
    audit.record('worker.spawn', { '42': 'x', worker: 'w1' });
    audit.record('worker.spawn', { worker: 'w2', event: 'forged', ts: undefined });
    audit.record('worker.spawn', {});
    await audit.close();
    const [a, b, c] = out.join('').trimEnd().split('\n');
    expect(a).toBe(`{"schema":"${AUDIT_SCHEMA}","ts":"${NOW.toISOString()}","seq":1,"agent":"edge-1","event":"worker.spawn","42":"x","worker":"w1"}`);
    expect(b).toBe(`{"schema":"${AUDIT_SCHEMA}","ts":"${NOW.toISOString()}","seq":2,"agent":"edge-1","event":"worker.spawn","worker":"w2"}`);
    expect(c).toBe(`{"schema":"${AUDIT_SCHEMA}","ts":"${NOW.toISOString()}","seq":3,"agent":"edge-1","event":"worker.spawn"}`);
  });

  it('are stamped with the clock time in ISO 8601 to the millisecond, across seconds, days and years', async () => {
    const out: string[] = [];
    const audit = createAudit({ sink: 'stderr', maxQueueLines: 10_000 }, { log: createLogger({ write: () => {} }), agent: 'a', stderr: (t, done) => (out.push(t), done()) });
    const stamps = [Date.UTC(2026, 11, 31, 23, 59, 58, 999), Date.UTC(2026, 11, 31, 23, 59, 59, 0), Date.UTC(2026, 11, 31, 23, 59, 59, 7), Date.UTC(2026, 11, 31, 23, 59, 59, 7)];
    stamps.push(Date.UTC(2026, 11, 31, 23, 59, 59, 42), Date.UTC(2027, 0, 1, 0, 0, 0, 999), Date.UTC(2027, 0, 1, 0, 0, 1, 100), 0);
    const clock = vi.spyOn(Date, 'now');
    try {
      for (const ms of stamps) {
        clock.mockReturnValue(ms);
        audit.record('agent.stop', {});
      }
    } finally {
      clock.mockRestore();
    }
    await audit.close();
    expect(lines(out.join('')).map((l) => l.ts)).toEqual(stamps.map((ms) => new Date(ms).toISOString()));
  });

  it('recorded within writeIntervalMs of the last write wait for one write together; flush() writes at once', async () => {
    const { audit, out } = harness({ sink: 'stderr' }, { writeIntervalMs: 60_000 });
    audit.record('authn.decision', { requestId: 'r1' });
    await tick();
    expect(out).toHaveLength(1); // nothing written lately: the next turn
    audit.record('call.completed', { requestId: 'r1' });
    audit.record('authn.decision', { requestId: 'r2' });
    await tick();
    await tick();
    expect(out).toHaveLength(1); // waiting for the interval
    await audit.flush();
    expect(out).toHaveLength(2);
    expect(lines(out[1]!).map((l) => l.seq)).toEqual([2, 3]);
    audit.record('call.completed', { requestId: 'r2' });
    await audit.close(); // close() does not wait for the interval either
    expect(lines(out.join('')).map((l) => l.seq)).toEqual([1, 2, 3, 4]);
  });

  it('waiting for the interval are written once it has passed, without a flush()', async () => {
    const { audit, out } = harness({ sink: 'stderr' }, { writeIntervalMs: 20 });
    audit.record('authn.decision', { requestId: 'r1' });
    await tick();
    audit.record('authz.decision', { requestId: 'r1' });
    await tick();
    expect(out).toHaveLength(1);
    // The interval is a lower bound by design: wait past it (never flaky).
    await new Promise((r) => setTimeout(r, 40));
    expect(out).toHaveLength(2);
    await audit.close();
  });

  it('stay one line when a field holds newlines or control characters', async () => {
    const { audit, out } = harness({ sink: 'stderr' });
    audit.record('config.reload_refused', { error: 'bad\n{"schema":"skein.audit/v1","event":"agent.start"}\u001b[2K' });
    await audit.close();
    expect(out.join('').trimEnd().split('\n')).toHaveLength(1);
  });

  it('documents every event kind in docs/audit.md', () => {
    const doc = readFileSync(join(import.meta.dirname, '../../docs/audit.md'), 'utf8');
    for (const event of AUDIT_EVENTS) expect(doc, event).toContain(`\`${event}\``);
    expect(doc).toContain(AUDIT_SCHEMA);
  });

  it('sink "off" and nullAudit record nothing and never fail', async () => {
    const log = createLogger({ write: () => {} });
    const off = createAudit({ sink: 'off', maxQueueLines: 16 }, { log, agent: 'a' });
    expect(off).toBe(nullAudit);
    off.record('agent.start', {});
    off.reopen();
    await off.close();
  });
});

describe('the audit file', () => {
  it('creates a missing folder (0700) for the file, so a first start loses nothing', async () => {
    const d = dir();
    const path = join(d, 'state', 'audit', 'audit.jsonl');
    const { audit, warnings } = harness({ sink: 'file', path });
    audit.record('agent.start', {});
    await audit.close();
    expect(warnings()).toEqual([]);
    expect(statSync(join(d, 'state', 'audit')).mode & 0o777).toBe(0o700);
    expect(lines(readFileSync(path, 'utf8')).map((l) => l.event)).toEqual(['agent.start']);
  });

  it('is appended to with mode 0600 and keeps earlier content', async () => {
    const path = join(dir(), 'audit.jsonl');
    writeFileSync(path, 'earlier\n', { mode: 0o600 });
    const { audit } = harness({ sink: 'file', path });
    audit.record('agent.start', { version: '1' });
    await audit.close();
    const text = readFileSync(path, 'utf8');
    expect(text.startsWith('earlier\n')).toBe(true);
    expect(lines(text.slice('earlier\n'.length))[0]).toMatchObject({ event: 'agent.start' });

    const fresh = join(dir(), 'new.jsonl');
    const h = harness({ sink: 'file', path: fresh });
    h.audit.record('agent.start', {});
    await h.audit.close();
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
  });

  it('is re-opened by reopen(): after logrotate moved it, new lines go to a new file at the path', async () => {
    const d = dir();
    const path = join(d, 'audit.jsonl');
    const { audit } = harness({ sink: 'file', path });
    audit.record('agent.start', {});
    await audit.flush();
    renameSync(path, join(d, 'audit.jsonl.1'));
    audit.record('worker.spawn', { worker: 'w1' }); // still the old file: rotation is not yet signalled
    await audit.flush();
    audit.reopen();
    audit.record('tls.reloaded', { trigger: 'sighup' });
    await audit.close();
    expect(lines(readFileSync(join(d, 'audit.jsonl.1'), 'utf8')).map((l) => l.event)).toEqual(['agent.start', 'worker.spawn']);
    expect(lines(readFileSync(path, 'utf8')).map((l) => l.event)).toEqual(['tls.reloaded']);
  });
});

describe('a failing sink', () => {
  it('is warned about once, every lost line is counted, and record() still returns at once', async () => {
    const path = dir(); // a directory: open(O_WRONLY) fails with EISDIR, even as root
    const { audit, warnings, lostLines, lost } = harness({ sink: 'file', path });
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 10; i++) audit.record('authn.decision', { requestId: `r${round}-${i}` });
      await tick();
      await tick();
    }
    await audit.close();
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ msg: 'audit sink failed', sink: 'file', path, code: 'EISDIR' });
    expect(lostLines()).toBe(50);
    expect(lost.every(([, reason]) => reason === 'sink')).toBe(true);
  });

  it('recovers on reopen() once the path is writable, says so, and warns again on a later failure', async () => {
    const d = dir();
    // A regular file where the audit folder should be: the sink can neither create the
    // folder (missing folders are created) nor open the file in it.
    const path = join(d, 'gone', 'audit.jsonl');
    writeFileSync(join(d, 'gone'), '');
    const { audit, logs, warnings, lostLines } = harness({ sink: 'file', path });
    audit.record('agent.start', {});
    await audit.flush();
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ msg: 'audit sink failed', code: expect.stringMatching(/^(EEXIST|ENOTDIR)$/) });

    rmSync(join(d, 'gone'));
    audit.reopen();
    audit.record('config.reloaded', { applied: [] });
    await audit.flush();
    expect(logs.find((l) => l.msg === 'audit sink recovered')).toMatchObject({ lost: 1 });
    expect(lines(readFileSync(path, 'utf8')).map((l) => l.event)).toEqual(['config.reloaded']);

    // Blocked again (the folder replaced by a file, then a reopen): a new episode, a new warning.
    rmSync(join(d, 'gone'), { recursive: true });
    writeFileSync(join(d, 'gone'), '');
    audit.reopen();
    audit.record('agent.stop', {});
    await audit.close();
    expect(warnings()).toHaveLength(2);
    expect(lostLines()).toBe(2);
  });

  it('is tried again on its own after retryMs, without a reopen()', async () => {
    const d = dir();
    const path = join(d, 'later', 'audit.jsonl');
    writeFileSync(join(d, 'later'), ''); // blocks the folder until removed
    const { audit, logs } = harness({ sink: 'file', path }, { retryMs: 30 });
    audit.record('agent.start', {});
    await audit.flush(); // the open failed and the line was counted lost
    rmSync(join(d, 'later'));
    // The retry is due by the clock, by design: wait past retryMs (a lower bound, never flaky).
    await new Promise((r) => setTimeout(r, 40));
    audit.record('worker.spawn', {});
    await audit.close();
    expect(logs.some((l) => l.msg === 'audit sink recovered')).toBe(true);
    expect(lines(readFileSync(path, 'utf8')).map((l) => l.event)).toEqual(['worker.spawn']);
  });

  it('a write error (ENOSPC on stderr) is warned about once and every lost line counted', async () => {
    const logs: Array<Record<string, unknown>> = [];
    const lost: number[] = [];
    let writes = 0;
    const audit = createAudit(
      { sink: 'stderr', maxQueueLines: 100 },
      {
        log: createLogger({ write: (l) => logs.push(JSON.parse(l)) }),
        agent: 'a',
        onFailure: (n) => lost.push(n),
        stderr: (_t, done) => (writes++, done(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }))),
      },
    );
    audit.record('agent.start', {});
    await tick();
    await tick();
    audit.record('authn.decision', {});
    audit.record('authz.decision', {});
    await audit.close();
    expect(logs.filter((l) => l.level === 'warn')).toEqual([expect.objectContaining({ msg: 'audit sink failed', code: 'ENOSPC' })]);
    expect(lost.reduce((a, n) => a + n, 0)).toBe(3);
    expect(writes).toBe(1); // not retried per batch: only on reopen() or after retryMs
  });

  it('a full queue drops and counts lines (overflow) with one warning instead of growing', async () => {
    // A sink that never completes a write: the queue fills behind it.
    let release: (() => void) | undefined;
    const logs: Array<Record<string, unknown>> = [];
    const lost: Array<[number, AuditLoss]> = [];
    const audit = createAudit(
      { sink: 'stderr', maxQueueLines: 16 },
      { log: createLogger({ write: (l) => logs.push(JSON.parse(l)) }), agent: 'a', onFailure: (n, r) => lost.push([n, r]), stderr: (_t, done) => (release = () => done()) },
    );
    audit.record('agent.start', {});
    await tick(); // the first batch is now being written, and hangs
    for (let i = 0; i < 40; i++) audit.record('authn.decision', { i });
    expect(lost).toEqual(Array.from({ length: 24 }, () => [1, 'overflow']));
    expect(logs.filter((l) => l.msg === 'audit queue full: dropping audit lines')).toHaveLength(1);
    release!();
    await tick();
    release!();
    await audit.close();
  });
});

describe('the lifecycle (agent/lifecycle)', () => {
  it('close() twice, concurrently: one flush, every line written once, records after it dropped', async () => {
    const { audit, out } = harness({ sink: 'stderr' });
    audit.record('agent.start', {});
    await Promise.all([audit.close(), audit.close()]);
    audit.record('agent.stop', {});
    await audit.close();
    expect(lines(out.join('')).map((l) => l.event)).toEqual(['agent.start']);
  });

  it('destroy() does not wait for a sink that hangs: queued lines are counted as lost, and a pending close() settles with it', async () => {
    let writes = 0;
    const lost: Array<[number, AuditLoss]> = [];
    const audit = createAudit(
      { sink: 'stderr', maxQueueLines: 100 },
      { log: createLogger({ write: () => {} }), agent: 'a', onFailure: (n, r) => lost.push([n, r]), stderr: () => void writes++, closeTimeoutMs: 60_000 },
    );
    audit.record('agent.start', {});
    await tick(); // the first batch is being written, and never completes
    audit.record('authn.decision', {});
    audit.record('authz.decision', {});
    const closing = audit.close();
    await Promise.all([audit.destroy(), audit.destroy(), closing]);
    expect(lost).toEqual([[2, 'sink']]);
    expect(writes).toBe(1);
  });
});

describe('redaction', () => {
  it('treats secret-looking option names as secrets', () => {
    for (const name of ['secret', 'hs256Secret', 'apiKey', 'keys', 'password', 'client_passwd', 'token', 'bearerTokens', 'hmac', 'privateKey', 'credentials'])
      expect(isSecretName(name), name).toBe(true);
    for (const name of ['issuer', 'audience', 'rules', 'windowSec', 'algorithms', 'identityClaim']) expect(isSecretName(name), name).toBe(false);
  });

  it('redacts by name at any depth, JWK private members and PEM private keys, and keeps the rest', () => {
    const options = {
      issuer: 'https://id.example',
      hs256Secret: 'hunter2hunter2hunter2',
      nested: [{ name: 'a', token: 't0ps3cret' }],
      jwks: [
        { kty: 'oct', kid: 'k1', k: 'c2VjcmV0' },
        { kty: 'EC', crv: 'P-256', x: 'pub', y: 'pub', d: 'private' },
      ],
      pem: '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n',
      rules: [{ allow: 'echo' }],
    };
    expect(redactByName(options)).toEqual({
      issuer: 'https://id.example',
      hs256Secret: REDACTED,
      nested: [{ name: 'a', token: REDACTED }],
      jwks: [
        { kty: 'oct', kid: 'k1', k: REDACTED },
        { kty: 'EC', crv: 'P-256', x: 'pub', y: 'pub', d: REDACTED },
      ],
      pem: REDACTED,
      rules: [{ allow: 'echo' }],
    });
  });

  it('the audited config hides admin.token and secret plugin options, and shows everything else', () => {
    const d = dir();
    const file = join(d, 'agent.config.json');
    writeFileSync(
      file,
      JSON.stringify({
        admin: { token: 'a-very-secret-admin-token' },
        plugins: { enabled: [{ name: 'bearer-jwt', options: { issuer: 'https://id.example', keys: ['secret-key-material'] } }, { name: 'routine-policy' }] },
      }),
    );
    const { config } = loadConfig({ path: file, env: {} });
    const audited = auditedConfig(config);
    const text = JSON.stringify(audited);
    expect(text).not.toContain('a-very-secret-admin-token');
    expect(text).not.toContain('secret-key-material');
    expect(audited).toMatchObject({
      admin: { token: REDACTED },
      plugins: { enabled: [{ name: 'bearer-jwt', options: { issuer: 'https://id.example', keys: REDACTED } }, { name: 'routine-policy' }] },
      audit: { sink: 'stderr' },
    });
    expect(config.admin.token).toBe('a-very-secret-admin-token'); // the running config is untouched
  });
});
