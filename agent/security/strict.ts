/**
 * Strict mode (`security.strict: true`, `skein agent --strict`, `skein validate --strict`):
 * the agent refuses to start, listing every violation at once, when its configuration could
 * serve insecurely. Each rule names the key to change. Checks that need the running host
 * (sandbox layers, plugin hooks) are enforced at start-up by their own modules; these are the
 * ones a configuration file alone decides.
 */
import { statSync } from 'node:fs';
import { isLoopbackHost, parseHostPort } from '../config/load.ts';
import { SkeinError } from '../../common/errors/index.ts';
import type { AgentConfig } from '../config/schema.ts';
import { BUILTIN_PLUGIN_NAMES, TOKEN_PLUGIN_NAMES } from '../plugin-host/builtin.ts';
import type { Reloadable } from '../lifecycle/reloadable.ts';

export interface Violation {
  key: string;
  message: string;
}

const TOKEN_PLUGINS = new Set<string>(TOKEN_PLUGIN_NAMES);

export function strictViolations(config: AgentConfig, configFiles: string | string[] = []): Violation[] {
  const v: Violation[] = [];
  const enabled = config.plugins.enabled.map((p) => p.name);
  const offHost = !isLoopbackHost(parseHostPort(config.agent.listen).host);
  const tokenPlugin = enabled.some((n) => TOKEN_PLUGINS.has(n));
  if (config.tls.plaintext) {
    // h2c is acceptable only behind a TLS-terminating proxy on this host, with tokens.
    if (!tokenPlugin) v.push({ key: 'tls.plaintext', message: 'plaintext HTTP/2 (h2c) without a token plugin (bearer-jwt or signed-nonce) authenticates no one' });
    if (offHost) v.push({ key: 'tls.plaintext', message: `plaintext HTTP/2 (h2c) reachable off-host (${config.agent.listen}): requests and tokens would cross the network unencrypted` });
  } else if (config.tls.clientCerts === 'optional' && !tokenPlugin) {
    v.push({ key: 'tls.clientCerts', message: 'one-way TLS ("optional") without a token plugin (bearer-jwt or signed-nonce) authenticates no one' });
  }
  if (!config.tls.plaintext && config.tls.minVersion !== 'TLSv1.3') v.push({ key: 'tls.minVersion', message: `${config.tls.minVersion} is below TLS 1.3` });
  if (config.sandbox.profile !== 'full') v.push({ key: 'sandbox.profile', message: `"${config.sandbox.profile}" is weaker than "full"` });
  // Built-in plugins are part of the binary; any other plugin is code from a folder and must be signed.
  // (A file that shadows a built-in is held to the same rule when it is loaded: plugin-host/loader.ts.)
  const fromFiles = enabled.filter((n) => !(BUILTIN_PLUGIN_NAMES as readonly string[]).includes(n));
  if (fromFiles.length > 0 && !config.plugins.requireSignature)
    v.push({ key: 'plugins.requireSignature', message: `plugins loaded from files (${fromFiles.join(', ')}) but their signatures are not required` });
  if (config.discovery.enabled && config.discovery.trustedKeys.length === 0 && config.discovery.rootKeys.length === 0 && config.discovery.groups.length > 0) {
    v.push({ key: 'discovery.trustedKeys', message: 'discovery is enabled without a trust store' });
  }
  // Every security decision must be reconstructable (docs/audit.md).
  if (config.audit.sink === 'off') v.push({ key: 'audit.sink', message: '"off" records no security decision; use "stderr" or "file"' });
  // Off loopback, what nothing allows must be refused: the config (or a plugin) says who may run what.
  if (offHost && config.authorization.default === 'allow') {
    v.push({
      key: 'authorization.default',
      message: `"allow" while listening off-host (${config.agent.listen}): every authenticated peer may run every routine that no plugin denies; keep "deny" and list what callers may run in authorization.allow`,
    });
  }
  // The host file and every fleet file its `extends` chain names: each can change what runs.
  const [hostFile, ...fleetFiles] = typeof configFiles === 'string' ? [configFiles] : configFiles;
  const files: Array<[string, string | undefined]> = [
    ['tls.key', config.tls.key],
    ['discovery.signingKey', config.discovery.signingKey],
    ['config', hostFile],
    ...fleetFiles.map((f): [string, string] => ['extends', f]),
  ];
  for (const [key, path] of files) {
    if (!path || path === 'embedded') continue;
    try {
      const mode = statSync(path).mode & 0o777;
      // Config files can hold plugin secrets (HS256 keys) as well as trust decisions.
      if (mode & 0o077) v.push({ key, message: `${path} is readable or writable by group or others (mode ${mode.toString(8).padStart(4, '0')}; chmod 600)` });
    } catch {
      // Missing files are reported by the loaders with their own errors.
    }
  }
  return v;
}

/** Throws SKEIN_ERR_STRICT listing every violation, when there is any. */
export function assertStrict(config: AgentConfig, configFiles?: string | string[]): void {
  const violations = strictViolations(config, configFiles);
  if (violations.length === 0) return;
  throw new SkeinError(
    'SKEIN_ERR_STRICT',
    `security.strict: refusing to start; ${violations.length} violation${violations.length === 1 ? '' : 's'}:\n${violations.map((x) => `  - ${x.key}: ${x.message}`).join('\n')}`,
    { violations },
  );
}

/**
 * security.strict applies live (agent/lifecycle/reloadable.ts): strict mode is a check of the
 * whole configuration, made on every reload before anything is staged (runtime/reload.ts) and
 * by the plugin loader for reloaded plugins, so turning it on or off needs nothing more here.
 */
export const liveStrictMode: Reloadable<AgentConfig> = { name: 'security', reloadKeys: ['security.strict'], stage: () => undefined };
