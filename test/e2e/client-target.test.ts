/**
 * Where client commands go without flags: SKEIN_PEER/SKEIN_CERT/SKEIN_KEY/SKEIN_CA/SKEIN_TOKEN,
 * a client profile file, and the precedence flag > env > profile > local dev agent; a peer
 * without a port dials skein's default port, never 443.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PORT, normalizePeer } from '../../agent/cli/target.ts';
import { runCli, startAgent, stopAll, tempDir, type StartedAgent } from '../helpers/agent.ts';

let agent: StartedAgent;
let elsewhere: string; // a working directory with no agent.config.json
const closedPort = '127.0.0.1:1'; // nothing listens on port 1

beforeAll(async () => {
  agent = await startAgent();
  elsewhere = tempDir();
});
afterAll(async () => {
  await agent?.stop();
  await stopAll();
});

const envFor = () => ({ SKEIN_PEER: `127.0.0.1:${agent.port}`, SKEIN_CERT: agent.pki.cert, SKEIN_KEY: agent.pki.key, SKEIN_CA: agent.pki.ca });

/** Writes a profile file with a "good" profile (relative paths) and a "broken" one (closed port). */
function profileFile(extra: Record<string, unknown> = {}): string {
  const dir = tempDir();
  const rel = (p: string) => relative(dir, p);
  const file = join(dir, 'client.json');
  const doc = {
    default: 'good',
    profiles: {
      good: { peer: `127.0.0.1:${agent.port}`, cert: rel(agent.pki.cert), key: rel(agent.pki.key), ca: rel(agent.pki.ca) },
      broken: { peer: closedPort, cert: agent.pki.cert, key: agent.pki.key, ca: agent.pki.ca },
      ...extra,
    },
  };
  // JSONC, as people write it.
  writeFileSync(file, `// skein client profiles\n${JSON.stringify(doc, null, 2)}\n`);
  return file;
}

