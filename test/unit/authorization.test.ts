/**
 * How the pipeline combines authorization decisions, one case per precedence rule: a plugin
 * deny beats everything, a plugin allow beats the config, the config's allow list beats the
 * default, the default decides last — and each decision's audit line names its rule, while
 * the caller's error names none. (End to end through the binary: test/e2e/authorization.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import type { Audit } from '../../agent/audit/index.ts';
import type { AuthorizationConfig } from '../../agent/config/schema.ts';
import { SkeinError } from '../../common/errors/index.ts';
import { createLogger } from '../../agent/log/index.ts';
import type { AuthzResult, Identity, RequestInfo } from '../../agent/plugin-host/api.ts';
import { AllowRules } from '../../agent/plugin-host/allow-rules.ts';
import { HttpTally } from '../../agent/plugin-host/http.ts';
import type { LoadedPlugin } from '../../agent/plugin-host/loader.ts';
import { AuthPipeline } from '../../agent/plugin-host/pipeline.ts';

const DEV = 'spiffe://skein.local/client/dev-client';

function plugin(name: string, result: AuthzResult | unknown): LoadedPlugin {
  return { name, version: '1', file: `${name}.ts`, sha256: '', builtin: false, hooks: { authorize: () => result as AuthzResult }, httpTally: new HttpTally(name) };
}

async function decide(plugins: LoadedPlugin[], authorization: Partial<AuthorizationConfig>, who: Partial<Identity> = {}, routine = 'add') {
  const lines: Array<Record<string, unknown>> = [];
  const audit = { record: (_e: string, f: Record<string, unknown>) => lines.push(f), reopen() {}, flush: async () => {}, close: async () => {} } as unknown as Audit;
  const pipeline = new AuthPipeline(plugins, {
    hookTimeoutMs: 100,
    requireToken: false,
    log: createLogger({ level: 'error' }),
    audit,
    authorization: { default: 'deny', allow: [], ...authorization },
  });
  const req: RequestInfo = { requestId: 'r-1', action: 'dispatch', routine, method: 'POST', path: `/v1/dispatch/${routine}`, headers: {}, remoteAddress: '127.0.0.1' };
  const identity: Identity = { peer: { id: DEV }, principals: [], claims: {}, ...who };
  let error: SkeinError | undefined;
  try {
    await pipeline.authorize(req, identity);
  } catch (err) {
    error = err as SkeinError;
  }
  return { line: lines[0]!, error };
}

const allowAll = { allow: [{ identities: ['**'], routines: ['*'] }] };

describe('authorization precedence', () => {
  it('nothing allows → DEFAULT_DENY, rule "default"', async () => {
    const { line, error } = await decide([], {});
    expect(line).toMatchObject({ outcome: 'deny', reason: 'DEFAULT_DENY', rule: 'default' });
    expect(error?.code).toBe('SKEIN_ERR_FORBIDDEN');
    expect(error?.message).toBe(`${DEV} may not run routine "add" (reason DEFAULT_DENY, request r-1)`);
  });

  it('default "allow" → allowed, rule "default"', async () => {
    expect((await decide([], { default: 'allow' })).line).toMatchObject({ outcome: 'allow', rule: 'default' });
  });

  it('the first matching allow rule beats the default; principals match too', async () => {
    const allow = [
      { identities: ['jwt:bob'], routines: ['*'] },
      { identities: ['jwt:*'], routines: ['report.*'] },
      { identities: ['jwt:alice'], routines: ['report.daily'] },
    ];
    expect((await decide([], { allow }, { peer: { id: 'anonymous' }, principals: ['jwt:alice'] }, 'report.daily')).line).toMatchObject({ outcome: 'allow', rule: 'authorization.allow[1]' });
    expect((await decide([], { allow }, { peer: { id: 'anonymous' }, principals: ['jwt:alice'] }, 'deploy')).line).toMatchObject({ outcome: 'deny', rule: 'default' });
  });

  it('a plugin allow beats the config (even default deny): rule "<plugin>:<rule>"', async () => {
    const { line } = await decide([plugin('abstains', { decision: 'abstain' }), plugin('policy', { decision: 'allow', reason: 'POLICY_ALLOW', rule: 'rules[2]' })], {});
    expect(line).toMatchObject({ outcome: 'allow', plugin: 'policy', rule: 'policy:rules[2]', reason: 'POLICY_ALLOW', plugins: ['abstains', 'policy'] });
  });

  it('a plugin deny beats a plugin allow and every allow rule; its rule and message reach the audit line only', async () => {
    const { line, error } = await decide([plugin('yes', { decision: 'allow' }), plugin('no', { decision: 'deny', reason: 'NOPE', rule: 'rules[7]', message: 'secret pattern spiffe://x/*' })], {
      ...allowAll,
      default: 'allow',
    });
    expect(line).toMatchObject({ outcome: 'deny', reason: 'NOPE', plugin: 'no', rule: 'no:rules[7]', detail: 'secret pattern spiffe://x/*' });
    expect(error?.message).toBe(`${DEV} may not run routine "add" (reason NOPE, request r-1)`);
    expect(error?.details).toEqual({ reason: 'NOPE', plugin: 'no', routine: 'add' });
  });

  it("an allow's reason is free-form, recorded as given", async () => {
    expect((await decide([plugin('keys', { decision: 'allow', reason: 'key:ci is listed' })], {})).line).toMatchObject({ outcome: 'allow', reason: 'key:ci is listed', rule: 'keys' });
  });

  it('a plugin that names no rule is recorded by its name', async () => {
    expect((await decide([plugin('hours', { decision: 'deny', reason: 'CLOSED' })], allowAll)).line).toMatchObject({ rule: 'hours', plugin: 'hours' });
  });

  it.each([
    ['a rule with a space', { decision: 'deny', reason: 'X', rule: 'rules 1' }],
    ['a rule that is not a string', { decision: 'allow', rule: 3 }],
    ['a deny message that is not a string', { decision: 'deny', reason: 'X', message: { why: 1 } }],
  ])('%s fails closed (PLUGIN_FAILED), whatever the config allows', async (_name, result) => {
    const { line, error } = await decide([plugin('odd', result)], { ...allowAll, default: 'allow' });
    expect(line).toMatchObject({ outcome: 'deny', reason: 'PLUGIN_FAILED', plugin: 'odd', rule: 'odd' });
    expect(error?.details.reason).toBe('PLUGIN_FAILED');
  });
});

describe('AllowRules', () => {
  it('names the malformed pattern by its key', () => {
    expect(() => new AllowRules([{ identities: ['spiffe://td/**/x'], routines: ['a'] }])).toThrow(
      /config key "authorization.allow\[0\].identities\[0\]": "spiffe:\/\/td\/\*\*\/x" "\*\*" is only allowed as the last path segment/,
    );
    expect(() => new AllowRules([{ identities: ['a'], routines: ['a b'] }])).toThrow(/"authorization.allow\[0\].routines\[0\]"/);
    expect(() => new AllowRules([{ identities: ['a'], routines: [] }])).toThrow(/"authorization.allow\[0\].routines": must list at least one pattern/);
  });
});

