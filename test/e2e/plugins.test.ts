/**
 * Plugins through the binary, loaded from a folder on disk: authentication and
 * authorization outcomes, fail-closed hooks, load failures that stop start-up, signatures,
 * and one-way TLS with a token.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateKeyPair, formatPublicKey, signFile } from '../../signing/index.ts';
import { connect, postJson } from '../helpers/h2.ts';
import { baseConfig, failure, FIXTURES, startAgent, startMustFail, stopAll, tempDir } from '../helpers/agent.ts';

const PLUGINS = join(FIXTURES, 'plugins');
const FIX = join(FIXTURES, 'routines.py');
const DEV_CLIENT = 'spiffe://skein.local/client/dev-client';

afterAll(stopAll);

function withPlugins(enabled: unknown[], plugins: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return baseConfig({
    workers: { poolSize: 1 },
    plugins: { dir: PLUGINS, enabled, hookTimeoutMs: 300, ...plugins },
    routines: { mark: { file: FIX }, mark_allowed: { file: FIX, function: 'mark' } },
    ...extra,
  });
}

describe('authorization', () => {
  it('an identity allowed echo but not add gets 403 on add, and the denied routine never runs', async () => {
    const agent = await startAgent({ config: withPlugins([{ name: 'only-echo', options: { echoOnly: [DEV_CLIENT] } }]) });
    const client = agent.client();
    try {
      expect(await client.dispatch('echo', { args: ['ok'] })).toBe('ok');
      const denied = await failure(client.dispatch('add', { args: [1, 2] }));
      expect(denied.code).toBe('SKEIN_ERR_FORBIDDEN');
      expect(denied.details).toMatchObject({ status: 403, reason: 'ECHO_ONLY', plugin: 'only-echo', routine: 'add' });
      // The plugin's message is for the audit line; the caller gets the reason and the request id.
      expect(denied.message).toBe(`${DEV_CLIENT} may not run routine "add" (reason ECHO_ONLY, request ${denied.details.requestId})`);
      // Side effect: an allowed call leaves a mark in the log, a denied call none.
      expect(await client.dispatch('mark_allowed', { args: ['allowed-ran'] })).toBe('allowed-ran');
      await failure(client.dispatch('mark', { args: ['denied-ran'] }));
      await agent.waitForLog((l) => String(l.line) === 'MARK:allowed-ran');
      await new Promise((r) => setTimeout(r, 300));
      expect(agent.logs.some((l) => String(l.line).includes('denied-ran'))).toBe(false);
      // Every decision is a line on the audit stream (stderr by default; docs/audit.md).
      await agent.waitForAudit((l) => l.event === 'authz.decision' && l.routine === 'mark');
      const audit = agent.audit.filter((l) => l.event === 'authz.decision');
      expect(audit.find((l) => l.routine === 'add')).toMatchObject({
        outcome: 'deny',
        plugin: 'only-echo',
        rule: 'only-echo',
        reason: 'ECHO_ONLY',
        detail: 'this identity may only run echo',
        peer: DEV_CLIENT,
      });
      expect(audit.find((l) => l.routine === 'echo')).toMatchObject({ outcome: 'allow', plugin: 'only-echo', rule: 'only-echo', plugins: ['only-echo'], peer: DEV_CLIENT });
      expect(audit.every((l) => typeof l.requestId === 'string')).toBe(true);
    } finally {
      await client.close();
      await agent.stop();
    }
  });
});

describe('hooks fail closed', () => {
  it('a throwing authenticate hook → 401 PLUGIN_FAILED, logged with the plugin name', async () => {
    const agent = await startAgent({ config: withPlugins([{ name: 'throws' }]) });
    const session = connect(agent.port, agent.pki);
    try {
      const r = await postJson(session, 'echo', { args: [1] });
      expect(r.status).toBe(401);
      expect(r.json).toMatchObject({ code: 'SKEIN_ERR_UNAUTHENTICATED', meta: { reason: 'PLUGIN_FAILED', plugin: 'throws' } });
      await agent.waitForLog((l) => l.msg === 'plugin hook failed; failing closed' && l.plugin === 'throws' && l.error === 'boom from a plugin');
    } finally {
      session.close();
      await agent.stop();
    }
  });

  it('a hanging authorize hook → 403 PLUGIN_FAILED after plugins.hookTimeoutMs; a junk result too', async () => {
    const agent = await startAgent({ config: withPlugins([{ name: 'hangs' }]) });
    const session = connect(agent.port, agent.pki);
    try {
      const started = Date.now();
      const r = await postJson(session, 'echo', { args: [1] });
      expect(Date.now() - started).toBeLessThan(2000);
      expect(r.status).toBe(403);
      expect(r.json).toMatchObject({ code: 'SKEIN_ERR_FORBIDDEN', meta: { reason: 'PLUGIN_FAILED', plugin: 'hangs' } });
    } finally {
      session.close();
      await agent.stop();
    }
    const junk = await startAgent({ config: withPlugins([{ name: 'junk-result' }]) });
    const s2 = connect(junk.port, junk.pki);
    try {
      const r = await postJson(s2, 'echo', { args: [1] });
      expect(r.json).toMatchObject({ code: 'SKEIN_ERR_FORBIDDEN', meta: { reason: 'PLUGIN_FAILED', plugin: 'junk-result' } });
    } finally {
      s2.close();
      await junk.stop();
    }
  });
});

describe('load failures stop start-up (exit 2) naming the plugin', () => {
  it.each([
    ['a syntax error', [{ name: 'syntax-error' }], /SKEIN_ERR_PLUGIN_LOAD\]: plugin "syntax-error": .*failed to load/],
    ['no default export', [{ name: 'no-default' }], /plugin "no-default": has no default export/],
    ['a hook that is not a function', [{ name: 'hook-not-function' }], /plugin "hook-not-function": hook "authorize" is not a function/],
    ['bad options', [{ name: 'test-key', options: { keys: 5 } }], /SKEIN_ERR_CONFIG\]: plugin "test-key": option "keys": must be an object/],
    ['a missing file', [{ name: 'nope' }], /plugin "nope": no file .*nope\{\.ts,\.mjs,\.js\}/],
  ])('%s', async (_name, enabled, message) => {
    expect(await startMustFail(withPlugins(enabled))).toMatch(message);
  });
});

describe('signed plugins (plugins.requireSignature)', () => {
  function signedDir() {
    const dir = tempDir();
    const plugins = join(dir, 'plugins');
    mkdirSync(plugins);
    copyFileSync(join(PLUGINS, 'only-echo.ts'), join(plugins, 'only-echo.ts'));
    const key = generateKeyPair();
    signFile(join(plugins, 'only-echo.ts'), { name: 'only-echo', version: '1.0.0' }, key);
    return { plugins, key };
  }

  it('a plugin signed by a trusted key loads; its SHA-256 is logged', async () => {
    const { plugins, key } = signedDir();
    const agent = await startAgent({ config: withPlugins([{ name: 'only-echo' }], { dir: plugins, requireSignature: true, trustedKeys: [formatPublicKey(key.publicKey)] }) });
    try {
      const line = await agent.waitForLog((l) => l.msg === 'plugin loaded');
      expect(line).toMatchObject({ plugin: 'only-echo', version: '1.0.0', signed: true, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
      // The audit stream names the key that signed it.
      const audit = await agent.waitForAudit((l) => l.event === 'plugin.loaded');
      expect(audit).toMatchObject({ plugin: 'only-echo', signed: true, sha256: line.sha256, keyId: key.keyId });
    } finally {
      await agent.stop();
    }
  });

  it('unsigned, tampered or signed by an untrusted key: start-up stops naming the plugin', async () => {
    const { plugins, key } = signedDir();
    const trusted = [formatPublicKey(key.publicKey)];
    expect(await startMustFail(withPlugins([{ name: 'only-echo' }], { dir: plugins, requireSignature: true, trustedKeys: [formatPublicKey(generateKeyPair().publicKey)] }))).toMatch(
      /plugin "only-echo": signature check failed \(SKEIN_ERR_SIG_UNKNOWN_KEY\)/,
    );
    writeFileSync(join(plugins, 'only-echo.ts'), `${readFileSync(join(plugins, 'only-echo.ts'), 'utf8')}\n// tampered\n`);
    expect(await startMustFail(withPlugins([{ name: 'only-echo' }], { dir: plugins, requireSignature: true, trustedKeys: trusted }))).toMatch(
      /plugin "only-echo": signature check failed \(SKEIN_ERR_SIG_TAMPERED\)/,
    );
    copyFileSync(join(PLUGINS, 'throws.ts'), join(plugins, 'throws.ts'));
    expect(await startMustFail(withPlugins([{ name: 'throws' }], { dir: plugins, requireSignature: true, trustedKeys: trusted }))).toMatch(
      /plugin "throws": signature check failed \(SKEIN_ERR_SIG_MISSING\)/,
    );
  });
});

describe('tokens with and without client certificates', () => {
  const keyPlugin = [{ name: 'test-key', options: { keys: { ops: 's3cret' } } }];

  it('one-way TLS + token works without a client certificate; no token → 401', async () => {
    // The token's principal is allowed next to the certificate (authorization is deny by default).
    const allow = { authorization: { allow: [{ identities: [DEV_CLIENT, 'key:ops'], routines: ['*'] }] } };
    const agent = await startAgent({ config: withPlugins(keyPlugin, {}, { tls: { clientCerts: 'optional' }, ...allow }) });
    const anonymous = agent.client({ cert: undefined, key: undefined });
    try {
      expect(await anonymous.dispatch('echo', { args: ['hi'], headers: { 'x-test-key': 's3cret' } })).toBe('hi');
      const none = await failure(anonymous.dispatch('echo', { args: ['hi'] }));
      expect(none.code).toBe('SKEIN_ERR_UNAUTHENTICATED');
      expect(none.details.reason).toBe('CREDENTIAL_REQUIRED');
      const bad = await failure(anonymous.dispatch('echo', { args: ['hi'], headers: { 'x-test-key': 'wrong' } }));
      expect(bad.details).toMatchObject({ status: 401, reason: 'BAD_TEST_KEY', plugin: 'test-key' });
      // A client certificate still works on its own.
      const mtls = agent.client();
      expect(await mtls.dispatch('echo', { args: ['cert'] })).toBe('cert');
      await mtls.close();
    } finally {
      await anonymous.close();
      await agent.stop();
    }
  });

  it('mTLS + plugins.requireToken requires both', async () => {
    const agent = await startAgent({ config: withPlugins(keyPlugin, { requireToken: true }) });
    const client = agent.client();
    const anonymous = agent.client({ cert: undefined, key: undefined });
    try {
      expect(await client.dispatch('echo', { args: [1], headers: { 'x-test-key': 's3cret' } })).toBe(1);
      const noToken = await failure(client.dispatch('echo', { args: [1] }));
      expect(noToken.details.reason).toBe('TOKEN_REQUIRED');
      const noCert = await failure(anonymous.dispatch('echo', { args: [1], headers: { 'x-test-key': 's3cret' } }));
      expect(['SKEIN_ERR_TLS', 'SKEIN_ERR_TRANSPORT']).toContain(noCert.code);
    } finally {
      await client.close();
      await anonymous.destroy();
      await agent.stop();
    }
  });

  it('the four outcomes are distinct: 401, 403, 422 and a transport error', async () => {
    const agent = await startAgent({ config: withPlugins([...keyPlugin, { name: 'only-echo', options: { echoOnly: ['key:ops'] } }], {}, { tls: { clientCerts: 'optional' } }) });
    const anonymous = agent.client({ cert: undefined, key: undefined });
    try {
      const unauthenticated = await failure(anonymous.dispatch('fail', { headers: { 'x-test-key': 'nope' } }));
      const forbidden = await failure(anonymous.dispatch('fail', { headers: { 'x-test-key': 's3cret' } }));
      const mtls = agent.client();
      const raised = await failure(mtls.dispatch('fail'));
      await mtls.close();
      await agent.stop();
      const transport = await failure(anonymous.dispatch('echo', { headers: { 'x-test-key': 's3cret' } }));
      expect([unauthenticated.code, forbidden.code, raised.code]).toEqual(['SKEIN_ERR_UNAUTHENTICATED', 'SKEIN_ERR_FORBIDDEN', 'SKEIN_ERR_ROUTINE_RAISED']);
      expect([unauthenticated.details.status, forbidden.details.status, raised.details.status]).toEqual([401, 403, 422]);
      expect(transport.code).toBe('SKEIN_ERR_TRANSPORT');
    } finally {
      await anonymous.destroy();
    }
  });
});
