/**
 * The cross-field rules of agent/config/load.ts (crossCheck) stated in JSON Schema, so an
 * editor flags what `skein validate` refuses. They are added to docs/config.schema.json by
 * `npm run schema`; test/e2e/config-schema.test.ts runs an independent validator (Debian's
 * python3-jsonschema) and `skein validate` over one corpus and requires the same verdicts.
 *
 * A file with `extends` is only part of a configuration (its fleet file fills in the rest),
 * so the rules that need the whole configuration apply to files without `extends`. One rule
 * has no JSON Schema form: limits.defaultTimeoutMs must not exceed limits.maxTimeoutMs
 * (JSON Schema cannot compare two values); only `skein validate` checks it.
 */

import { CONFIG_SCHEMA } from './schema.ts';
import { toJsonSchema } from './schema-dsl.ts';

/** 1–65535, as a regex over the port of HOST:PORT. */
const PORT = '(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})';
const HOST_PORT_IN_RANGE = `^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):${PORT}$`;
/** A wildcard listen address: peers cannot dial it, so discovery must be told what to advertise. */
const WILDCARD = '^(0\\.0\\.0\\.0|\\[::\\]):';
/** Loopback: 127.0.0.0/8, [::1] and localhost (config/load.ts isLoopbackHost). */
const LOOPBACK = '^(127\\.[0-9.]+|\\[::1\\]|localhost):';

const is = (value: unknown) => ({ const: value });
const has = (key: string, schema: Record<string, unknown>) => ({ properties: { [key]: schema }, required: [key] });

/** Rules that hold for any file, whole configuration or not. */
const ALWAYS = [{ properties: { agent: { properties: { listen: { pattern: HOST_PORT_IN_RANGE } } }, admin: { properties: { listen: { pattern: HOST_PORT_IN_RANGE } } } } }];

/** Rules that need the whole configuration: files without `extends`. */
const WHOLE = [
  // tls.cert, tls.key and tls.ca are set together (or none: the development PKI).
  { properties: { tls: { dependentRequired: { cert: ['key', 'ca'], key: ['cert', 'ca'], ca: ['cert', 'key'] } } } },
  // A routine has exactly one of file and url; url needs a sha256 pin, file takes none.
  {
    properties: {
      routines: {
        additionalProperties: {
          oneOf: [{ required: ['file'] }, { required: ['url'] }],
          dependentRequired: { url: ['sha256'] },
          dependentSchemas: { file: { not: { required: ['sha256'] } } },
        },
      },
    },
  },
  // Multicast discovery (enabled, with groups — the default has one) needs a fleet, a signing
  // key and a trust store.
  {
    if: has('discovery', { ...has('enabled', is(true)), not: has('groups', { maxItems: 0 }) }),
    then: has('discovery', { required: ['fleet', 'signingKey'], anyOf: [has('trustedKeys', { minItems: 1 }), has('rootKeys', { minItems: 1 })] }),
  },
  // ... and, listening on a wildcard address, the endpoints to advertise.
  {
    if: { allOf: [has('agent', has('listen', { pattern: WILDCARD })), has('discovery', { ...has('enabled', is(true)), not: has('groups', { maxItems: 0 }) })] },
    then: has('discovery', has('advertise', { minItems: 1 })),
  },
  // The audit file sink needs its path.
  { if: has('audit', has('sink', is('file'))), then: has('audit', { required: ['path'] }) },
  // Plaintext h2c cannot be combined with discovery: peers pin an advertised agent's certificate.
  { not: { allOf: [has('tls', has('plaintext', is(true))), has('discovery', has('enabled', is(true)))] } },
  // The admin listener off loopback needs a token (admin.enabled defaults to true).
  {
    if: has('admin', { ...has('listen', { not: { pattern: LOOPBACK } }), not: has('enabled', is(false)) }),
    then: has('admin', { required: ['token'] }),
  },
];

/** docs/config.schema.json: the validator's own description of every key, plus the rules above. */
export function configJsonSchema(): Record<string, unknown> {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'skein agent configuration',
    ...toJsonSchema(CONFIG_SCHEMA),
    allOf: [...ALWAYS, { if: { required: ['extends'] }, else: { allOf: WHOLE } }],
  };
}
