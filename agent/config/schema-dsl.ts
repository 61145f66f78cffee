/**
 * A tiny declarative schema: one description of each config key drives validation (with
 * errors naming the key's path), path resolution, secret redaction, environment overrides,
 * the published JSON Schema and the TypeScript type of the loaded config (`ConfigOf`).
 * Hand-written because the config needs all of them from one source, and a general-purpose
 * validator would still need the rest bolted on.
 */
import { isAbsolute, resolve } from 'node:path';
import { SkeinError } from '../../common/errors/index.ts';

interface Common {
  description: string;
  /** Environment variable that overrides this key (parsed with the key's type). */
  env?: string;
}
export type Node =
  | (Common & { kind: 'string'; default?: string; path?: boolean; secret?: boolean; pattern?: RegExp; patternHint?: string; nullable?: boolean })
  | (Common & { kind: 'integer'; default?: number; min: number; max: number })
  | (Common & { kind: 'boolean'; default?: boolean })
  /** `renamed`: former values → their new names; a former value is refused with an error naming the new one. */
  | (Common & { kind: 'enum'; values: readonly string[]; default?: string; renamed?: Readonly<Record<string, string>> })
  /** `removed`: keys that no longer exist → why; setting one is refused with that reason (not "unknown key"). */
  | (Common & { kind: 'object'; fields: Readonly<Record<string, Node>>; required?: readonly string[]; removed?: Readonly<Record<string, string>> })
  | (Common & { kind: 'record'; keyPattern: RegExp; keyHint: string; value: Node; default?: Readonly<Record<string, unknown>> })
  | (Common & { kind: 'array'; items: Node; maxItems: number; default?: readonly unknown[] })
  /** Free-form JSON checked by its consumer (a plugin's options); redacted when printed. */
  | (Common & { kind: 'json' });

type Json = unknown;

/**
 * The type `complete()` returns for a schema node, derived at the type level so a key added
 * to the schema is a key of the type (declare the schema `as const satisfies Node`). A field
 * is always present when it is required, has a default, or is an object (filled in with its
 * own defaults); any other field is optional.
 *
 * @example
 *   const S = { kind: 'object', description: '', fields: { n: { kind: 'integer', min: 0, max: 9, default: 1, description: '' } } } as const satisfies Node;
 *   type C = ConfigOf<typeof S>; // { n: number }
 */
export type ConfigOf<N> = N extends { kind: 'string'; nullable: true }
  ? string | null
  : N extends { kind: 'string' }
    ? string
    : N extends { kind: 'integer' }
      ? number
      : N extends { kind: 'boolean' }
        ? boolean
        : N extends { kind: 'enum'; values: readonly (infer V)[] }
          ? V
          : N extends { kind: 'array'; items: infer I }
            ? ConfigOf<I>[]
            : N extends { kind: 'record'; value: infer V }
              ? Record<string, ConfigOf<V>>
              : N extends { kind: 'object'; fields: infer F }
                ? FieldsOf<F, N extends { required: readonly (infer R)[] } ? R : never>
                : N extends { kind: 'json' }
                  ? unknown
                  : never;

type Present<N, K, Required> = K extends Required ? true : N extends { kind: 'object' } ? true : N extends { default: unknown } ? true : false;
type FieldsOf<F, Required> = Flat<
  { -readonly [K in keyof F as Present<F[K], K, Required> extends true ? K : never]: ConfigOf<F[K]> } & {
    -readonly [K in keyof F as Present<F[K], K, Required> extends true ? never : K]?: ConfigOf<F[K]>;
  }
>;
type Flat<T> = { [K in keyof T]: T[K] };

/**
 * The one SKEIN_ERR_CONFIG for a bad value: `config key "<path>" (in <source>): <message>`,
 * with the key in details. Every check of a configured value (the schema here, the loader's
 * cross-checks, discovery's trust store, allow rules, sandbox and TLS files) words it so.
 *
 * @example
 *   throw configError('discovery.trustedKeys[0]', 'is not an Ed25519 key', { cause: err })
 */
