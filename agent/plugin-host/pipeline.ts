/**
 * Authentication then authorization, before a routine is queued.
 *
 *  - Every authenticate hook runs, in plugins.enabled order: `skip` (no credential of
 *    mine), `authenticated` (adds a principal and its claims) or `rejected` (401 at once).
 *  - A caller with neither a valid client certificate nor a principal gets 401; with
 *    plugins.requireToken a principal is required on top of the certificate.
 *  - Every authorize hook then sees the identity; the first deny wins (403, the routine is
 *    never run), and otherwise the first allow allows. When every hook abstains (or none is
 *    loaded) the first matching authorization.allow rule allows; with none,
 *    authorization.default decides ("deny" unless configured): nothing is allowed that no
 *    one allowed.
 *  - A hook that throws, returns something invalid or exceeds plugins.hookTimeoutMs fails
 *    closed with reason PLUGIN_FAILED, logged with the plugin's name.
 * close() and destroy() (agent/lifecycle) run every plugin's close hook exactly once, however
 * often and concurrently they are called; a pipeline holds no calls of its own to drain.
 * Every decision — plain mTLS included — is one line on the audit stream (authn.decision,
 * authz.decision; docs/audit.md), with the request id; an authz.decision names the rule that
 * decided. Listing the routines a caller may run (GET /v1/routines) asks about each routine
 * and records one line for all of them. A 403 tells the caller only the reason code and the request id: rules, patterns
 * and plugin messages would describe the policy, so they go to the audit line alone.
 */
import type { Audit } from '../audit/index.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { Logger } from '../log/index.ts';
import type { AuthorizationConfig } from '../config/schema.ts';
import { AllowRules } from './allow-rules.ts';
import type { AuthnRequest, AuthnResult, AuthzResult, Identity, PeerInfo, RequestInfo } from './api.ts';
import { closePlugins, type LoadedPlugin } from './loader.ts';
import { released, type Component } from '../lifecycle/index.ts';
import type { AuthRecorder, PluginHttpRecorder } from '../metrics/index.ts';

export interface PipelineOptions {
  hookTimeoutMs: number;
  requireToken: boolean;
  log: Logger;
  /** Counts every rejection (authn) and denial (authz) by reason, and the plugins' ctx.http requests. */
  metrics?: AuthRecorder & Partial<PluginHttpRecorder>;
  /** Records every authentication and authorization decision. */
  audit?: Audit;
  /** What the config allows when no plugin decides (authorization.allow, authorization.default). */
  authorization: AuthorizationConfig;
}

const REASON = /^[A-Z][A-Z0-9_]{0,63}$/;
/** A plugin's rule name ("rules[3]"): printable ASCII without spaces, so audit lines stay greppable. */
const RULE = /^[\x21-\x7e]{1,128}$/;

/** What decided an authorization: a plugin (and its rule), a config allow rule, or the default. */
interface Decider {
  /** "<plugin>:<rule>" or "<plugin>", "authorization.allow[i]", or "default". */
  rule: string;
  plugin?: string;
  /** The plugin's message: for the audit line only. */
  detail?: string;
}

export class AuthPipeline implements Component {
  #authn: LoadedPlugin[];
  #authz: LoadedPlugin[];
  /** Names of the authorize plugins, consulted on every allow (recorded on the audit line). */
  #authzNames: string[];
  #allowRules: AllowRules;
  #opts: PipelineOptions;
  #life: Component;

  constructor(plugins: LoadedPlugin[], opts: PipelineOptions) {
    this.#life = released(() => closePlugins(plugins, opts.hookTimeoutMs, opts.log));
    this.#authn = plugins.filter((p) => p.hooks.authenticate);
    this.#authz = plugins.filter((p) => p.hooks.authorize);
    this.#authzNames = this.#authz.map((p) => p.name);
    this.#allowRules = new AllowRules(opts.authorization.allow);
    this.#opts = opts;
    // The plugins' outbound requests (setup's included) are counted from here on.
    const recorder = opts.metrics;
    if (recorder?.pluginHttpRequest) for (const p of plugins) p.httpTally.bind(recorder as PluginHttpRecorder);
  }

