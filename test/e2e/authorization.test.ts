/**
 * Authorization through the compiled binary: deny by default (authorization.default), the
 * config's allow list (authorization.allow) after the plugins' hooks, the quick-start config
 * letting its dev client run its routines and nobody else, `default: "allow"` working and
 * warned about, a 403 that names only the caller, the reason code and the request id, and an
 * authz.decision audit line that names the rule that decided. (security.strict refusing
 * "allow" off loopback is in strict.test.ts.)
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, postJson } from '../helpers/h2.ts';
import { baseConfig, DEV_CLIENT, EXAMPLES, failure, ROOT, runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

afterAll(stopAll);

type Line = Record<string, any>;
const OTHER = 'spiffe://skein.local/client/other';

/** Issues a second client certificate (another SPIFFE ID) from the agent's development CA. */
async function issueClient(pkiDir: string, name: string) {
  const r = await runCli(['pki', 'issue', '--dir', pkiDir, '--name', name, '--kind', 'client']);
  expect(r.code, r.stderr).toBe(0);
  return { cert: join(pkiDir, `client-${name}.crt`), key: join(pkiDir, `client-${name}.key`), ca: join(pkiDir, 'ca.crt') };
}

/** What a 403 body must never show: rule names, patterns, identities other than the caller's. */
function expectNoPolicy(text: string, caller: string) {
  expect(text).not.toMatch(/rules\[|authorization\.allow|\*|"default"|default:/);
  for (const id of text.match(/spiffe:\/\/[^\s"]+/g) ?? []) expect(id).toBe(caller);
}

describe('no plugin, no allow rule: every call is denied by default', () => {
  let agent: StartedAgent;
  let session: http2.ClientHttp2Session;

  beforeAll(async () => {
    agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1 }, authorization: { allow: [] } }) });
    session = connect(agent.port, agent.pki);
  });
  afterAll(async () => {
    session?.close();
    await agent?.stop();
  });

  it('403 DEFAULT_DENY with a generic message, and an audit line with rule "default"', async () => {
    const res = await postJson(session, 'add', { args: [2, 3] });
    const requestId = String(res.headers['x-request-id']);
    expect(res.status).toBe(403);
    expect(res.json).toEqual({
      code: 'SKEIN_ERR_FORBIDDEN',
      message: `${DEV_CLIENT} may not run routine "add" (reason DEFAULT_DENY, request ${requestId})`,
      requestId,
      meta: { peer: DEV_CLIENT, reason: 'DEFAULT_DENY', routine: 'add' },
    });
    expectNoPolicy(res.body.toString(), DEV_CLIENT);
    const line = await agent.waitForAudit((l) => l.event === 'authz.decision' && l.requestId === requestId);
    expect(line).toMatchObject({ outcome: 'deny', reason: 'DEFAULT_DENY', rule: 'default', peer: DEV_CLIENT, routine: 'add' });
    expect(line.plugin).toBeUndefined();
  });

  it('the agent keeps serving: the routine list still answers, naming nothing the caller may not run', async () => {
    expect(await agent.client().routines()).toEqual([]);
  });
});

