/**
 * The effective config as the audit stream records it at start-up and on reload. Keys the
 * schema marks `secret` (admin.token) are "[redacted]" as in `skein validate`; plugin options,
 * which the schema cannot describe, keep their shape so an auditor can see which issuer or
 * policy was in force, but any value under a name that looks like a secret is "[redacted]".
 *
 * @example
 *   auditedConfig(config).plugins.enabled[0].options
 *   // { issuer: "https://id.example", hs256Secret: "[redacted]", keys: "[redacted]" }
 */
import { redactedConfig } from '../config/load.ts';
import type { AgentConfig } from '../config/schema.ts';

export const REDACTED = '[redacted]';

// Matched anywhere in the name, case-insensitive: "hs256Secret", "apiKey", "client_password",
// "bearerTokens", "hmac". Over-redacting a public key is the cheap mistake to make.
const SECRET_NAME = /secret|key|passw|pwd|token|hmac|credential|private|cookie|auth|salt|seed/i;

/** True when an option of this name is treated as a secret. */
export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name);
}

// The private members of a JWK (RFC 7517/7518): "k" of an HMAC key, "d", "p", "q"… of RSA/EC/OKP.
const JWK_PRIVATE = new Set(['k', 'd', 'p', 'q', 'dp', 'dq', 'qi', 'oth']);
const PEM_PRIVATE = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/**
 * Replaces every value under a secret-looking name, at any depth, with "[redacted]"; also the
 * private members of anything shaped like a JWK, and strings holding a PEM private key.
 */
export function redactByName(value: unknown, depth = 0): unknown {
  // Options are JSON from a config file; the depth cap only guards against pathological nesting.
  if (depth > 32) return REDACTED;
  if (typeof value === 'string') return PEM_PRIVATE.test(value) ? REDACTED : value;
  if (Array.isArray(value)) return value.map((v) => redactByName(v, depth + 1));
  if (typeof value !== 'object' || value === null) return value;
  const jwk = 'kty' in value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, isSecretName(k) || (jwk && JWK_PRIVATE.has(k)) ? REDACTED : redactByName(v, depth + 1)]));
}

/** The config with schema secrets and secret-looking plugin options redacted. */
export function auditedConfig(config: AgentConfig): Record<string, unknown> {
  const out = redactedConfig(config) as Record<string, unknown> & { plugins: { enabled: Array<Record<string, unknown>> } };
  out.plugins.enabled = config.plugins.enabled.map((p) => (p.options === undefined ? { name: p.name } : { name: p.name, options: redactByName(p.options) }));
  return out;
}