  /** Authenticates the request; throws 401 SkeinErrors. */
  async authenticate(req: RequestInfo, peer: PeerInfo & { refused?: { reason: string; message: string } }): Promise<Identity> {
    // A certificate that identifies no one (agent/server/identity.ts) never reaches a plugin.
    if (peer.refused) this.#reject(req, peer, peer.refused.reason, undefined, peer.refused.message);
    const identity: Identity = { peer, principals: [], claims: {} };
    if (this.#authn.length) {
      const authnReq: AuthnRequest = { ...req, peer };
      for (const plugin of this.#authn) {
        const result = await this.#call(plugin, 'authenticate', authnReq, 'UNAUTHENTICATED', req, peer);
        const r = checkAuthn(result);
        if (!r) this.#reject(req, peer, 'PLUGIN_FAILED', plugin.name, `plugin "${plugin.name}" returned an invalid authentication result`);
        else if (r.outcome === 'rejected') this.#reject(req, peer, r.reason, plugin.name, r.message ?? `credential refused by plugin "${plugin.name}"`);
        else if (r.outcome === 'authenticated') {
          identity.principals.push(r.identity);
          if (r.claims) identity.claims[plugin.name] = r.claims;
        }
      }
    }
    if (peer.id === 'anonymous' && identity.principals.length === 0) this.#reject(req, peer, 'CREDENTIAL_REQUIRED', undefined, 'a client certificate or a token is required');
    if (this.#opts.requireToken && identity.principals.length === 0)
      this.#reject(req, peer, 'TOKEN_REQUIRED', undefined, 'a token is required on top of the client certificate (plugins.requireToken)');
    // "certificate": the mTLS client certificate alone; "token": a plugin authenticated a principal.
    this.#opts.audit?.record('authn.decision', { ...this.#common(req, peer, identity.principals), outcome: 'allow', via: identity.principals.length ? 'token' : 'certificate' });
    return identity;
  }

  /** Authorizes the call of `req.routine`; throws a 403 SkeinError unless something allows it. */
  async authorize(req: RequestInfo, identity: Identity): Promise<void> {
    const d = await this.#decide(req, identity);
    if (d.deny) this.#deny(req, identity, d.deny, d.by);
    this.#opts.audit?.record('authz.decision', { ...this.#common(req, identity.peer, identity.principals), outcome: 'allow', ...d.by, plugins: this.#authzNames });
  }

  /**
   * Which of `routines` the caller may run (`req` carries the action asked about, `dispatch`):
   * each routine decided exactly as authorize() decides it — every authorize hook once per
   * routine (each within plugins.hookTimeoutMs), the routines side by side — and a hook that
   * fails hides its routine (fails closed). Never throws. Unlike authorize(), the whole
   * question is ONE authz.decision line, naming what was listed and what was hidden by which
   * rule (docs/audit.md), and nothing counts as a denial: no request was refused. With
   * `fleetAgent` no hook is asked and every routine is listed (rule "fleet-agent").
   */
  async allowedRoutines(req: RequestInfo, identity: Identity, routines: readonly string[], opts: { fleetAgent?: boolean } = {}): Promise<string[]> {
    if (opts.fleetAgent) {
      // A fleet agent's certificate (the server decides: agent/server/app.ts) is told every
      // routine, as GET /v1/routines always told it: DNS discovery reads a peer's routines so.
      this.#opts.audit?.record('authz.decision', { ...this.#common(req, identity.peer, identity.principals), outcome: 'allow', rule: 'fleet-agent', listed: routines, hidden: [] });
      return [...routines];
    }
    const decisions = await Promise.all(routines.map((routine) => this.#decide({ ...req, routine }, identity)));
    const listed: string[] = [];
    const hidden: Array<{ routine: string; reason: string; rule: string }> = [];
    decisions.forEach((d, i) => {
      const routine = routines[i]!;
      if (d.deny) hidden.push({ routine, reason: d.deny, rule: d.by.rule });
      else listed.push(routine);
    });
    this.#opts.audit?.record('authz.decision', { ...this.#common(req, identity.peer, identity.principals), outcome: 'allow', listed, hidden, plugins: this.#authzNames });
    return listed;
  }

  /**
   * What the authorize hooks, then the config's rules and default, say about `req`: the first
   * deny wins; otherwise the first allow, else the first matching authorization.allow rule,
   * else authorization.default. A hook that fails or answers nonsense denies (PLUGIN_FAILED).
   */
  async #decide(req: RequestInfo, identity: Identity): Promise<{ deny?: undefined; by: Decider & { reason?: string } } | { deny: string; by: Decider }> {
    let allowedBy: (Decider & { reason?: string }) | undefined;
    for (const plugin of this.#authz) {
      const called = await this.#invoke(plugin, 'authorize', { ...req, identity }, req);
      if (!called.ok) return { deny: 'PLUGIN_FAILED', by: { rule: plugin.name, plugin: plugin.name, detail: called.message } };
      const r = checkAuthz(called.value);
      if (!r) return { deny: 'PLUGIN_FAILED', by: { rule: plugin.name, plugin: plugin.name, detail: `plugin "${plugin.name}" returned an invalid authorization result` } };
      if (r.decision === 'deny') return { deny: r.reason, by: { rule: ruleOf(plugin.name, r.rule), plugin: plugin.name, ...(r.message !== undefined ? { detail: r.message } : {}) } };
      if (r.decision === 'allow') allowedBy ??= { rule: ruleOf(plugin.name, r.rule), plugin: plugin.name, ...(r.reason !== undefined ? { reason: r.reason } : {}) };
    }
    if (allowedBy) return { by: allowedBy };
    // Every hook abstained (or none is loaded): the config's rules, then its default.
    const i = this.#allowRules.match([identity.peer.id, ...identity.principals], req.routine ?? '');
    if (i !== undefined) return { by: { rule: `authorization.allow[${i}]` } };
    if (this.#opts.authorization.default === 'allow') return { by: { rule: 'default' } };
    return { deny: 'DEFAULT_DENY', by: { rule: 'default' } };
  }

  /**
   * Whether an authorize hook explicitly allows `req` (another caller's async call: `call.read`,
   * `call.cancel`) and none denies it. Config allow rules and authorization.default do not
   * count: they say who may RUN a routine, not whose calls one may see. Never throws: a hook
   * that fails counts as a deny. Recorded on the audit stream like every decision.
   */
  async allowsOthers(req: RequestInfo, identity: Identity): Promise<boolean> {
    let allowedBy: (Decider & { reason?: string }) | undefined;
    for (const plugin of this.#authz) {
      let result: unknown;
      try {
        result = await this.#call(plugin, 'authorize', { ...req, identity }, 'FORBIDDEN', req, identity.peer);
      } catch {
        return false; // #call logged and audited the failure
      }
      const r = checkAuthz(result);
      if (!r || r.decision === 'deny') {
        const by = { rule: r ? ruleOf(plugin.name, r.rule) : plugin.name, plugin: plugin.name };
        this.#opts.audit?.record('authz.decision', { ...this.#common(req, identity.peer, identity.principals), outcome: 'deny', reason: r ? r.reason : 'PLUGIN_FAILED', ...by });
        return false;
      }
      if (r.decision === 'allow') allowedBy ??= { rule: ruleOf(plugin.name, r.rule), plugin: plugin.name, ...(r.reason !== undefined ? { reason: r.reason } : {}) };
    }
    const common = this.#common(req, identity.peer, identity.principals);
    if (!allowedBy) this.#opts.audit?.record('authz.decision', { ...common, outcome: 'deny', reason: 'NOT_OWNER', rule: 'owner' });
    else this.#opts.audit?.record('authz.decision', { ...common, outcome: 'allow', ...allowedBy, plugins: this.#authzNames });
    return allowedBy !== undefined;
  }

  /** Runs the plugins' close hooks (once). */
  close(): Promise<void> {
    return this.#life.close();
  }

  /** The same as close(): close hooks are how plugins release what they hold. */
  destroy(reason?: Error): Promise<void> {
    return this.#life.destroy(reason);
  }

  /** Calls a hook within its time budget; anything but a result fails closed. */
  async #call(plugin: LoadedPlugin, hook: 'authenticate' | 'authorize', arg: unknown, kind: 'UNAUTHENTICATED' | 'FORBIDDEN', req: RequestInfo, peer: PeerInfo): Promise<unknown> {
    const called = await this.#invoke(plugin, hook, arg, req);
    if (called.ok) return called.value;
    if (kind === 'UNAUTHENTICATED') this.#reject(req, peer, 'PLUGIN_FAILED', plugin.name, called.message);
    this.#deny(req, { peer, principals: [], claims: {} }, 'PLUGIN_FAILED', { rule: plugin.name, plugin: plugin.name, detail: called.message });
  }

  /** Calls a hook within plugins.hookTimeoutMs; a throw or a late answer is logged and returned as a failure. */
  async #invoke(plugin: LoadedPlugin, hook: 'authenticate' | 'authorize', arg: unknown, req: RequestInfo): Promise<{ ok: true; value: unknown } | { ok: false; message: string }> {
    const fn = plugin.hooks[hook] as unknown as (a: unknown) => unknown;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const value = fn.call(plugin.hooks, arg);
      // Synchronous hooks (most policy checks) need no timer.
      if (!(value instanceof Promise)) return { ok: true, value };
      return {
        ok: true,
        value: await Promise.race([
          value,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within plugins.hookTimeoutMs (${this.#opts.hookTimeoutMs} ms)`)), this.#opts.hookTimeoutMs);
          }),
        ]),
      };
    } catch (err) {
      this.#opts.log.error('plugin hook failed; failing closed', { plugin: plugin.name, hook, requestId: req.requestId, error: (err as Error)?.message ?? String(err) });
      return { ok: false, message: `plugin "${plugin.name}" failed in ${hook}; failing closed` };
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  #reject(req: RequestInfo, peer: PeerInfo, reason: string, plugin: string | undefined, message: string): never {
    this.#opts.audit?.record('authn.decision', { ...this.#common(req, peer, []), outcome: 'deny', reason, ...(plugin ? { plugin } : {}) });
    this.#opts.metrics?.authRejected('authn', reason);
    throw new SkeinError('SKEIN_ERR_UNAUTHENTICATED', `authentication failed: ${message}`, { reason, ...(plugin ? { plugin } : {}) });
  }

  #deny(req: RequestInfo, identity: Identity, reason: string, by: Decider): never {
    this.#opts.audit?.record('authz.decision', { ...this.#common(req, identity.peer, identity.principals), outcome: 'deny', reason, ...by });
    this.#opts.metrics?.authRejected('authz', reason);
    // The caller learns who they are, the reason code and the request id to quote to the
    // operator; the rule and the plugin's message (`by`) stay on the audit line.
    const who = identity.principals[0] ?? identity.peer.id;
    throw new SkeinError('SKEIN_ERR_FORBIDDEN', `${who} may not run routine "${req.routine}" (reason ${reason}, request ${req.requestId})`, {
      reason,
      ...(by.plugin ? { plugin: by.plugin } : {}),
      routine: req.routine,
    });
  }

