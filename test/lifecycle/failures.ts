/**
 * Real start-up failures, one per step of agent/runtime's start-up, shared by the in-process
 * test (which accounts for leaked handles) and the binary test (what an operator sees). Each
 * names the parts that had started — and must be stopped, last first — when it fails.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { FIXTURES, EXAMPLES, runCli, tempDir } from '../helpers/agent.ts';

export interface FailureCase {
  step: string;
  /** Config overrides on top of baseConfig. */
  config: Record<string, unknown>;
  code: string;
  message: RegExp;
  /** What start-up stopped, in the order it stopped them (the reverse of start). */
  stopped: string[];
}

/** The steps, in start-up order: the rows of both tests. */
export const FAILURE_STEPS = [
  'TLS material (an unreadable key)',
  'workers (a routine that fails to compile, next to one that starts)',
  'plugins (one fails to load after another loaded)',
  'listener (port already in use)',
  'discovery (a group that cannot be joined)',
  'admin listener (port already in use)',
] as const;

export interface FailureContext {
  cases: FailureCase[];
  close(): Promise<void>;
}

function holdPort(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

/** Builds the fixtures (PKI, keys, plugins, a broken routine, two held ports) and the cases. */
export async function failureCases(): Promise<FailureContext> {
  const dir = tempDir('skein-startfail-');
  const ok = async (args: string[]) => {
    const r = await runCli(args);
    if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  };
  const pki = join(dir, 'pki');
  await ok(['pki', 'init', '--dir', pki]);
  await ok(['pki', 'issue', '--dir', pki, '--name', 'test', '--kind', 'agent', '--host', '127.0.0.1']);
  await ok(['keygen', '--out', join(dir, 'signing.key')]);
  const signingPub = readFileSync(join(dir, 'signing.key.pub'), 'utf8').trim();
  const junkKey = join(dir, 'junk.key');
  writeFileSync(junkKey, 'this is not a private key\n', { mode: 0o600 });
  const broken = join(dir, 'broken.py');
  writeFileSync(broken, 'def broken(:\n    return 1\n');
  const plugins = join(dir, 'plugins');
  mkdirSync(plugins);
  for (const f of ['closes.ts', 'syntax-error.ts']) cpSync(join(FIXTURES, 'plugins', f), join(plugins, f));
  const agentPort = await holdPort();
  const adminPort = await holdPort();

  // Every case past the plugins step loads the "closes" plugin: its close hook must run once.
  const closes = { plugins: { dir: plugins, enabled: [{ name: 'closes' }] } };
  const isolated = { workers: { poolSize: 1, isolation: 'routine' } };
  const tls = { cert: join(pki, 'agent-test.crt'), key: join(pki, 'agent-test.key'), ca: join(pki, 'ca.crt') };
  const cases: FailureCase[] = [
    { step: 'TLS material (an unreadable key)', config: { tls: { ...tls, key: junkKey } }, code: 'SKEIN_ERR_CONFIG', message: /tls\.key file .*junk\.key: not a PEM private key/, stopped: [] },
    {
      step: 'workers (a routine that fails to compile, next to one that starts)',
      config: { ...isolated, routines: { echo: { file: EXAMPLES }, broken: { file: broken } } },
      code: 'SKEIN_ERR_CONFIG',
      message: /routine "broken" failed to load: SyntaxError/,
      stopped: ['workers'],
    },
    {
      step: 'plugins (one fails to load after another loaded)',
      config: { ...isolated, plugins: { dir: plugins, enabled: [{ name: 'closes' }, { name: 'syntax-error' }] } },
      code: 'SKEIN_ERR_PLUGIN_LOAD',
      message: /plugin "syntax-error"/,
      stopped: ['workers'],
    },
    {
      step: 'listener (port already in use)',
      config: { ...isolated, ...closes, agent: { name: 'test', listen: `127.0.0.1:${agentPort.port}`, stateDir: 'state' } },
      code: 'SKEIN_ERR_CONFIG',
      message: new RegExp(`cannot listen on 127\\.0\\.0\\.1:${agentPort.port} \\(agent\\.listen\\): address already in use`),
      stopped: ['async calls', 'plugins', 'workers'],
    },
    {
      step: 'discovery (a group that cannot be joined)',
      config: {
        ...isolated,
        ...closes,
        discovery: { enabled: true, fleet: 'f', signingKey: join(dir, 'signing.key'), trustedKeys: [signingPub], groups: ['239.255.77.99:47999'], interface: '192.0.2.1' },
      },
      code: 'SKEIN_ERR_CONFIG',
      message: /config key "discovery\.groups": .*192\.0\.2\.1/,
      stopped: ['posture warnings', 'listener', 'async calls', 'plugins', 'workers'],
    },
    {
      step: 'admin listener (port already in use)',
      config: { ...isolated, ...closes, tls, admin: { enabled: true, listen: `127.0.0.1:${adminPort.port}` } },
      code: 'SKEIN_ERR_CONFIG',
      message: new RegExp(`cannot listen on 127\\.0\\.0\\.1:${adminPort.port} \\(admin\\.listen\\): address already in use`),
      stopped: ['reloader', 'tls watch', 'posture warnings', 'listener', 'async calls', 'plugins', 'workers'],
    },
  ];
  if (JSON.stringify(cases.map((c) => c.step)) !== JSON.stringify(FAILURE_STEPS)) throw new Error('FAILURE_STEPS and the cases differ');
  return {
    cases,
    close: async () => {
      await new Promise((r) => agentPort.server.close(r));
      await new Promise((r) => adminPort.server.close(r));
    },
  };
}
