/**
 * AgentConfig is derived from the schema (ConfigOf in agent/config/schema-dsl.ts), not
 * restated by hand. These checks run in `npm run typecheck` (expectTypeOf is erased at run
 * time): a key added to CONFIG_SCHEMA is a key of the type, with its type and optionality.
 */
import { describe, expectTypeOf, it } from 'vitest';
import type { AgentConfig, PluginsConfig, RoutineConfig, SandboxConfig } from '../../agent/config/schema.ts';
import type { ConfigOf, Node } from '../../agent/config/schema-dsl.ts';
import { loadConfig } from '../../agent/config/load.ts';

describe('ConfigOf: the loaded config type, derived from the schema', () => {
  it('maps each kind, and makes a field optional only without a default, a required flag or object kind', () => {
    // A type-level fixture: only its type is read.
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
    const schema = {
      kind: 'object',
      description: '',
      required: ['must'],
      fields: {
        n: { kind: 'integer', min: 0, max: 9, default: 1, description: '' },
        maybe: { kind: 'string', description: '' },
        must: { kind: 'string', description: '' },
        mode: { kind: 'enum', values: ['a', 'b'], default: 'a', description: '' },
        list: { kind: 'array', maxItems: 3, items: { kind: 'boolean', description: '' }, default: [], description: '' },
        byName: { kind: 'record', keyPattern: /./, keyHint: '', value: { kind: 'integer', min: 0, max: 1, description: '' }, default: {}, description: '' },
        nested: { kind: 'object', description: '', fields: { x: { kind: 'json', description: '' } } },
      },
    } as const satisfies Node;
    expectTypeOf<ConfigOf<typeof schema>>().toEqualTypeOf<{
      n: number;
      must: string;
      mode: 'a' | 'b';
      list: boolean[];
      byName: Record<string, number>;
      nested: { x?: unknown };
      maybe?: string;
    }>();
  });

  it('AgentConfig and its named parts follow CONFIG_SCHEMA', () => {
    expectTypeOf<SandboxConfig['profile']>().toEqualTypeOf<'full' | 'standard' | 'none'>();
    expectTypeOf<AgentConfig['admin']['token']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<AgentConfig['workers']['circuit']>().toEqualTypeOf<{ failures: number; windowMs: number; cooldownMs: number }>();
    expectTypeOf<RoutineConfig['idempotent']>().toEqualTypeOf<boolean>();
    expectTypeOf<RoutineConfig['url']>().toEqualTypeOf<string | undefined>();
    expectTypeOf<PluginsConfig['enabled']>().toEqualTypeOf<Array<{ name: string; options?: unknown; allowedHosts: string[]; allowPrivateAddresses: boolean }>>();
    expectTypeOf<AgentConfig['discovery']['static'][number]>().toEqualTypeOf<{ agent: string; endpoint: string; spiffe: string; sha256: string; routines: string[] }>();
    // Read by the loader and dropped: not part of the loaded config.
    expectTypeOf<AgentConfig>().not.toHaveProperty('extends');
    expectTypeOf<AgentConfig>().not.toHaveProperty('$schema');
    expectTypeOf<SandboxConfig>().not.toHaveProperty('allowPrivateCodeAddresses');
  });

  it('what loadConfig returns has the type', () => {
    expectTypeOf(loadConfig).returns.toHaveProperty('config').toEqualTypeOf<AgentConfig>();
  });
});
