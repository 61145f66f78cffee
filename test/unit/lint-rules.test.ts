/**
 * The lint rules that keep the boundaries (eslint.config.mjs, eslint/skein-rules.mjs) catch
 * what they are for: each probe is linted as if it sat at the given path.
 */
import { join } from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { LAYERS } from '../../eslint/layers.mjs';

const ROOT = join(import.meta.dirname, '../..');
const BARE_UNDICI = ['un', 'dici'].join('');
const eslint = new ESLint({ cwd: ROOT });
const messages = async (path: string, code: string) => (await eslint.lintText(code, { filePath: join(ROOT, path) }))[0]!.messages.map((m) => `${m.ruleId}: ${m.message}`);

describe('lint boundaries', () => {
  it.each([
    ['agent/codec/probe.ts', "import { runAgent } from '../cli/agent.ts';\nexport { runAgent };", /skein\/layers: agent\/codec imports agent\/cli .*a higher layer/],
    [
      'agent/runtime/probe.ts',
      "import p from '../../plugins/routine-policy.ts';\nexport { p };",
      /skein\/layers: agent\/runtime imports plugins\/routine-policy\.ts: nothing but tests imports plugins\//,
    ],
    ['signing/probe.ts', "import { createLogger } from '../agent/log/index.ts';\nexport { createLogger };", /skein\/layers: signing\/ imports agent\/log\/index\.ts: signing\/ uses only common\//],
    [
      'agent/newfolder/probe.ts',
      "import { SkeinError } from '../../common/errors/index.ts';\nexport { SkeinError };",
      /skein\/layers: agent\/newfolder\/probe\.ts is in agent\/newfolder, which eslint\/layers\.mjs does not place/,
    ],
    ['plugins/probe.ts', "import { readFileSync } from 'node:fs';\nexport { readFileSync };", /skein\/plugin-imports: a plugin imports only '\.\/skein-plugin\.ts'/],
    // The probe's module name is assembled so this file does not itself hold the import it tests for.
    ['agent/http/probe.ts', `import { request } from '${BARE_UNDICI}';\nexport { request };`, /no-restricted-imports: .*undici\/index\.js/],
    ['test/unit/probe.test.ts', "import { it } from 'vitest';\nit.skip('x', () => {});", /no-restricted-syntax: focused or skipped tests/],
  ])('%s is refused', async (path, code, expected) => {
    expect((await messages(path, code)).join('\n')).toMatch(expected);
  });

  it.each([
    ['agent/cli/probe.ts', "import { runAgent } from './agent.ts';\nimport { SkeinError } from '../../common/errors/index.ts';\nexport { runAgent, SkeinError };"],
    ['plugins/probe.ts', "import { definePlugin } from './skein-plugin.ts';\nexport { definePlugin };"],
    ['test/unit/probe.test.ts', "import p from '../../plugins/routine-policy.ts';\nexport { p };"],
  ])('%s (pointing down, or a test) passes', async (path, code) => {
    expect((await messages(path, code)).filter((m) => m.startsWith('skein/'))).toEqual([]);
  });

  it('places every folder of agent/ in the layering', async () => {
    const { readdirSync } = await import('node:fs');
    const folders = readdirSync(join(ROOT, 'agent'), { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => `agent/${d.name}`);
    for (const f of folders) expect(LAYERS, f).toContain(f);
  });
});