describe('client settings from the environment and profiles', () => {
  it('SKEIN_PEER, SKEIN_CERT, SKEIN_KEY and SKEIN_CA alone reach the agent', async () => {
    const r = await runCli(['dispatch', 'add', '--args', '[2, 3]'], { cwd: elsewhere, env: envFor() });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('5');
  });

  it('the default profile of $SKEIN_CLIENT_CONFIG reaches the agent, paths relative to the file', async () => {
    const r = await runCli(['dispatch', 'add', '--args', '[2, 3]'], { cwd: elsewhere, env: { SKEIN_CLIENT_CONFIG: profileFile() } });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('5');
  });

  it('the profile file is found at $XDG_CONFIG_HOME/skein/client.json', async () => {
    const xdg = tempDir();
    mkdirSync(join(xdg, 'skein'));
    writeFileSync(
      join(xdg, 'skein', 'client.json'),
      JSON.stringify({ default: 'p', profiles: { p: { peer: `127.0.0.1:${agent.port}`, cert: agent.pki.cert, key: agent.pki.key, ca: agent.pki.ca } } }),
    );
    const r = await runCli(['peers', '--json'], { cwd: elsewhere, env: { XDG_CONFIG_HOME: xdg } });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ enabled: false });
  });

  it('precedence: flag > env > profile', async () => {
    const file = profileFile();
    // env beats the profile: the broken profile's closed port is never dialled.
    const envWins = await runCli(['dispatch', 'add', '--args', '[1, 1]', '--profile', 'broken'], { cwd: elsewhere, env: { SKEIN_CLIENT_CONFIG: file, SKEIN_PEER: `127.0.0.1:${agent.port}` } });
    expect(envWins.stdout.trim()).toBe('2');
    // SKEIN_PROFILE selects like --profile.
    const envProfile = await runCli(['dispatch', 'add', '--args', '[1, 1]'], { cwd: elsewhere, env: { SKEIN_CLIENT_CONFIG: file, SKEIN_PROFILE: 'broken' } });
    expect(envProfile.code).toBe(6);
    expect(envProfile.stderr).toMatch(/SKEIN_ERR_TRANSPORT.*127\.0\.0\.1:1\b/);
    // A flag beats env.
    const flagWins = await runCli(['dispatch', 'add', '--args', '[1, 1]', '--peer', closedPort], { cwd: elsewhere, env: envFor() });
    expect(flagWins.code).toBe(6);
    expect(flagWins.stderr).toMatch(/127\.0\.0\.1:1\b/);
  });

  it.each([
    [{ SKEIN_PROFILE: 'nope' }, /no profile named "nope" \(profiles: good, broken, odd\)/],
    [{ SKEIN_PROFILE: 'odd' }, /profile "odd": unknown key "url"/],
    [{ SKEIN_CERT: '/nonexistent/c.crt', SKEIN_KEY: '/k', SKEIN_CA: '/ca' }, /cannot read SKEIN_CERT: \/nonexistent\/c\.crt/],
    [{ SKEIN_PEER: 'localhost:99999' }, /SKEIN_PEER: port 99999 is out of range/],
    [{ SKEIN_PEER: '::1:7443' }, /SKEIN_PEER: "::1:7443" is not HOST\[:PORT\] \(write an IPv6 address in brackets/],
    [{ SKEIN_TOKEN_FILE: '/nonexistent/token' }, /cannot read SKEIN_TOKEN_FILE: \/nonexistent\/token/],
  ])('a bad setting %j is exit 2 naming its source', async (env, message) => {
    const file = profileFile({ odd: { url: 'x' } });
    const r = await runCli(['dispatch', 'add'], { cwd: elsewhere, env: { SKEIN_CLIENT_CONFIG: file, ...env } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error \[SKEIN_ERR_USAGE\]/);
    expect(r.stderr).toMatch(message);
  });

  it('a certificate without its key and CA (no profile to fill them in) is exit 2 naming what is missing', async () => {
    const r = await runCli(['dispatch', 'add'], { cwd: elsewhere, env: { SKEIN_CERT: '/nonexistent/c.crt', XDG_CONFIG_HOME: tempDir() } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--cert, --key and --ca must be given together .*missing: --key \/ SKEIN_KEY, --ca \/ SKEIN_CA/);
  });

  it('a missing $SKEIN_CLIENT_CONFIG is an error, not silently ignored', async () => {
    const r = await runCli(['dispatch', 'add'], { cwd: elsewhere, env: { SKEIN_CLIENT_CONFIG: '/nonexistent/client.json' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/SKEIN_CLIENT_CONFIG: \/nonexistent\/client\.json does not exist/);
  });
});

describe('a peer without a port', () => {
  it.each([
    ['127.0.0.1', `127.0.0.1:${DEFAULT_PORT}`],
    ['edge-1.example', `edge-1.example:${DEFAULT_PORT}`],
    ['[::1]', `[::1]:${DEFAULT_PORT}`],
    ['https://edge-1.example', `https://edge-1.example:${DEFAULT_PORT}`],
    ['http://127.0.0.1', `http://127.0.0.1:${DEFAULT_PORT}`],
    ['127.0.0.1:9000', '127.0.0.1:9000'],
    ['[::1]:9000', '[::1]:9000'],
  ])("%s dials %s (skein's default port, not 443)", (peer, expected) => {
    expect(normalizePeer(peer)).toBe(expected);
  });

  it('the CLI dials the default port and says so in its error', async () => {
    // Nothing of this test listens on 7443; if something else on the host does, TLS refuses it.
    const r = await runCli(['dispatch', 'add', '--peer', '127.0.0.1', '--cert', agent.pki.cert, '--key', agent.pki.key, '--ca', agent.pki.ca, '--timeout', '2000'], { cwd: elsewhere });
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(new RegExp(`127\\.0\\.0\\.1:${DEFAULT_PORT}`));
  });
});