describe("the quick-start config (the repository's agent.config.json) says what it allows", () => {
  let dir: string;
  let port: number;
  let agent: StartedAgent;
  const auditFile = () => join(dir, '.skein', 'audit.jsonl');
  const readAudit = (): Line[] =>
    existsSync(auditFile())
      ? readFileSync(auditFile(), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Line)
      : [];
  async function waitForAudit(pred: (l: Line) => boolean): Promise<Line> {
    for (const until = Date.now() + 5000; ; await new Promise((r) => setTimeout(r, 25))) {
      const hit = readAudit().find(pred);
      if (hit) return hit;
      if (Date.now() > until) throw new Error(`no audit line matched; file:\n${existsSync(auditFile()) ? readFileSync(auditFile(), 'utf8') : '(missing)'}`);
    }
  }

  beforeAll(async () => {
    dir = tempDir();
    mkdirSync(join(dir, 'routines'));
    copyFileSync(EXAMPLES, join(dir, 'routines', 'examples.py'));
    const config = JSON.parse(readFileSync(join(ROOT, 'agent.config.json'), 'utf8')) as Record<string, unknown>;
    // The file as shipped; the environment only moves it to a free port and JSON logs (the harness reads them).
    agent = await startAgent({ dir, config, env: { SKEIN_LISTEN: '127.0.0.1:0', SKEIN_LOG_FORMAT: 'json' } });
    port = agent.port;
  });
  afterAll(() => agent?.stop());

  it('the dev client runs add: skein dispatch add --args [2,3] prints 5', async () => {
    const r = await runCli(['dispatch', 'add', '--args', '[2,3]', '--peer', `127.0.0.1:${port}`, '--json'], { cwd: dir });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const { result, requestId } = JSON.parse(r.stdout) as { result: unknown; requestId: string };
    expect(result).toBe(5);
    expect(await waitForAudit((l) => l.event === 'authz.decision' && l.requestId === requestId)).toMatchObject({ outcome: 'allow', rule: 'authorization.allow[0]', peer: DEV_CLIENT });
  });

  it('another client of the same CA gets 403: the CLI shows the reason and the request, not the policy', async () => {
    const other = await issueClient(join(dir, '.skein', 'pki'), 'other');
    const r = await runCli(['dispatch', 'add', '--args', '[2,3]', '--peer', `127.0.0.1:${port}`, '--cert', other.cert, '--key', other.key, '--ca', other.ca], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    const m = /^error \[SKEIN_ERR_FORBIDDEN\]: rejected by the server: spiffe:\/\/skein\.local\/client\/other may not run routine "add" \(reason DEFAULT_DENY, request ([0-9a-f-]{36})\)\n$/.exec(
      r.stderr,
    );
    expect(m, r.stderr).not.toBeNull();
    expectNoPolicy(r.stderr, OTHER);
    expect(await waitForAudit((l) => l.event === 'authz.decision' && l.requestId === m![1])).toMatchObject({ outcome: 'deny', reason: 'DEFAULT_DENY', rule: 'default', peer: OTHER });
  });
});

describe('authorization.default "allow"', () => {
  it('lets a caller no rule covers run the routine, says so at start naming the key, and audits rule "default"', async () => {
    const agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1 }, authorization: { default: 'allow', allow: [] } }) });
    try {
      const warning = await agent.waitForLog((l) => l.level === 'warn' && l.key === 'authorization.default');
      expect(warning.msg).toMatch(/^authorization.default is "allow": every authenticated caller may run every routine that no plugin denies/);
      const { result, requestId } = await agent.client().dispatchDetailed('add', { args: [2, 3] });
      expect(result).toBe(5);
      expect(await agent.waitForAudit((l) => l.event === 'authz.decision' && l.requestId === requestId)).toMatchObject({ outcome: 'allow', rule: 'default', plugins: [] });
    } finally {
      await agent.stop();
    }
  });
});

