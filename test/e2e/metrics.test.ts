/**
 * The admin listener through the compiled binary: /metrics parses as Prometheus text and its
 * counters move as dispatches, rejections and worker events happen; /healthz and /readyz;
 * an off-loopback admin listener needs admin.token and then a bearer header.
 */
import { execFileSync } from 'node:child_process';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, failure, FIXTURES, runCli, startAgent, startMustFail, stopAll, type StartedAgent } from '../helpers/agent.ts';
import { connect, postJson } from '../helpers/h2.ts';
import { ERROR_TABLE, type ErrorCode } from '../../common/errors/index.ts';

/** name → list of {labels, value}; rejects any line that is not HELP, TYPE, blank or a sample. */
type Samples = Map<string, Array<{ labels: Record<string, string>; value: number }>>;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?(?:[0-9.e+-]+|Inf|\+Inf|NaN))$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;

function parseProm(text: string): { samples: Samples; types: Map<string, string> } {
  const samples: Samples = new Map();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue;
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      expect(['counter', 'gauge', 'histogram', 'summary', 'untyped']).toContain(type);
      types.set(name!, type!);
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a Prometheus text line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      LABEL.lastIndex = 0;
      let consumed = 0;
      let l: RegExpExecArray | null;
      while ((l = LABEL.exec(m[2]))) {
        labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
        consumed = LABEL.lastIndex;
      }
      if (consumed !== m[2].length) throw new Error(`bad label set in ${JSON.stringify(line)}`);
    }
    const list = samples.get(m[1]!) ?? [];
    list.push({ labels, value: Number(m[3]!.replace(/^\+?Inf$/, 'Infinity')) });
    samples.set(m[1]!, list);
  }
  return { samples, types };
}

/** The value of the series with exactly these labels (0 when absent, for counters that never moved). */
function value(s: Samples, name: string, labels: Record<string, string> = {}): number {
  const keys = Object.keys(labels);
  const hit = (s.get(name) ?? []).find((x) => Object.keys(x.labels).length === keys.length && keys.every((k) => x.labels[k] === labels[k]));
  return hit?.value ?? 0;
}

async function adminAddress(agent: StartedAgent): Promise<string> {
  const line = await agent.waitForLog((l) => l.msg === 'admin listening');
  return String(line.address);
}

