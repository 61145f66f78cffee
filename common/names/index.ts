/**
 * The name syntaxes, defined once: the config schema validates with them, the PKI issues
 * certificates under them, advertisements and nonce tokens are checked against them, and
 * the CLI refuses what they refuse, with the same hint everywhere.
 *
 * One syntax serves agents, routines and certificate names, because they meet: an agent's
 * certificate is issued under its agent name (spiffe://<trust domain>/agent/<name>) and a
 * routine name travels in advertisements and nonce tokens. ASCII only, so a name reads the
 * same in a SPIFFE ID, a URL path and a log line; never starting with a digit, "." or "-",
 * so it is never taken for a number, a relative path or a command-line flag.
 *
 * @example
 *   NAME_PATTERN.test('node-a')  // true
 *   NAME_PATTERN.test('1node')   // false: starts with a digit
 */

/** Agent, routine and certificate names: 1–64 of A-Z a-z 0-9 _ . -, starting with a letter or "_". */
export const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
export const NAME_HINT = 'a name of letters, digits, "_", "." or "-", starting with a letter or "_" (max 64)';

/** Fleet ids: 1–64 of A-Z a-z 0-9 _ . - (any first character: fleets are never path segments). */
export const FLEET_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
export const FLEET_HINT = 'a fleet id of 1-64 letters, digits, "_", "." or "-"';

/** Plugin names: lower case, as the loader opens <dir>/<name>.ts on any file system. */
export const PLUGIN_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/;
export const PLUGIN_NAME_HINT = 'a plugin name of 1-64 lower-case letters, digits and "-", starting with a letter or digit';

/** Python identifiers (ASCII): routine functions, kwargs keys, top-level package names. */
export const PYTHON_IDENTIFIER_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