describe('plugins decide first, then the allow list, then the default', () => {
  let agent: StartedAgent;
  let session: http2.ClientHttp2Session;

  beforeAll(async () => {
    agent = await startAgent({
      config: baseConfig({
        workers: { poolSize: 1 },
        plugins: {
          dir: join(ROOT, 'plugins'),
          enabled: [
            {
              name: 'routine-policy',
              options: {
                rules: [
                  { effect: 'allow', identities: [DEV_CLIENT], routines: ['add'] },
                  { effect: 'deny', identities: ['spiffe://skein.local/client/*'], routines: ['fail'] },
                  { effect: 'allow', identities: ['spiffe://skein.local/client/ops'], routines: ['*'] },
                ],
              },
            },
          ],
        },
        // The config allows fail too: the plugin's deny must still win.
        authorization: { allow: [{ identities: [DEV_CLIENT], routines: ['echo', 'fail'] }] },
      }),
    });
    session = connect(agent.port, agent.pki);
  });
  afterAll(async () => {
    session?.close();
    await agent?.stop();
  });

  const decision = (requestId: string) => agent.waitForAudit((l) => l.event === 'authz.decision' && l.requestId === requestId);

  it('a plugin allow allows, audited as the plugin and its rule', async () => {
    const res = await postJson(session, 'add', { args: [1, 2] });
    expect(res.status).toBe(200);
    expect(await decision(String(res.headers['x-request-id']))).toMatchObject({
      outcome: 'allow',
      plugin: 'routine-policy',
      rule: 'routine-policy:rules[0]',
      reason: 'POLICY_ALLOW',
      plugins: ['routine-policy'],
    });
  });

  it('a plugin deny wins over an allow rule; the caller sees POLICY_DENY and nothing of the rule, the audit line has it all', async () => {
    const res = await postJson(session, 'fail', { args: ['x'] });
    const requestId = String(res.headers['x-request-id']);
    expect(res.status).toBe(403);
    expect(res.json).toEqual({
      code: 'SKEIN_ERR_FORBIDDEN',
      message: `${DEV_CLIENT} may not run routine "fail" (reason POLICY_DENY, request ${requestId})`,
      requestId,
      meta: { peer: DEV_CLIENT, reason: 'POLICY_DENY', plugin: 'routine-policy', routine: 'fail' },
    });
    expectNoPolicy(res.body.toString(), DEV_CLIENT);
    const line = await decision(requestId);
    expect(line).toMatchObject({ outcome: 'deny', reason: 'POLICY_DENY', plugin: 'routine-policy', rule: 'routine-policy:rules[1]' });
    expect(line.detail).toBe('denied by rules[1] (identity "spiffe://skein.local/client/*", routine "fail")');
  });

  it('when the plugin abstains, the first matching allow rule allows', async () => {
    const res = await postJson(session, 'echo', { args: ['hi'] });
    expect(res.status).toBe(200);
    const line = await decision(String(res.headers['x-request-id']));
    expect(line).toMatchObject({ outcome: 'allow', rule: 'authorization.allow[0]', plugins: ['routine-policy'] });
    expect(line.plugin).toBeUndefined();
  });

  it('when nothing allows, the default denies', async () => {
    const err = await failure(agent.client().dispatch('sleep', { args: [0] }));
    expect(err.code).toBe('SKEIN_ERR_FORBIDDEN');
    expect(err.details).toMatchObject({ status: 403, reason: 'DEFAULT_DENY', routine: 'sleep' });
    expect(err.details.plugin).toBeUndefined();
    expect(await decision(String(err.details.requestId))).toMatchObject({ outcome: 'deny', reason: 'DEFAULT_DENY', rule: 'default' });
  });

  it('another identity the plugin allows runs anything; one nothing allows gets 403', async () => {
    const ops = await issueClient(agent.pki.dir, 'ops');
    const opsClient = agent.client({ cert: readFileSync(ops.cert), key: readFileSync(ops.key) });
    expect(await opsClient.dispatch('sleep', { args: [0] })).toBe(0);
    await opsClient.close();
    const other = await issueClient(agent.pki.dir, 'other');
    const otherClient = agent.client({ cert: readFileSync(other.cert), key: readFileSync(other.key) });
    const err = await failure(otherClient.dispatch('echo', { args: ['hi'] }));
    await otherClient.close();
    expect(err.details).toMatchObject({ status: 403, reason: 'DEFAULT_DENY' });
    expectNoPolicy(err.message, OTHER);
  });
});

describe('authorization.allow is checked and reloadable', () => {
  it('a malformed pattern is a config error naming its key (skein validate, exit 2)', async () => {
    const path = join(tempDir(), 'agent.config.json');
    writeFileSync(
      path,
      JSON.stringify(
        baseConfig({
          authorization: {
            allow: [
              { identities: [DEV_CLIENT], routines: ['add'] },
              { identities: ['jwt:**'], routines: ['add'] },
            ],
          },
        }),
      ),
      { mode: 0o600 },
    );
    const r = await runCli(['validate', '--config', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`error [SKEIN_ERR_CONFIG]: config key "authorization.allow[1].identities[0]": "jwt:**" "**" is only allowed alone or as the last segment of a spiffe:// pattern\n`);
    writeFileSync(path, JSON.stringify(baseConfig({ authorization: { allow: [{ identities: [], routines: ['add'] }] } })), { mode: 0o600 });
    expect((await runCli(['validate', '--config', path])).stderr).toMatch(/config key "authorization.allow\[0\].identities": must list at least one pattern/);
  });

  it('SIGHUP applies a new allow list to the next call', async () => {
    const agent = await startAgent({ config: baseConfig({ workers: { poolSize: 1 }, authorization: { allow: [] } }) });
    try {
      const client = agent.client();
      expect((await failure(client.dispatch('add', { args: [1, 1] }))).details.reason).toBe('DEFAULT_DENY');
      writeFileSync(agent.configPath, JSON.stringify(baseConfig({ workers: { poolSize: 1 }, authorization: { allow: [{ identities: ['spiffe://skein.local/client/*'], routines: ['add'] }] } })), {
        mode: 0o600,
      });
      agent.proc.kill('SIGHUP');
      const reloaded = await agent.waitForLog((l) => l.msg === 'config reloaded');
      expect(reloaded.applied).toEqual(['authorization.allow']);
      expect(await client.dispatch('add', { args: [1, 1] })).toBe(2);
      await client.close();
    } finally {
      await agent.stop();
    }
  });
});
