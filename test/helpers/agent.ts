/**
 * End-to-end harness: starts the compiled binary (dist/skein) on loopback with a config
 * written to a fresh temp dir, reads its JSON log lines, and stops it by PID. Every process
 * started here is tracked and killed in `stopAll()` even when a test fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SkeinClient } from '../../agent/client/index.ts';
import { SkeinError } from '../../common/errors/index.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BINARY = join(ROOT, 'dist/skein');
export const EXAMPLES = join(ROOT, 'routines/examples.py');
export const FIXTURES = join(ROOT, 'test/fixtures');
/** The SPIFFE ID of the development PKI's client certificate (the one `client()` presents). */
export const DEV_CLIENT = 'spiffe://skein.local/client/dev-client';

const running = new Set<ChildProcess>();
const tempDirs: string[] = [];

export function requireBinary(): void {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run "npm run build" first (npm test does it)`);
}

export function tempDir(prefix = 'skein-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

export interface LogLine {
  ts: string;
  level: string;
  msg: string;
  [k: string]: unknown;
}

export interface StartedAgent {
  proc: ChildProcess;
  pid: number;
  port: number;
  dir: string;
  configPath: string;
  logs: LogLine[];
  /** Audit-stream lines on stderr (audit.sink "stderr", the default; docs/audit.md), kept out of `logs`. */
  audit: Array<Record<string, unknown>>;
  stderr: () => string;
  pki: { cert: string; key: string; ca: string; dir: string };
  client(opts?: Partial<ConstructorParameters<typeof SkeinClient>[0]>): SkeinClient;
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Waits for an audit line on stderr: they are written in batches, after the log lines of the moment. */
  waitForAudit(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends `signal` and resolves with the exit code (or the signal name). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
}

/**
 * Default test config: the example routines, a loopback ephemeral port, JSON logs, one
 * shared pool (so tests can compare worker pids across routines and keep worker counts low;
 * the escape suite runs the default per-routine isolation), and an allow rule that lets the
 * development client run every routine (authorization is deny by default).
 */
export function baseConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return deepMerge(
    {
      agent: { name: 'test', listen: '127.0.0.1:0', stateDir: 'state' },
      log: { level: 'info', format: 'json' },
      workers: { poolSize: 2, isolation: 'shared' },
      authorization: { allow: [{ identities: [DEV_CLIENT], routines: ['*'] }] },
      routines: {
        echo: { file: EXAMPLES },
        add: { file: EXAMPLES },
        fail: { file: EXAMPLES },
        sleep: { file: EXAMPLES },
      },
    },
    overrides,
  );
}

/**
 * Starts the agent. `wrap` runs it through a command that ends by exec'ing its arguments
 * (e.g. `unshare --mount … sh -c '…; exec "$@"'`), so the PID is still the agent's.
 */
export async function startAgent(options: { config?: Record<string, unknown>; env?: Record<string, string>; args?: string[]; dir?: string; wrap?: string[] } = {}): Promise<StartedAgent> {
  requireBinary();
  const dir = options.dir ?? tempDir();
  const configPath = join(dir, 'agent.config.json');
  // 0600: configs can hold secrets, and security.strict refuses one readable by others.
  writeFileSync(configPath, JSON.stringify(options.config ?? baseConfig(), null, 2), { mode: 0o600 });
  const argv = [BINARY, 'agent', '--config', configPath, ...(options.args ?? [])];
  const [cmd, ...args] = [...(options.wrap ?? []), ...argv];
  const proc = spawn(cmd!, args, {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  proc.on('exit', () => running.delete(proc));
  const logs: LogLine[] = [];
  const audit: Array<Record<string, unknown>> = [];
  let raw = '';
  const waiters = new Set<() => void>();
  let pending = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (text: string) => {
    raw += text;
    pending += text;
    let nl: number;
    while ((nl = pending.indexOf('\n')) !== -1) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        const parsed = JSON.parse(line) as LogLine;
        if (typeof parsed.schema === 'string' && parsed.schema.startsWith('skein.audit/')) audit.push(parsed);
        else logs.push(parsed);
      } catch {
        logs.push({ ts: '', level: 'raw', msg: line });
      }
    }
    for (const w of waiters) w();
  });
  const exited = new Promise<number | string>((res) => proc.on('exit', (code, signal) => res(code ?? signal ?? -1)));

  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 15_000) =>
    new Promise<LogLine>((res, rej) => {
      const check = () => {
        const hit = logs.find(pred);
        if (hit) {
          waiters.delete(check);
          clearTimeout(timer);
          res(hit);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        rej(new Error(`log line not seen within ${timeoutMs} ms; stderr so far:\n${raw}`));
      }, timeoutMs);
      waiters.add(check);
      exited.then((code) => {
        if (waiters.has(check)) {
          waiters.delete(check);
          clearTimeout(timer);
          rej(new Error(`agent exited (${code}) before the log line; stderr:\n${raw}`));
        }
      });
      check();
    });

  const listening = await waitForLog((l) => l.msg === 'listening');
  const port = Number(String(listening.address).split(':').pop());
  const pkiDir = join(dir, 'state', 'pki');
  const pki = { dir: pkiDir, cert: join(pkiDir, 'client-dev-client.crt'), key: join(pkiDir, 'client-dev-client.key'), ca: join(pkiDir, 'ca.crt') };

  return {
    proc,
    pid: proc.pid!,
    port,
    dir,
    configPath,
    logs,
    audit,
    stderr: () => raw,
    pki,
    client(opts = {}) {
      return new SkeinClient({
        peer: `127.0.0.1:${port}`,
        cert: readFileSync(pki.cert),
        key: readFileSync(pki.key),
        ca: readFileSync(pki.ca),
        ...opts,
      });
    },
    waitForLog,
    async waitForAudit(pred, timeoutMs = 5000) {
      for (const until = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 20))) {
        const hit = audit.find(pred);
        if (hit) return hit;
        if (Date.now() > until) throw new Error(`audit line not seen within ${timeoutMs} ms; stderr so far:\n${raw}`);
      }
    },
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Runs the binary to completion (for CLI tests); bounded by `timeoutMs`. */
export function runCli(args: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  requireBinary();
  return new Promise((res) => {
    const proc = spawn(BINARY, args, {
      cwd: options.cwd ?? ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d) => (stdout += d));
    proc.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => proc.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      running.delete(proc);
      res({ code, stdout, stderr });
    });
  });
}

/** Kills every process this harness started and removes temp dirs. Call from afterAll. */
export async function stopAll(): Promise<void> {
  for (const proc of running) proc.kill('SIGKILL');
  running.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isObj(prev) && isObj(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Awaits a call that must fail with a SkeinError, and returns the error (details loosely typed). */
export async function failure(call: Promise<unknown>): Promise<SkeinError & { details: Record<string, any> }> {
  try {
    await call;
  } catch (err) {
    if (err instanceof SkeinError) return err as SkeinError & { details: Record<string, any> };
    throw err;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** Starts the binary with `config` (on an ephemeral port) and expects start-up to fail with exit 2; returns stderr. */
export async function startMustFail(config: Record<string, unknown>): Promise<string> {
  const path = join(tempDir(), 'agent.config.json');
  writeFileSync(path, JSON.stringify({ ...config, agent: { name: 't', listen: '127.0.0.1:0', stateDir: 'state' } }));
  const r = await runCli(['agent', '--config', path]);
  if (r.code !== 2) throw new Error(`expected exit 2, got ${r.code}; stderr:\n${r.stderr}`);
  return r.stderr;
}

/**
 * The worker's stderr lines a log record carries: one, or several when the agent coalesced a
 * burst into one record (`lines`: how many), so a test looking for a line must split them.
 */
export function workerStderr(l: LogLine): string[] {
  return l.msg === 'worker stderr' ? String(l.line).split('\n') : [];
}

/** curl's arguments for mutual TLS with the agent's development PKI (the dev client's certificate). */
export function curlMtls(agent: Pick<StartedAgent, 'pki'>): string[] {
  return ['--cert', agent.pki.cert, '--key', agent.pki.key, '--cacert', agent.pki.ca];
}

/** True while a process with this pid exists (signal 0 probes without signalling). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