async function scrape(admin: string, headers: Record<string, string> = {}): Promise<{ samples: Samples; types: Map<string, string>; text: string }> {
  const res = await fetch(`http://${admin}/metrics`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  return { ...parseProm(text), text };
}

afterAll(stopAll);

describe('admin listener on loopback (default)', () => {
  let agent: StartedAgent;
  let admin: string;
  beforeAll(async () => {
    agent = await startAgent({ config: baseConfig() });
    admin = await adminAddress(agent);
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it("parses with the Prometheus project's own text parser (Debian python3-prometheus-client)", async () => {
    await agent
      .client()
      .dispatch('add', { args: [1, 2] })
      .catch(() => undefined);
    const { text } = await scrape(admin);
    // An independent implementation of the exposition format: any line it cannot read throws.
    const script = [
      'import sys, json',
      'from prometheus_client.parser import text_string_to_metric_families',
      'out = {f.name: {"type": f.type, "samples": len(f.samples)} for f in text_string_to_metric_families(sys.stdin.read())}',
      'print(json.dumps(out))',
    ].join('\n');
    const parsed = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: text, encoding: 'utf8' })) as Record<string, { type: string; samples: number }>;
    // The parser strips _total from counter family names.
    expect(parsed).toMatchObject({
      skein_dispatches: { type: 'counter' },
      skein_dispatch_duration_seconds: { type: 'histogram' },
      skein_queue_depth: { type: 'gauge' },
      skein_auth_rejections: { type: 'counter' },
      skein_worker_events: { type: 'counter' },
      skein_reloads: { type: 'counter' },
      skein_tls_certificate_expiry_timestamp_seconds: { type: 'gauge' },
      skein_build_info: { type: 'gauge' },
      process_cpu_seconds: { type: 'counter' },
      process_start_time_seconds: { type: 'gauge' },
      process_resident_memory_bytes: { type: 'gauge' },
      process_open_fds: { type: 'gauge' },
      process_max_fds: { type: 'gauge' },
    });
    expect(parsed.skein_dispatch_duration_seconds!.samples).toBeGreaterThan(3);
  });

  it('logs a loopback address on its own port', () => {
    expect(admin).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(Number(admin.split(':')[1])).not.toBe(agent.port);
  });

  it('counts dispatches by routine and outcome, with one histogram observation each', async () => {
    const before = (await scrape(admin)).samples;
    const client = agent.client();
    try {
      for (let i = 0; i < 3; i++) expect(await client.dispatch('echo', { args: [i] })).toBe(i);
      for (let i = 0; i < 2; i++) expect((await failure(client.dispatch('fail', { args: ['boom'] }))).code).toBe('SKEIN_ERR_ROUTINE_RAISED');
      expect((await failure(client.dispatch('no_such_routine', { args: [] }))).code).toBe('SKEIN_ERR_UNKNOWN_ROUTINE');
    } finally {
      await client.close();
    }
    const { samples: after, types } = await scrape(admin);
    const delta = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);

    expect(types.get('skein_dispatches_total')).toBe('counter');
    expect(types.get('skein_dispatch_duration_seconds')).toBe('histogram');
    expect(delta('skein_dispatches_total', { routine: 'echo', outcome: 'ok' })).toBe(3);
    expect(delta('skein_dispatches_total', { routine: 'fail', outcome: 'SKEIN_ERR_ROUTINE_RAISED' })).toBe(2);
    // A routine name the caller made up does not become a label value.
    expect(delta('skein_dispatches_total', { routine: '_unknown', outcome: 'SKEIN_ERR_UNKNOWN_ROUTINE' })).toBe(1);
    expect(JSON.stringify([...after.get('skein_dispatches_total')!])).not.toContain('no_such_routine');

    expect(delta('skein_dispatch_duration_seconds_count', { routine: 'echo' })).toBe(3);
    expect(delta('skein_dispatch_duration_seconds_count', { routine: 'fail' })).toBe(2);
    expect(delta('skein_dispatch_duration_seconds_bucket', { routine: 'echo', le: '+Inf' })).toBe(3);
    expect(delta('skein_dispatch_duration_seconds_bucket', { routine: 'echo', le: '30' })).toBe(3);
    expect(value(after, 'skein_dispatch_duration_seconds_sum', { routine: 'echo' })).toBeGreaterThan(0);
    // Buckets from 0.1 ms to 30 s, cumulative.
    const les = after.get('skein_dispatch_duration_seconds_bucket')!.filter((x) => x.labels.routine === 'echo');
    expect(les[0]!.labels.le).toBe('0.0001');
    expect(les.map((x) => x.labels.le)).toContain('30');
    for (let i = 1; i < les.length; i++) expect(les[i]!.value).toBeGreaterThanOrEqual(les[i - 1]!.value);
  });

  it('reports queue depth, in-flight calls, workers and worker spawns', async () => {
    const { samples, types } = await scrape(admin);
    expect(types.get('skein_queue_depth')).toBe('gauge');
    expect(types.get('skein_in_flight')).toBe('gauge');
    expect(samples.get('skein_queue_depth')).toEqual(['high', 'normal', 'low'].map((priority) => ({ labels: { priority }, value: 0 })));
    expect(samples.get('skein_in_flight')).toEqual([{ labels: {}, value: 0 }]);
    expect(value(samples, 'skein_workers')).toBe(2);
    expect(value(samples, 'skein_worker_events_total', { event: 'spawn', reason: 'initial' })).toBe(2);
  });

  it('counts a worker killed at its deadline and its replacement', async () => {
    const before = (await scrape(admin)).samples;
    const client = agent.client();
    try {
      expect((await failure(client.dispatch('sleep', { args: [5], timeoutMs: 200 }))).code).toBe('SKEIN_ERR_DEADLINE_EXCEEDED');
    } finally {
      await client.close();
    }
    await agent.waitForLog((l) => l.msg === 'worker exited; starting a replacement' && l.reason === 'deadline');
    // The replacement spawns right after the exit (first respawn has no back-off).
    let after = before;
    for (let i = 0; i < 50; i++) {
      after = (await scrape(admin)).samples;
      if (value(after, 'skein_worker_events_total', { event: 'spawn', reason: 'replacement' }) > value(before, 'skein_worker_events_total', { event: 'spawn', reason: 'replacement' })) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(value(after, 'skein_worker_events_total', { event: 'exit', reason: 'deadline' }) - value(before, 'skein_worker_events_total', { event: 'exit', reason: 'deadline' })).toBe(1);
    expect(value(after, 'skein_worker_events_total', { event: 'spawn', reason: 'replacement' }) - value(before, 'skein_worker_events_total', { event: 'spawn', reason: 'replacement' })).toBe(1);
    expect(value(after, 'skein_dispatches_total', { routine: 'sleep', outcome: 'SKEIN_ERR_DEADLINE_EXCEEDED' })).toBe(1);
  });

  it('shows every sandbox canary probe blocked under the strict profile', async () => {
    const { samples } = await scrape(admin);
    const canary = samples.get('skein_sandbox_canary_blocked') ?? [];
    expect(canary.map((x) => x.labels.probe).sort()).toEqual(['fork', 'readEtcPasswd', 'signalParent', 'socket', 'writeTmp']);
    for (const c of canary) expect(c.value).toBe(1);
  });

  it('exposes the certificate expiry as a future Unix time', async () => {
    const { samples } = await scrape(admin);
    const expiry = value(samples, 'skein_tls_certificate_expiry_timestamp_seconds');
    expect(expiry).toBeGreaterThan(Date.now() / 1000);
    expect(expiry).toBeLessThan(Date.now() / 1000 + 20 * 365 * 86400);
  });

  it('says which build runs (skein_build_info, as --version does) and exports the standard process_* metrics', async () => {
    const { samples } = await scrape(admin);
    const info = samples.get('skein_build_info') ?? [];
    expect(info).toHaveLength(1);
    expect(info[0]!.value).toBe(1);
    const version = (await runCli(['--version'])).stdout.trim();
    expect(version).toBe(`skein ${info[0]!.labels.version} (commit ${info[0]!.labels.commit}, built ${info[0]!.labels.build_date})`);
    expect(info[0]!.labels.commit).toMatch(/^[0-9a-f]{12}(-dirty)?$/);
    const started = value(samples, 'process_start_time_seconds');
    expect(started).toBeGreaterThan(Date.now() / 1000 - 3600);
    expect(started).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    // The agent's own RSS, compared with what the kernel says about its pid.
    const rss = value(samples, 'process_resident_memory_bytes');
    const kernel = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))![1]) * 1024;
    expect(rss).toBeGreaterThan(kernel / 2);
    expect(rss).toBeLessThan(kernel * 2);
    expect(value(samples, 'process_open_fds')).toBeGreaterThan(3);
    expect(value(samples, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  });

  it('has no advertisement series and no peers while discovery is off', async () => {
    const { samples } = await scrape(admin);
    expect(value(samples, 'skein_peers')).toBe(0);
    expect(samples.get('skein_adverts_total')).toBeUndefined();
  });

  it('answers /healthz and /readyz, and 404 elsewhere', async () => {
    const health = await fetch(`http://${admin}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', workers: 2, queued: 0, inFlight: 0 });
    const ready = await fetch(`http://${admin}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready' });
    expect((await fetch(`http://${admin}/nope`)).status).toBe(404);
    expect((await fetch(`http://${admin}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
  });

  it.each([
    ['an unknown path', '/nope', 'GET', 'SKEIN_ERR_NOT_FOUND', 'no admin endpoint /nope'],
    ['a wrong method', '/metrics', 'POST', 'SKEIN_ERR_METHOD_NOT_ALLOWED', 'the admin endpoints accept GET and HEAD'],
  ])('%s: the code, message and status of the errors table', async (_what, path, method, code, message) => {
    const res = await fetch(`http://${admin}${path}`, { method, ...(method === 'POST' ? { body: 'x' } : {}) });
    expect(res.status).toBe(ERROR_TABLE[code as ErrorCode].status);
    expect(await res.json()).toEqual({ code, message });
  });
});

describe('admin listener off loopback', () => {
  it('refuses to start without admin.token, naming the key', async () => {
    const stderr = await startMustFail(baseConfig({ admin: { listen: '0.0.0.0:0' } }));
    expect(stderr).toMatch(/admin\.token/);
    expect(stderr).toMatch(/not a loopback address/);
  });

  it('with admin.token, requires the bearer header; counts authentication and authorization rejections', async () => {
    const token = 'metrics-test-token-0123456789';
    // An IPv4-mapped loopback address: not recognised as loopback (so the token is required)
    // while the test's traffic stays on this host.
    const agent = await startAgent({
      config: baseConfig({
        admin: { listen: '[::ffff:127.0.0.1]:0', token },
        tls: { clientCerts: 'optional' },
        plugins: { dir: join(FIXTURES, 'plugins'), enabled: [{ name: 'only-echo', options: { echoOnly: ['spiffe://skein.local/client/dev-client'] } }] },
      }),
    });
    try {
      const logged = await adminAddress(agent);
      const port = Number(logged.split(':').pop());
      const admin = `127.0.0.1:${port}`;
      const anon = await fetch(`http://${admin}/metrics`);
      expect(anon.status).toBe(ERROR_TABLE.SKEIN_ERR_UNAUTHENTICATED.status);
      expect(anon.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(await anon.json()).toEqual({ code: 'SKEIN_ERR_UNAUTHENTICATED', message: 'the admin endpoints need Authorization: Bearer <admin.token>' });
      expect((await fetch(`http://${admin}/metrics`, { headers: { authorization: `Bearer ${token}x` } })).status).toBe(401);
      expect((await fetch(`http://${admin}/readyz`)).status).toBe(401);
      // The token never reaches the log.
      expect(agent.stderr()).not.toContain(token);

      // authz: only-echo denies `add` to the dev client; authn: no certificate and no token.
      const session = connect(agent.port, agent.pki);
      try {
        expect((await postJson(session, 'add', { args: [1, 2] })).status).toBe(403);
      } finally {
        session.close();
      }
      const bare = http2.connect(`https://127.0.0.1:${agent.port}`, { ca: readFileSync(agent.pki.ca) });
      try {
        expect((await postJson(bare, 'echo', { args: [1] })).status).toBe(401);
      } finally {
        bare.close();
      }

      const { samples } = await scrape(admin, { authorization: `Bearer ${token}` });
      expect(value(samples, 'skein_auth_rejections_total', { kind: 'authz', reason: 'ECHO_ONLY' })).toBe(1);
      expect(value(samples, 'skein_auth_rejections_total', { kind: 'authn', reason: 'CREDENTIAL_REQUIRED' })).toBe(1);
      expect(value(samples, 'skein_dispatches_total', { routine: 'add', outcome: 'SKEIN_ERR_FORBIDDEN' })).toBe(1);
      expect(value(samples, 'skein_dispatches_total', { routine: 'echo', outcome: 'SKEIN_ERR_UNAUTHENTICATED' })).toBe(1);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  });
});