  /** The fields every decision line carries (docs/audit.md). */
  #common(req: RequestInfo, peer: PeerInfo, principals: string[]) {
    return {
      requestId: req.requestId,
      method: req.method,
      path: req.path,
      action: req.action,
      routine: req.routine,
      remoteAddress: req.remoteAddress,
      peer: peer.id,
      fingerprint: peer.fingerprint,
      principals,
    };
  }
}

function checkAuthn(v: unknown): AuthnResult | undefined {
  const r = v as AuthnResult | undefined;
  if (!r || typeof r !== 'object') return undefined;
  if (r.outcome === 'skip') return r;
  if (r.outcome === 'authenticated' && typeof r.identity === 'string' && r.identity.length > 0 && (r.claims === undefined || typeof r.claims === 'object')) return r;
  if (r.outcome === 'rejected' && typeof r.reason === 'string' && REASON.test(r.reason)) return r;
  return undefined;
}

function checkAuthz(v: unknown): AuthzResult | undefined {
  const r = v as AuthzResult | undefined;
  if (!r || typeof r !== 'object') return undefined;
  if (r.decision === 'abstain') return r;
  if (r.decision !== 'allow' && r.decision !== 'deny') return undefined;
  if (r.rule !== undefined && (typeof r.rule !== 'string' || !RULE.test(r.rule))) return undefined;
  // An allow's reason is free-form (it only reaches the audit line), as it always was.
  if (r.decision === 'allow') return r;
  if (typeof r.reason !== 'string' || !REASON.test(r.reason)) return undefined;
  return r.message === undefined || typeof r.message === 'string' ? r : undefined;
}

/** The audited rule of a plugin's decision: "routine-policy:rules[3]", or the plugin's name when it names none. */
function ruleOf(plugin: string, rule: string | undefined): string {
  return rule === undefined ? plugin : `${plugin}:${rule}`;
}
