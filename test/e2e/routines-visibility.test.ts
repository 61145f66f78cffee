/**
 * GET /v1/routines lists only the routines the caller may dispatch, through the compiled
 * binary over mTLS: each routine is put to the authorization a dispatch of it meets
 * (authorization.allow, authorization.default, the plugins' authorize hooks with action
 * "dispatch"), hook calls are bounded (one per routine, side by side, each within
 * plugins.hookTimeoutMs), the whole listing is ONE authz.decision audit line, `skein routines`
 * shows the filtered list, and a fleet agent's certificate (DNS discovery reads peers' routines
 * here) is still told every routine. Regression: every authenticated caller used to be told
 * the name, function and SHA-256 of every configured routine.
 */
import { join } from 'node:path';
import type http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, request } from '../helpers/h2.ts';
import { baseConfig, DEV_CLIENT, FIXTURES, runCli, startAgent, stopAll, type StartedAgent } from '../helpers/agent.ts';

afterAll(stopAll);

const PLUGINS = join(FIXTURES, 'plugins');
type Line = Record<string, any>;

async function issue(pkiDir: string, name: string, kind: 'client' | 'agent') {
  const r = await runCli(['pki', 'issue', '--dir', pkiDir, '--name', name, '--kind', kind, ...(kind === 'agent' ? ['--host', '127.0.0.1'] : [])]);
  expect(r.code, r.stderr).toBe(0);
  return { cert: join(pkiDir, `${kind}-${name}.crt`), key: join(pkiDir, `${kind}-${name}.key`), ca: join(pkiDir, 'ca.crt') };
}

/** GET /v1/routines on `session`: the names listed and the request id. */
async function list(session: http2.ClientHttp2Session): Promise<{ names: string[]; requestId: string; body: Line }> {
  const res = await request(session, { ':method': 'GET', ':path': '/v1/routines' });
  expect(res.status).toBe(200);
  const body = JSON.parse(res.body.toString()) as Line;
  return { names: (body.routines as Line[]).map((r) => r.name as string).sort(), requestId: String(res.headers['x-request-id']), body };
}

describe('config rules: a caller allowed echo only is told echo only', () => {
  let agent: StartedAgent;
  const sessions: http2.ClientHttp2Session[] = [];

  beforeAll(async () => {
    agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1 }, authorization: { allow: [{ identities: [DEV_CLIENT], routines: ['echo'] }] } }) });
  });
  afterAll(async () => {
    for (const s of sessions) s.close();
    await agent?.stop();
  });

  it('lists echo (with its function and SHA-256) and nothing of add, fail or sleep', async () => {
    const session = connect(agent.port, agent.pki);
    sessions.push(session);
    const { names, body } = await list(session);
    expect(names).toEqual(['echo']);
    expect(body.routines[0]).toMatchObject({ name: 'echo', function: 'echo', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(JSON.stringify(body)).not.toMatch(/"add"|"fail"|"sleep"/);
  });

  it('a caller no rule allows is told nothing; the agent keeps serving the allowed one', async () => {
    const other = await issue(agent.pki.dir, 'other', 'client');
    const session = connect(agent.port, other);
    sessions.push(session);
    expect((await list(session)).names).toEqual([]);
    const mine = connect(agent.port, agent.pki);
    sessions.push(mine);
    expect((await list(mine)).names).toEqual(['echo']);
  });

  it('skein routines (the CLI) shows the filtered list, as a table and as JSON', async () => {
    const args = ['--peer', `127.0.0.1:${agent.port}`, '--cert', agent.pki.cert, '--key', agent.pki.key, '--ca', agent.pki.ca];
    const table = await runCli(['routines', ...args]);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ROUTINE +FUNCTION +SHA-256 +TIMEOUT$/);
    expect(lines.slice(1).map((l) => l.split(/ +/)[0])).toEqual(['echo']);
    const json = await runCli(['routines', '--json', ...args]);
    expect(json.code, json.stderr).toBe(0);
    expect((JSON.parse(json.stdout) as Line).routines.map((r: Line) => r.name)).toEqual(['echo']);
  });

  it('one authz.decision line per listing: what was listed, what was hidden and by which rule', async () => {
    const session = connect(agent.port, agent.pki);
    sessions.push(session);
    const { requestId } = await list(session);
    const line = await agent.waitForAudit((l) => l.event === 'authz.decision' && l.requestId === requestId);
    expect(line).toMatchObject({
      method: 'GET',
      path: '/v1/routines',
      action: 'dispatch',
      peer: DEV_CLIENT,
      outcome: 'allow',
      listed: ['echo'],
      plugins: [],
    });
    expect(line.routine).toBeUndefined();
    expect((line.hidden as Line[]).sort((a, b) => a.routine.localeCompare(b.routine))).toEqual([
      { routine: 'add', reason: 'DEFAULT_DENY', rule: 'default' },
      { routine: 'fail', reason: 'DEFAULT_DENY', rule: 'default' },
      { routine: 'sleep', reason: 'DEFAULT_DENY', rule: 'default' },
    ]);
    // Not one line per routine: the authn line and this one, nothing else for the request.
    await agent.waitForAudit((l) => l.event === 'authn.decision' && l.requestId === requestId);
    await new Promise((r) => setTimeout(r, 100));
    expect(agent.audit.filter((l) => l.requestId === requestId).map((l) => l.event)).toEqual(['authn.decision', 'authz.decision']);
    // Hiding is not refusing: no authz rejection was counted.
    const other = agent.audit.filter((l) => l.event === 'authz.decision' && l.outcome === 'deny');
    expect(other).toEqual([]);
  });

  it("a fleet agent's certificate (as DNS discovery reads a peer) is told every routine, recorded as rule fleet-agent", async () => {
    const peer = await issue(agent.pki.dir, 'peer-1', 'agent');
    const session = connect(agent.port, peer);
    sessions.push(session);
    const { names, requestId } = await list(session);
    expect(names).toEqual(['add', 'echo', 'fail', 'sleep']);
    const line = await agent.waitForAudit((l) => l.event === 'authz.decision' && l.requestId === requestId);
    expect(line).toMatchObject({ peer: 'spiffe://skein.local/agent/peer-1', outcome: 'allow', rule: 'fleet-agent', hidden: [] });
  });

  it('GET /v1/peers stays open to every authenticated caller (the fleet routing table; docs/api.md)', async () => {
    const session = connect(agent.port, await issue(agent.pki.dir, 'other2', 'client'));
    sessions.push(session);
    const res = await request(session, { ':method': 'GET', ':path': '/v1/peers' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ enabled: false, peers: [] });
  });
});

