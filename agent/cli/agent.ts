/** `skein agent`: runs the agent until SIGTERM/SIGINT, then drains and exits 0. */
import { loadConfig } from '../config/load.ts';
import { assertStrict } from '../security/strict.ts';
import { startupFailure } from '../runtime/startup-error.ts';
import { systemdNotifier } from '../systemd/notify.ts';
import { createLogger } from '../log/index.ts';
import { startAgent, type RunningAgent } from '../runtime/index.ts';
import { parseFlags } from './args.ts';
import type { Io } from './io.ts';

export const AGENT_USAGE = `Usage: skein agent [--config PATH] [--listen HOST:PORT] [--log-level LEVEL] [--log-format json|text] [--strict]

Runs the agent: HTTP/2 + mutual TLS listener, persistent Python workers.

  --config PATH       config file (default: ./agent.config.json, else the embedded default)
  --listen HOST:PORT  overrides agent.listen (env SKEIN_LISTEN)
  --log-level LEVEL   debug | info | warn | error (env SKEIN_LOG_LEVEL)
  --log-format F      json | text (env SKEIN_LOG_FORMAT)
  --strict            refuse to start on an insecure configuration (security.strict)

Without tls.cert/key/ca a development PKI is created in agent.stateDir on first start,
and the paths of its client certificate are logged.
SIGTERM or SIGINT: stop accepting, drain in-flight calls (limits.drainTimeoutMs), exit 0.
SIGHUP: re-read the config and TLS files and apply what can change without a restart
(TLS material, discovery keys and trust, plugins, log level); an invalid config is refused
and the running one stays. TLS files are also watched and reloaded when they change.
Exit codes: 0 stopped cleanly, 1 runtime failure, 2 usage or configuration error.`;

export async function runAgent(argv: string[], io: Io): Promise<number> {
  const { values } = parseFlags(argv, {
    config: { type: 'string' },
    listen: { type: 'string' },
    'log-level': { type: 'string' },
    'log-format': { type: 'string' },
    strict: { type: 'boolean' },
  });
  if (values.help) {
    io.out(AGENT_USAGE);
    return 0;
  }
  const load = () =>
    loadConfig({
      path: values.config,
      flags: { 'agent.listen': values.listen, 'log.level': values['log-level'], 'log.format': values['log-format'], 'security.strict': values.strict ? 'true' : undefined },
    });
  const loaded = load();
  if (loaded.config.security.strict) assertStrict(loaded.config, loaded.files);
  const { config } = loaded;
  const log = createLogger({ level: config.log.level, format: config.log.format });
  log.info('starting skein agent', { config: loaded.source, pid: process.pid });

  // Signal handlers go in before start-up: a SIGTERM that arrives while the agent is still
  // starting must not kill it with the default action (no drain, no discovery goodbye); it is
  // acted on as soon as start-up finishes.
  const notify = await systemdNotifier(process.env, log);
  let signals = 0;
  let onStarted: ((agent: RunningAgent) => void) | undefined;
  const stopped = new Promise<number>((resolve) => {
    let agent: RunningAgent | undefined;
    const stop = (signal: NodeJS.Signals) => {
      log.info('signal received; shutting down', { signal });
      notify.send({ STOPPING: 1, STATUS: `draining after ${signal}` });
      agent!.close().then(
        () => resolve(0),
        (err) => {
          log.error('shutdown failed', { error: (err as Error).message });
          resolve(1);
        },
      );
    };
    let pending: NodeJS.Signals | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log.warn('second signal: exiting without draining', { signal });
        resolve(1);
        return;
      }
      if (agent) stop(signal);
      else pending = signal;
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // SIGHUP's default action would kill the agent: it reloads instead (runtime/reload.ts).
    let reloadPending = false;
    const reload = () => {
      log.info('signal received; reloading', { signal: 'SIGHUP' });
      // The outcome is logged and audited by the reloader; a refusal keeps the agent running.
      notify.send({ RELOADING: 1, STATUS: 'reloading the configuration' });
      void agent!
        .reload()
        .catch((err) => log.error('reload failed', { error: (err as Error).message }))
        .finally(() => notify.send({ READY: 1, STATUS: serving(agent!) }));
    };
    process.on('SIGHUP', () => {
      if (signals > 0) return;
      if (agent) reload();
      else reloadPending = true;
    });
    onStarted = (started) => {
      agent = started;
      if (pending) stop(pending);
      else if (reloadPending) reload();
    };
  });
  let running: RunningAgent;
  try {
    running = await startAgent({ config, log, embedded: loaded.source === 'embedded', baseDir: loaded.baseDir, source: loaded.source, reloadConfig: load });
  } catch (err) {
    throw startupFailure(err, config);
  }
  onStarted!(running);
  // Type=notify units (deploy/systemd/skein.service) wait for this: the listener is bound and the workers are ready.
  notify.send({ READY: 1, MAINPID: process.pid, STATUS: serving(running) });
  return stopped.finally(() => notify.close());
}

const serving = (agent: RunningAgent) => `serving on ${agent.address.host.includes(':') ? `[${agent.address.host}]` : agent.address.host}:${agent.address.port}`;
