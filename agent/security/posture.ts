/**
 * Security posture of the dispatch listener: how it is reached (mTLS, one-way TLS, h2c),
 * how callers authenticate, whether it is reachable off-host, whether a plugin authorizes
 * and what happens to a call nothing allows. Computed from the config and the hooks of the
 * loaded plugins of the RUNNING configuration (a SIGHUP reload can change the plugins and
 * authorization.default), reported by the admin /healthz, and — when it serves off-host
 * without client authentication, in plaintext or allowing by default — warned about at start,
 * again every hour and at once after a reload that changed it, so an insecure agent stays loud
 * in the logs for as long as it runs, not only in the first lines.
 */
import type { AgentConfig } from '../config/schema.ts';
import { isLoopbackHost, parseHostPort } from '../config/load.ts';
import type { Logger } from '../log/index.ts';
import { released, type Component } from '../lifecycle/index.ts';

export interface Posture {
  /** mtls: client certificate required in the handshake; tls: one-way TLS; h2c: plaintext. */
  transport: 'mtls' | 'tls' | 'h2c';
  /** What a caller must present: a certificate (mTLS), a token (a plugin authenticates), or nothing usable. */
  clientAuth: 'certificate' | 'token' | 'none';
  /** agent.listen is not a loopback address. */
  offHost: boolean;
  /** An enabled plugin has an authorize hook. */
  authorization: boolean;
  /** authorization.default: what a call no plugin and no authorization.allow rule allows gets. */
  authorizationDefault: 'deny' | 'allow';
  /** What the periodic warning says; empty when the posture is not warned about. */
  warnings: string[];
}

export interface PluginHooks {
  authenticate: boolean;
  authorize: boolean;
}

export function computePosture(config: AgentConfig, hooks: PluginHooks): Posture {
  const transport = config.tls.plaintext ? 'h2c' : config.tls.clientCerts === 'require' ? 'mtls' : 'tls';
  const clientAuth = transport === 'mtls' ? 'certificate' : hooks.authenticate ? 'token' : 'none';
  const offHost = !isLoopbackHost(parseHostPort(config.agent.listen).host);
  const warnings: string[] = [];
  if (offHost && clientAuth === 'none') {
    warnings.push(
      `reachable off-host (${config.agent.listen}) without client authentication: ${transport === 'h2c' ? 'tls.plaintext is on' : 'tls.clientCerts is "optional"'} and no enabled plugin authenticates tokens; ${transport === 'h2c' ? 'serve TLS' : 'set tls.clientCerts "require"'} or enable a token plugin`,
    );
  }
  if (offHost && transport === 'h2c') {
    warnings.push(
      `plaintext HTTP/2 (tls.plaintext) reachable off-host (${config.agent.listen}): requests, results and tokens cross the network unencrypted; listen on loopback behind a TLS-terminating proxy`,
    );
  }
  if (offHost && config.authorization.default === 'allow') {
    warnings.push(
      `reachable off-host (${config.agent.listen}) with authorization.default "allow": every authenticated caller may run every routine that no plugin denies; list what callers may run in authorization.allow and set the default to "deny"`,
    );
  }
  return { transport, clientAuth, offHost, authorization: hooks.authorize, authorizationDefault: config.authorization.default, warnings };
}

/** Period of the repeated warning: one hour. */
export const POSTURE_WARN_INTERVAL_MS = 3_600_000;

/** The timer behind the repeated warning: the real one in the agent; unit tests inject one they advance by hand. */
export interface IntervalTimer {
  /** Calls `fn` every `ms`; returns what stops it. Must not keep the process alive. */
  every(ms: number, fn: () => void): () => void;
}

const realTimer: IntervalTimer = {
  every(ms, fn) {
    const timer = setInterval(fn, ms);
    timer.unref?.();
    return () => clearInterval(timer);
  },
};

/** The posture warnings' timer; recheck() is called after a reload. */
export interface PostureWarnings extends Component {
  /**
   * Compares the posture with the last one seen: when it changed, logs "security posture
   * changed" (info, with the new posture) and, when it now has warnings, the warning at once
   * instead of at the next hourly turn.
   */
  recheck(): void;
}

/**
 * Logs the posture warning now and every POSTURE_WARN_INTERVAL_MS while it has warnings,
 * reading `posture()` each time. The returned component's close() or destroy() stops the timer.
 */
export function warnPosture(posture: () => Posture, log: Logger, timer: IntervalTimer = realTimer): PostureWarnings {
  const warn = (p: Posture = posture()) => {
    if (p.warnings.length === 0) return;
    // One constant message, so operators can alert on it; the reasons are in `warnings`.
    log.warn('INSECURE POSTURE', { warnings: p.warnings, transport: p.transport, clientAuth: p.clientAuth, offHost: p.offHost });
  };
  const start = posture();
  let last = JSON.stringify(start);
  if (start.transport === 'h2c') {
    // Loud even on loopback: nothing on this listener is encrypted, and it is only meant to
    // sit behind a TLS-terminating proxy on the same host.
    log.warn('PLAINTEXT: serving HTTP/2 without TLS (h2c, tls.plaintext); every caller is anonymous and must present a token', {
      clientAuth: start.clientAuth,
      ...(start.clientAuth === 'none' ? { consequence: 'no enabled plugin authenticates tokens: every call will be refused' } : {}),
    });
  }
  warn(start);
  return Object.assign(released(timer.every(POSTURE_WARN_INTERVAL_MS, () => warn())), {
    recheck() {
      const p = posture();
      const now = JSON.stringify(p);
      if (now === last) return;
      last = now;
      const { warnings, ...rest } = p;
      log.info('security posture changed', { ...rest, warnings: warnings.length });
      warn(p);
    },
  });
}