describe('plugins: a deny hides the routine; a failing hook hides every routine it was asked about, within one hook timeout', () => {
  const fix = join(FIXTURES, 'routines.py');
  const withPlugins = (enabled: unknown[]) =>
    baseConfig({
      workers: { poolSize: 1 },
      // Config rules let the dev client run everything: only the plugin can hide a routine.
      authorization: { allow: [{ identities: [DEV_CLIENT], routines: ['*'] }] },
      plugins: { dir: PLUGINS, enabled, hookTimeoutMs: 400 },
      routines: { mark: { file: fix }, mark_allowed: { file: fix, function: 'mark' } },
    });

  it('only-echo denies add, fail, sleep and mark: only echo and mark_allowed are listed', async () => {
    const agent = await startAgent({ config: withPlugins([{ name: 'only-echo', options: { echoOnly: [DEV_CLIENT] } }]) });
    const session = connect(agent.port, agent.pki);
    try {
      const { names, requestId } = await list(session);
      expect(names).toEqual(['echo', 'mark_allowed']);
      const line = await agent.waitForAudit((l) => l.event === 'authz.decision' && l.requestId === requestId);
      expect(line).toMatchObject({ outcome: 'allow', plugins: ['only-echo'] });
      expect((line.listed as string[]).sort()).toEqual(['echo', 'mark_allowed']);
      expect((line.hidden as Line[]).find((h) => h.routine === 'add')).toEqual({ routine: 'add', reason: 'ECHO_ONLY', rule: 'only-echo' });
      expect(line.hidden).toHaveLength(4);
      // And the listing matches what a dispatch meets.
      const denied = await request(session, { ':method': 'POST', ':path': '/v1/dispatch/add', 'content-type': 'application/json' }, JSON.stringify({ args: [1, 2] }));
      expect(denied.status).toBe(403);
    } finally {
      session.close();
      await agent.stop();
    }
  });

  it('a hanging hook: the list is empty after about one hookTimeoutMs (the routines are asked side by side), logged, and the agent keeps serving', async () => {
    const agent = await startAgent({ config: withPlugins([{ name: 'hangs' }]) });
    const session = connect(agent.port, agent.pki);
    try {
      const started = Date.now();
      const { names, requestId } = await list(session);
      const took = Date.now() - started;
      expect(names).toEqual([]);
      // Six routines asked one after another would take 6 × 400 ms.
      expect(took).toBeGreaterThanOrEqual(350);
      expect(took).toBeLessThan(1500);
      const line = await agent.waitForAudit((l) => l.event === 'authz.decision' && l.requestId === requestId);
      expect(line.listed).toEqual([]);
      expect((line.hidden as Line[]).every((h) => h.reason === 'PLUGIN_FAILED' && h.rule === 'hangs')).toBe(true);
      await agent.waitForLog((l) => l.msg === 'plugin hook failed; failing closed' && l.plugin === 'hangs' && l.requestId === requestId);
      const health = await request(session, { ':method': 'GET', ':path': '/healthz' });
      expect(health.status).toBe(200);
    } finally {
      session.close();
      await agent.stop();
    }
  });
});
