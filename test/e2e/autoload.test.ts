/**
 * The binary reads nothing from the folder it is started in but what its flags name: a
 * standalone Bun executable would otherwise load bunfig.toml (whose `preload` runs any
 * script before the agent's code), .env (setting SKEIN_* configuration variables), and
 * tsconfig.json / package.json — whoever could write the working folder would run code in,
 * or reconfigure, the agent. build.ts turns the autoloading off; this pins it.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, stopAll, tempDir } from '../helpers/agent.ts';

afterAll(stopAll);

describe('nothing is autoloaded from the working folder', () => {
  it('a bunfig.toml preload does not run and a .env sets nothing, for `validate` and `--version`', async () => {
    const dir = tempDir();
    const marker = join(dir, 'preloaded');
    writeFileSync(join(dir, 'evil.ts'), `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran'); console.error('PRELOADED-BY-BUNFIG');\n`);
    writeFileSync(join(dir, 'bunfig.toml'), 'preload = ["./evil.ts"]\n');
    writeFileSync(join(dir, '.env'), 'SKEIN_LOG_LEVEL=debug\nSKEIN_LOG_FORMAT=text\n');
    writeFileSync(join(dir, 'c.json'), JSON.stringify({ agent: { name: 't', listen: '127.0.0.1:0', stateDir: 'state' } }));

    const v = await runCli(['validate', '--config-only', '--config', 'c.json'], { cwd: dir });
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout).config.log).toEqual({ level: 'info', format: 'json' });
    expect(v.stderr).not.toContain('PRELOADED-BY-BUNFIG');
    expect(existsSync(marker)).toBe(false);

    // --version takes the shortest path through start-up: a preload would still run first.
    const version = await runCli(['--version'], { cwd: dir });
    expect(version.code).toBe(0);
    expect(`${version.stdout}${version.stderr}`).not.toContain('PRELOADED-BY-BUNFIG');
    expect(existsSync(marker)).toBe(false);
  });
});