describe('closing the pipeline (agent/lifecycle)', () => {
  const closing = (name: string, calls: string[], hooks: Partial<LoadedPlugin['hooks']> = {}): LoadedPlugin => ({
    name,
    version: '1',
    file: `${name}.ts`,
    sha256: '',
    builtin: false,
    httpTally: new HttpTally(name),
    hooks: { authorize: () => ({ decision: 'abstain' }), close: () => void calls.push(name), ...hooks },
  });
  const pipelineOf = (plugins: LoadedPlugin[], log = createLogger({ level: 'error' })) =>
    new AuthPipeline(plugins, { hookTimeoutMs: 100, requireToken: false, log, authorization: { default: 'deny', allow: [] } });

  it('close() and destroy(), twice and concurrently, run each close hook once — a plugin with only a close hook too', async () => {
    const calls: string[] = [];
    const onlyClose: LoadedPlugin = {
      name: 'only-close',
      version: '1',
      file: 'only-close.ts',
      sha256: '',
      builtin: false,
      httpTally: new HttpTally('only-close'),
      hooks: { close: () => void calls.push('only-close') },
    };
    const pipeline = pipelineOf([closing('a', calls), onlyClose, closing('b', calls)]);
    await Promise.all([pipeline.close(), pipeline.close(), pipeline.destroy()]);
    await pipeline.close();
    expect(calls).toEqual(['a', 'only-close', 'b']);
  });

  it('a close hook that hangs is given plugins.hookTimeoutMs, logged with the plugin name, and the others still close', async () => {
    const calls: string[] = [];
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger({ level: 'warn', write: (l) => lines.push(JSON.parse(l)) });
    const pipeline = pipelineOf([closing('hangs', calls, { close: () => new Promise<void>(() => {}) }), closing('after', calls)], log);
    const started = Date.now();
    await pipeline.close();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(calls).toEqual(['after']);
    expect(lines).toEqual([expect.objectContaining({ msg: 'plugin close hook failed', plugin: 'hangs', error: 'no answer within plugins.hookTimeoutMs (100 ms)' })]);
  });
});