export function configError(path: string, message: string, options: { source?: string; cause?: unknown } = {}): SkeinError {
  const where = options.source ? ` (in ${options.source})` : '';
  return new SkeinError(
    'SKEIN_ERR_CONFIG',
    `config key "${path}"${where}: ${message}`,
    { key: path, ...(options.source ? { source: options.source } : {}) },
    options.cause === undefined ? undefined : { cause: options.cause },
  );
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const describe = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`);

/**
 * Checks one layer (a file, the environment, the flags) without filling defaults: types,
 * ranges, unknown keys. Relative paths are resolved against `baseDir` here, so a fleet
 * file's paths stay relative to the fleet file after merging.
 */
export function checkLayer(node: Node, value: Json, path: string, baseDir: string, source?: string): Json {
  switch (node.kind) {
    case 'string': {
      if (value === null && node.nullable) return null;
      if (typeof value !== 'string') throw configError(path, `must be a string, got ${describe(value)}`, { source });
      if (value.length === 0) throw configError(path, 'must not be empty', { source });
      if (node.pattern && !node.pattern.test(value))
        throw configError(path, `${node.secret ? 'the value' : JSON.stringify(value)} is not ${node.patternHint ?? `matching ${node.pattern}`}`, { source });
      if (node.path && !isAbsolute(value)) return resolve(baseDir, value);
      return value;
    }
    case 'integer': {
      if (typeof value !== 'number' || !Number.isInteger(value)) throw configError(path, `must be an integer, got ${describe(value)}`, { source });
      if (value < node.min || value > node.max) throw configError(path, `must be between ${node.min} and ${node.max}, got ${value}`, { source });
      return value;
    }
    case 'boolean': {
      if (typeof value !== 'boolean') throw configError(path, `must be true or false, got ${describe(value)}`, { source });
      return value;
    }
    case 'enum': {
      const renamed = typeof value === 'string' && node.renamed && Object.hasOwn(node.renamed, value) ? node.renamed[value] : undefined;
      if (renamed !== undefined) throw configError(path, `"${value as string}" was renamed to "${renamed}" (same behaviour); write "${renamed}"`, { source });
      if (typeof value !== 'string' || !node.values.includes(value))
        throw configError(path, `must be one of ${node.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describe(value)}`, { source });
      return value;
    }
    case 'object': {
      if (!isPlainObject(value)) throw configError(path, `must be an object, got ${describe(value)}`, { source });
      const out: Record<string, Json> = {};
      for (const [key, child] of Object.entries(value)) {
        const field = node.fields[key];
        const childPath = path ? `${path}.${key}` : key;
        if (!field && node.removed && Object.hasOwn(node.removed, key)) throw configError(childPath, `was removed: ${node.removed[key]}`, { source });
        if (!field) throw configError(childPath, `unknown key (allowed here: ${Object.keys(node.fields).join(', ')})`, { source });
        out[key] = checkLayer(field, child, childPath, baseDir, source);
      }
      return out;
    }
    case 'record': {
      if (!isPlainObject(value)) throw configError(path, `must be an object, got ${describe(value)}`, { source });
      const out: Record<string, Json> = {};
      for (const [key, child] of Object.entries(value)) {
        if (!node.keyPattern.test(key)) throw configError(`${path}.${key}`, `invalid name: ${node.keyHint}`, { source });
        out[key] = checkLayer(node.value, child, `${path}.${key}`, baseDir, source);
      }
      return out;
    }
    case 'json':
      return value;
    case 'array': {
      if (!Array.isArray(value)) throw configError(path, `must be an array, got ${describe(value)}`, { source });
      if (value.length > node.maxItems) throw configError(path, `must have at most ${node.maxItems} items`, { source });
      return value.map((item, i) => checkLayer(node.items, item, `${path}[${i}]`, baseDir, source));
    }
  }
}

/**
 * Fills defaults and enforces `required` on the merged result. Path defaults (e.g. the
 * state directory) are resolved against `baseDir`, the folder of the top config file.
 */
export function complete(node: Node, value: Json, path: string, baseDir: string): Json {
  switch (node.kind) {
    case 'object': {
      const obj = (value ?? {}) as Record<string, Json>;
      const out: Record<string, Json> = {};
      for (const [key, field] of Object.entries(node.fields)) {
        const childPath = path ? `${path}.${key}` : key;
        if (obj[key] === undefined) {
          if (node.required?.includes(key)) throw configError(childPath, 'is required');
          if (field.kind === 'object') out[key] = complete(field, {}, childPath, baseDir);
          else if (field.kind === 'string' && field.path && field.default !== undefined) out[key] = resolve(baseDir, field.default);
          else if ('default' in field && field.default !== undefined) out[key] = structuredClone(field.default);
          continue;
        }
        out[key] = complete(field, obj[key], childPath, baseDir);
      }
      return out;
    }
    case 'record': {
      const obj = (value ?? {}) as Record<string, Json>;
      return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, complete(node.value, v, `${path}.${k}`, baseDir)]));
    }
    case 'array':
      return (value as Json[]).map((v, i) => complete(node.items, v, `${path}[${i}]`, baseDir));
    default:
      return value;
  }
}

/**
 * Deep merge: objects merge key by key (later layers win), everything else is replaced.
 * Records of routines merge too, so a host can add routines to a fleet's set.
 */
export function mergeLayers(...layers: Json[]): Json {
  let acc: Json = undefined;
  for (const layer of layers) acc = mergeTwo(acc, layer);
  return acc;
}

function mergeTwo(a: Json, b: Json): Json {
  if (b === undefined) return a;
  if (isPlainObject(a) && isPlainObject(b)) {
    const out: Record<string, Json> = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = mergeTwo(a[k], v);
    return out;
  }
  return b;
}

/** Builds a layer from `SKEIN_*` variables declared on schema nodes. */
export function envLayer(node: Node, env: NodeJS.ProcessEnv, path = ''): Json {
  if (node.kind === 'object') {
    const out: Record<string, Json> = {};
    for (const [key, field] of Object.entries(node.fields)) {
      const v = envLayer(field, env, path ? `${path}.${key}` : key);
      if (v !== undefined) out[key] = v;
    }
    return Object.keys(out).length ? out : undefined;
  }
  if (!node.env) return undefined;
  const raw = env[node.env];
  if (raw === undefined || raw === '') return undefined;
  return parseScalar(node, raw, `${path} (from ${node.env})`);
}

/** Parses a string from the environment or a flag into the node's type. */
export function parseScalar(node: Node, raw: string, label: string): Json {
  switch (node.kind) {
    case 'integer': {
      if (!/^-?\d+$/.test(raw)) throw configError(label, `must be an integer, got ${JSON.stringify(raw)}`);
      return Number(raw);
    }
    case 'boolean':
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw configError(label, `must be true or false, got ${JSON.stringify(raw)}`);
    case 'array':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    default:
      return raw;
  }
}

/** Replaces secret values with "[redacted]" for printing. */
export function redact(node: Node, value: Json): Json {
  if (value === undefined || value === null) return value;
  switch (node.kind) {
    case 'string':
      return node.secret ? '[redacted]' : value;
    case 'object': {
      const obj = value as Record<string, Json>;
      return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, node.fields[k] ? redact(node.fields[k], v) : v]));
    }
    case 'record':
      return Object.fromEntries(Object.entries(value as Record<string, Json>).map(([k, v]) => [k, redact(node.value, v)]));
    case 'array':
      return (value as Json[]).map((v) => redact(node.items, v));
    case 'json':
      return '[redacted: validated by its plugin]';
    default:
      return value;
  }
}

/** JSON Schema (draft 2020-12) for editors; generated so it can never drift from the validator. */
export function toJsonSchema(node: Node): Record<string, unknown> {
  const base: Record<string, unknown> = { description: node.description + (node.env ? ` (env: ${node.env})` : '') };
  switch (node.kind) {
    case 'string':
      return {
        ...base,
        type: node.nullable ? ['string', 'null'] : 'string',
        minLength: 1,
        ...(node.pattern ? { pattern: node.pattern.source } : {}),
        ...(node.default !== undefined ? { default: node.default } : {}),
      };
    case 'integer':
      return { ...base, type: 'integer', minimum: node.min, maximum: node.max, ...(node.default !== undefined ? { default: node.default } : {}) };
    case 'boolean':
      return { ...base, type: 'boolean', ...(node.default !== undefined ? { default: node.default } : {}) };
    case 'enum':
      return { ...base, enum: [...node.values], ...(node.default !== undefined ? { default: node.default } : {}) };
    case 'object':
      return {
        ...base,
        type: 'object',
        additionalProperties: false,
        properties: Object.fromEntries(Object.entries(node.fields).map(([k, f]) => [k, toJsonSchema(f)])),
        ...(node.required?.length ? { required: [...node.required] } : {}),
      };
    case 'record':
      return { ...base, type: 'object', propertyNames: { pattern: node.keyPattern.source }, additionalProperties: toJsonSchema(node.value) };
    case 'array':
      return { ...base, type: 'array', maxItems: node.maxItems, items: toJsonSchema(node.items) };
    case 'json':
      return base;
  }
}
