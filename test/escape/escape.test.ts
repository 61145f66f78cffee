/**
 * Escape suite: hostile routines dispatched through the real binary under the default
 * `full` sandbox profile, one routine (and one routine name, so the per-routine circuit
 * breaker never mixes them up) per technique. Every case asserts that the forbidden thing
 * did NOT happen — the call fails with the refusal (exception type + errno), or the routine
 * returns the refusal, or the side effect it aimed for is absent on the host — and that a
 * normal call answers correctly right after it. The families follow /work/shared/SANDBOX.md.
 *
 * Fixtures: test/escape/routines/hostile.py (one function per technique; its docstring
 * explains the helpers that reach modules and libc past the block-list).
 *
 * Sections:
 *   - the full profile as root (how CI runs): the full catalogue, table-driven;
 *   - known gaps: it.fails() cases for what is NOT enforced today (see the comments);
 *   - the agent afterwards: same PID, no "internal error" log line;
 *   - a subset with the agent itself running as an unprivileged user (setpriv/runuser).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SkeinClient } from '../../agent/client/index.ts';
import type { ErrorCode } from '../../common/errors/index.ts';
import { alive, baseConfig, BINARY, DEV_CLIENT, EXAMPLES, failure, requireBinary, startAgent, stopAll, tempDir, type LogLine, type StartedAgent } from '../helpers/agent.ts';
import { condition, file, requires } from '../helpers/requires.ts';

const HOSTILE = join(import.meta.dirname, 'routines/hostile.py');
const MiB = 1024 * 1024;
const MAX_RESULT_BYTES = MiB;
const FILE_SIZE_MB = 16; // sandbox.fileSizeMb: RLIMIT_FSIZE, which caps the memfd case

// ---------------------------------------------------------------------------------------------
// The technique table
// ---------------------------------------------------------------------------------------------

/** Facts about the running agent that routines take as arguments. */
interface Ctx {
  port: number;
  agentPid: number;
  /** Where routines aim their writes; writable by the agent's user, so a hole would show. */
  drop: string;
  marker: string;
  victim: string;
  tmpFile: string;
  unixPath: string;
  abstractName: string;
  caKey: string;
  configPath: string;
  secretName: string;
  /** Connections accepted by the unix sockets the test listens on. */
  unixConnections: () => number;
}

type Expect = { kind: 'raised'; type: string; message?: RegExp } | { kind: 'code'; code: ErrorCode; message?: RegExp } | { kind: 'returns'; check: (value: any, ctx: Ctx) => void };

interface Technique {
  family: string;
  /** Routine name (one per technique). */
  name: string;
  /** Function in hostile.py when it differs from the routine name. */
  fn?: string;
  args?: (ctx: Ctx) => unknown[];
  timeoutMs?: number;
  expect: Expect;
  /** Extra host-side checks after the call. */
  after?: (ctx: Ctx, agent: AgentHandle) => void | Promise<void>;
}

const raised = (type: string, message?: RegExp): Expect => ({ kind: 'raised', type, ...(message ? { message } : {}) });
const code = (c: ErrorCode, message?: RegExp): Expect => ({ kind: 'code', code: c, ...(message ? { message } : {}) });
const returns = (check: (value: any, ctx: Ctx) => void): Expect => ({ kind: 'returns', check });

// The kernel's answers: seccomp → EPERM, Landlock → EACCES.
const EPERM = raised('PermissionError', /^\[Errno 1\] /);
const EACCES = raised('PermissionError', /^\[Errno 13\] Permission denied/);
// The audit hook's block-list (a tripwire, not the boundary) raises an ImportError subclass
// (auditHook.blockedAs = "ImportError" since commit e70801a; it was PermissionError before).
const blocked = (module: string) => raised('BlockedImportError', new RegExp(`import of '${module}' is blocked by policy`));
// glibc's system() when the shell cannot be started: the status of a shell that exited 127.
const SYSTEM_FAILED = 127 << 8;

const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWNET = 0x40000000;
const X32_SYSCALL_BIT = 0x40000000;

const TECHNIQUES: Technique[] = [
  // --- command execution -------------------------------------------------------------------
  { family: 'exec', name: 'exec_os_system', args: (c) => [c.marker], expect: returns((v) => expect(v).toBe(SYSTEM_FAILED)) },
  { family: 'exec', name: 'exec_os_popen', args: (c) => [c.marker], expect: blocked('subprocess') },
  { family: 'exec', name: 'exec_subprocess_run', args: (c) => [c.marker], expect: blocked('subprocess') },
  { family: 'exec', name: 'exec_subprocess_bypass', args: (c) => [c.marker], expect: EPERM },
  { family: 'exec', name: 'exec_os_execv', args: (c) => [c.marker], expect: EPERM },
  { family: 'exec', name: 'exec_os_fork', expect: EPERM },
  { family: 'exec', name: 'exec_posix_spawn', args: (c) => [c.marker], expect: EPERM },
  { family: 'exec', name: 'exec_pty_spawn', args: (c) => [c.marker], expect: blocked('pty') },
  { family: 'exec', name: 'exec_fork_exec_subclasses', args: (c) => [c.marker], expect: EPERM },
  { family: 'exec', name: 'exec_loader_posix', args: (c) => [c.marker], expect: returns((v) => expect(v).toEqual({ fork: 'EPERM', execv: 'EPERM' })) },
  { family: 'exec', name: 'exec_wrap_close_globals', args: (c) => [c.marker], expect: returns((v) => expect(v).toBe(SYSTEM_FAILED)) },
  { family: 'exec', name: 'exec_ctypes_import', expect: blocked('ctypes') },
  { family: 'exec', name: 'exec_ctypes_system', args: (c) => [c.marker], expect: returns((v) => expect(v).toEqual({ ret: SYSTEM_FAILED, errno: 'Operation not permitted' })) },
  { family: 'exec', name: 'exec_ctypes_fork', expect: raised('PermissionError', /^\[Errno 1\] fork: /) },
  { family: 'exec', name: 'exec_multiprocessing', expect: blocked('multiprocessing') },
  {
    family: 'exec',
    name: 'exec_subinterpreter',
    args: (c) => [c.marker],
    // No audit hook in the subinterpreter: `import subprocess` works there; the kernel does not care.
    expect: returns((v) => expect(v).toEqual({ system: SYSTEM_FAILED, import_subprocess: 'ok', subprocess_run: 'PermissionError:1', fork: 'PermissionError' })),
  },

  // --- network -----------------------------------------------------------------------------
  { family: 'network', name: 'net_socket_import', args: (c) => [c.port], expect: blocked('socket') },
  { family: 'network', name: 'net_tcp_connect', args: (c) => [c.port], expect: EPERM },
  { family: 'network', name: 'net_udp_sendto', args: (c) => [c.port], expect: EPERM },
  { family: 'network', name: 'net_socketpair', expect: EPERM },
  { family: 'network', name: 'net_unix_connect', args: (c) => [c.unixPath], expect: EPERM, after: (c) => expect(c.unixConnections()).toBe(0) },
  { family: 'network', name: 'net_unix_abstract', args: (c) => [c.abstractName], expect: EPERM, after: (c) => expect(c.unixConnections()).toBe(0) },
  { family: 'network', name: 'net_raw_syscall_socket', expect: raised('PermissionError', /^\[Errno 1\] socket: /) },
  // glibc cannot read /etc/hosts, /etc/resolv.conf or open a socket: EAI_AGAIN.
  { family: 'network', name: 'net_getaddrinfo', args: () => ['example.com'], expect: raised('gaierror', /Temporary failure in name resolution/) },
  { family: 'network', name: 'net_getaddrinfo_localhost', fn: 'net_getaddrinfo', args: () => ['localhost'], expect: raised('gaierror', /Temporary failure in name resolution/) },
  { family: 'network', name: 'net_urlopen', args: (c) => [c.port], expect: blocked('socket') },

  // --- reading outside the allow-list --------------------------------------------------------
  { family: 'read', name: 'read_etc_passwd', expect: EACCES },
  { family: 'read', name: 'read_etc_shadow', expect: EACCES },
  { family: 'read', name: 'read_root_home', expect: EACCES },
  { family: 'read', name: 'read_private_key', args: (c) => [c.caKey], expect: EACCES },
  { family: 'read', name: 'read_agent_config', fn: 'read_file', args: (c) => [c.configPath], expect: EACCES },
  { family: 'read', name: 'read_parent_environ', expect: EACCES },
  { family: 'read', name: 'read_proc_dotdot', args: (c) => [c.agentPid], expect: EACCES },
  { family: 'read', name: 'read_loader_get_data', args: () => ['/etc/passwd'], expect: EACCES },
  { family: 'read', name: 'read_list_root', expect: EACCES },
  {
    family: 'read',
    name: 'read_inherited_fds',
    // Only stdio and the protocol channel (pipes or socket pairs): no leaked file or directory.
    expect: returns((v: Record<string, string>) => {
      expect(Object.keys(v).length).toBeLessThanOrEqual(4);
      for (const kind of Object.values(v)) expect(['fifo', 'sock', 'chr']).toContain(kind);
    }),
  },
  // The worker's whole environment is WORKER_ENV (agent/sandbox/python.ts): locale, and native thread pools held to one thread.
  {
    family: 'read',
    name: 'read_environ',
    args: (c) => [c.secretName],
    expect: returns((v) => expect(v).toEqual({ keys: ['LANG', 'LC_ALL', 'MKL_NUM_THREADS', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS'], leaked: false })),
  },

  // --- writing -------------------------------------------------------------------------------
  { family: 'write', name: 'write_tmp', args: (c) => [c.tmpFile], expect: EACCES },
  { family: 'write', name: 'write_cwd', expect: EACCES },
  {
    family: 'write',
    name: 'write_set_data',
    args: (c) => [join(c.drop, 'setdata', 'x.cpython-311.pyc')],
    // set_data swallows its own OSError: the proof is that neither file exists.
    expect: returns((v, c) => {
      expect(v).toMatchObject({ temp: false, stdlib: false });
      expect(existsSync(join(c.drop, 'setdata'))).toBe(false);
      expect(existsSync(v.stdlibPath)).toBe(false);
    }),
  },
  { family: 'write', name: 'write_mkdir', args: (c) => [join(c.drop, 'newdir')], expect: EACCES, after: (c) => expect(existsSync(join(c.drop, 'newdir'))).toBe(false) },
  { family: 'write', name: 'write_symlink', args: (c) => [join(c.drop, 'link')], expect: EACCES },
  { family: 'write', name: 'write_hardlink', args: (c) => [join(c.drop, 'hardlink')], expect: EACCES },
  { family: 'write', name: 'write_chmod_stdlib', expect: EPERM },
  { family: 'write', name: 'write_utime_stdlib', expect: EPERM },
  { family: 'write', name: 'write_truncate', args: (c) => [c.victim], expect: EACCES },
  { family: 'write', name: 'write_unlink', args: (c) => [c.victim], expect: EACCES },
  { family: 'write', name: 'write_rename', args: (c) => [c.victim], expect: EACCES },
  { family: 'write', name: 'write_open_rw_stdlib', expect: EACCES },

  // --- signals, ptrace, other processes -----------------------------------------------------
  {
    family: 'signal',
    name: 'sig_kill_parent',
    expect: returns((v, c) => expect(v).toEqual({ ppid: c.agentPid, refused: 'EPERM' })),
    after: (c, a) => {
      expect(a.alive()).toBe(true);
      expect(a.pid).toBe(c.agentPid);
    },
  },
  { family: 'signal', name: 'sig_killpg_parent', expect: returns((v) => expect(v).toMatchObject({ refused: 'EPERM' })) },
  { family: 'signal', name: 'sig_pidfd_parent', expect: EPERM },
  { family: 'signal', name: 'sig_prlimit_parent', expect: EPERM },
  { family: 'signal', name: 'sig_setpriority_parent', expect: EPERM },
  { family: 'ptrace', name: 'ptrace_attach_parent', expect: raised('PermissionError', /^\[Errno 1\] ptrace: /) },
  { family: 'ptrace', name: 'ptrace_proc_mem', expect: EACCES },
  { family: 'ptrace', name: 'ptrace_process_vm_readv', expect: raised('PermissionError', /^\[Errno 1\] process_vm_readv: /) },

  // --- kernel surface (raw syscalls through libc, reached past the block-list) --------------
  { family: 'kernel', name: 'kernel_io_uring_setup', fn: 'raw_syscall', args: () => [425, 8, { buf: 120 }], expect: EPERM },
  { family: 'kernel', name: 'kernel_unshare', fn: 'raw_syscall', args: () => [272, CLONE_NEWUSER | CLONE_NEWNET], expect: EPERM },
  { family: 'kernel', name: 'kernel_setns', fn: 'raw_syscall', args: () => [308, 0, 0], expect: EPERM },
  { family: 'kernel', name: 'kernel_mount', fn: 'raw_syscall', args: () => [165, 'none', '/tmp', 'tmpfs', 0, null], expect: EPERM },
  { family: 'kernel', name: 'kernel_chroot', fn: 'raw_syscall', args: () => [161, '/'], expect: EPERM },
  { family: 'kernel', name: 'kernel_bpf', fn: 'raw_syscall', args: () => [321, 0, { buf: 128 }, 128], expect: EPERM },
  { family: 'kernel', name: 'kernel_keyctl', fn: 'raw_syscall', args: () => [250, 0, -3, 0], expect: EPERM },
  { family: 'kernel', name: 'kernel_perf_event_open', fn: 'raw_syscall', args: () => [298, { buf: 128 }, 0, -1, -1, 0], expect: EPERM },
  { family: 'kernel', name: 'kernel_userfaultfd', fn: 'raw_syscall', args: () => [323, 0], expect: EPERM },
  { family: 'kernel', name: 'kernel_init_module', fn: 'raw_syscall', args: () => [175, { buf: 64 }, 64, ''], expect: EPERM },
  // clone3 hides its flags from the filter: ENOSYS so glibc falls back to clone().
  { family: 'kernel', name: 'kernel_clone3', fn: 'raw_syscall', args: () => [435, { buf: 88 }, 88], expect: raised('OSError', /^\[Errno 38\] /) },
  { family: 'kernel', name: 'kernel_x32_abi', fn: 'raw_syscall', args: () => [X32_SYSCALL_BIT + 39], expect: EPERM },
  { family: 'kernel', name: 'kernel_unknown_syscall', fn: 'raw_syscall', args: () => [999], expect: raised('OSError', /^\[Errno 38\] /) },
  { family: 'kernel', name: 'kernel_setuid', expect: EPERM },
  { family: 'kernel', name: 'kernel_setgid', expect: EPERM },
  { family: 'kernel', name: 'kernel_tiocsti', expect: EPERM },

  // --- resource exhaustion -------------------------------------------------------------------
  { family: 'resources', name: 'res_memory', expect: raised('MemoryError') },
  { family: 'resources', name: 'res_spin', timeoutMs: 300, expect: code('SKEIN_ERR_DEADLINE_EXCEEDED') },
  { family: 'resources', name: 'res_fork_bomb', expect: EPERM },
  {
    family: 'resources',
    name: 'res_thread_bomb',
    args: () => [2000],
    // RLIMIT_AS (thread stacks + malloc arenas) stops it long before 2000.
    expect: returns((v) => {
      expect(v.refused).toMatch(/^RuntimeError: can't start new thread/);
      expect(v.started).toBeLessThan(2000);
    }),
  },
  { family: 'resources', name: 'res_fd_exhaustion', expect: raised('OSError', /^\[Errno 24\] Too many open files/) },
  {
    family: 'resources',
    name: 'res_huge_file',
    args: (c) => [c.drop],
    expect: returns((v, c) => {
      for (const dir of [c.drop, '/tmp', '/var/tmp', '/dev/shm']) expect(v[dir]).toBe('EACCES');
      // No path needed for a memfd, but RLIMIT_FSIZE caps it (CPython ignores SIGXFSZ).
      expect(v.memfd).toBe('EFBIG');
      expect(v.memfdBytes).toBe(FILE_SIZE_MB * MiB);
    }),
  },
  { family: 'resources', name: 'res_huge_output', args: () => [2 * MAX_RESULT_BYTES], expect: code('SKEIN_ERR_RESULT_TOO_LARGE', /limits\.maxResultBytes/) },
  {
    family: 'resources',
    name: 'res_stderr_flood',
    args: () => [2000, 100_000],
    expect: returns((v) => expect(v).toBe('flooded')),
    after: async (_c, a) => {
      const long = await a.waitForLogs((l) => l.msg === 'worker stderr' && /^L+$/.test(String(l.line)), 1);
      const flood = a.logs.filter((l) => l.msg === 'worker stderr' && typeof l.line === 'string');
      // All 2000 lines fit the workers.stderr burst; they arrive packed several to a log line.
      expect(flood.flatMap((l) => String(l.line).split('\n')).filter((t) => t.startsWith('flood ')).length).toBe(2000);
      expect(flood.length).toBeLessThan(200);
      // Every log line is at most 4096 characters: the 100 000-byte line is cut, not relayed.
      for (const l of flood) expect(String(l.line).length).toBeLessThanOrEqual(4096);
      expect(long.length).toBeGreaterThan(0);
      expect(long.reduce((n, l) => n + String(l.line).length, 0)).toBeLessThan(100_000);
    },
  },
  { family: 'resources', name: 'res_recursion', expect: raised('RecursionError') },
  { family: 'resources', name: 'res_recursion_c_stack', expect: code('SKEIN_ERR_WORKER_CRASHED', /signal SIGSEGV/) },

  // --- crafted bytecode ------------------------------------------------------------------------
  { family: 'bytecode', name: 'code_replace_consts', expect: code('SKEIN_ERR_WORKER_CRASHED', /signal SIGSEGV/) },
  { family: 'bytecode', name: 'code_marshal_garbage', expect: raised('ValueError', /bad marshal data/) },
  { family: 'bytecode', name: 'code_marshal_crafted', expect: code('SKEIN_ERR_WORKER_CRASHED', /signal SIGSEGV/) },

  // --- the protocol descriptor ---------------------------------------------------------------
  { family: 'protocol', name: 'forge_wrong_id', expect: code('SKEIN_ERR_WORKER_PROTOCOL') },
  {
    family: 'protocol',
    name: 'forge_print',
    expect: returns((v) => expect(v).toBe('genuine')),
    after: async (_c, a) => {
      const forged = await a.waitForLogs((l) => l.msg === 'worker stderr' && /"ok":"forged"/.test(String(l.line)), 3);
      expect(forged.map((l) => l.line)).toEqual(['{"id":1,"ok":"forged"}', '{"id":2,"ok":"forged"}', '{"id":3,"ok":"forged"}']);
    },
  },
  { family: 'protocol', name: 'forge_via_fd1', expect: code('SKEIN_ERR_WORKER_PROTOCOL') },
  // The bootstrap cannot send the reply and exits: a crash, not a hang.
  { family: 'protocol', name: 'forge_close_proto', expect: code('SKEIN_ERR_WORKER_CRASHED', /exit code 1/) },

  // --- the block-list itself -----------------------------------------------------------------
  // The hook keeps its lists in default arguments a routine can rewrite: `import socket` then
  // works, and socket() is still refused by seccomp. (The routine restores the hook.)
  { family: 'blocklist', name: 'audit_hook_tamper', expect: returns((v) => expect(v).toEqual({ found: true, import_socket: 'ok', socket: 'EPERM' })) },
];

// Routines for the known-gap cases below (same fixture file).
const GAP_ROUTINES: Record<string, { file: string; function?: string }> = {
  gap_stat: { file: HOSTILE, function: 'read_stat_leak' },
  poison_victim: { file: HOSTILE },
  victim: { file: HOSTILE },
  retire_worker: { file: HOSTILE },
  hijack_next_call: { file: HOSTILE },
  gap_deep_reply: { file: HOSTILE, function: 'forge_deep_reply' },
  gap_deep_result_codec: { file: HOSTILE, function: 'res_deep_result' },
  gap_deep_result_json: { file: HOSTILE, function: 'res_deep_result' },
};

function routinesFor(techniques: Technique[], file = HOSTILE): Record<string, { file: string; function?: string }> {
  return Object.fromEntries(techniques.map((t) => [t.name, t.fn ? { file, function: t.fn } : { file }]));
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/** What the table needs of an agent, whichever way it was started. */
interface AgentHandle {
  pid: number;
  logs: LogLine[];
  client: SkeinClient;
  alive(): boolean;
  waitForLogs(pred: (l: LogLine) => boolean, count: number, timeoutMs?: number): Promise<LogLine[]>;
}

function logWaiter(logs: LogLine[]) {
  return async (pred: (l: LogLine) => boolean, count: number, timeoutMs = 5_000): Promise<LogLine[]> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hits = logs.filter(pred);
      if (hits.length >= count || Date.now() > deadline) return hits;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
}

/** Runs one technique and asserts the refusal, the host side, and that the agent still serves. */
async function runTechnique(t: Technique, ctx: Ctx, agent: AgentHandle): Promise<void> {
  const client = agent.client;
  const call = client.dispatch(t.name, { args: t.args?.(ctx) ?? [], timeoutMs: t.timeoutMs ?? 10_000 });
  const e = t.expect;
  if (e.kind === 'returns') {
    const value = await call;
    expect(String(JSON.stringify(value))).not.toMatch(/ESCAPED/);
    e.check(value, ctx);
  } else {
    const err = await failure(call);
    if (e.kind === 'raised') {
      expect(err.code, err.message).toBe('SKEIN_ERR_ROUTINE_RAISED');
      expect(err.details.exception.type, err.message).toBe(e.type);
      if (e.message) expect(err.details.exception.message).toMatch(e.message);
    } else {
      expect(err.code, err.message).toBe(e.code);
      if (e.message) expect(err.message).toMatch(e.message);
    }
  }
  await t.after?.(ctx, agent);
  // Nothing happened on the host: no command ran, no file was created, changed or removed.
  expect(existsSync(ctx.marker), 'a command ran: the marker file exists').toBe(false);
  expect(existsSync(ctx.tmpFile)).toBe(false);
  expect(readFileSync(ctx.victim, 'utf8')).toBe('intact');
  // The agent itself is untouched and a normal call right after answers correctly.
  expect(agent.alive()).toBe(true);
  expect(await client.dispatch('add', { args: [2, 3] })).toBe(5);
}

/** Host-side fixtures: a drop directory the agent's user may write, unix sockets to aim at. */
async function hostFixtures(
  dir: string,
  owner?: number,
): Promise<{ drop: string; marker: string; victim: string; tmpFile: string; unixPath: string; abstractName: string; unixConnections: () => number; servers: Server[] }> {
  const drop = join(dir, 'drop');
  mkdirSync(drop, { mode: 0o777 });
  chmodSync(drop, 0o777);
  const victim = join(drop, 'victim.txt');
  writeFileSync(victim, 'intact', { mode: 0o666 });
  if (owner !== undefined) chownSync(victim, owner, owner);
  let connections = 0;
  const listen = (path: string) =>
    new Promise<Server>((res, rej) => {
      const server = createServer((s) => {
        connections++;
        s.destroy();
      });
      server.once('error', rej);
      server.listen(path, () => res(server));
    });
  const unixPath = join(drop, 'agent.sock');
  const abstractName = `skein-escape-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const servers = [await listen(unixPath), await listen(`\0${abstractName}`)];
  chmodSync(unixPath, 0o777);
  return {
    drop,
    marker: join(drop, 'marker'),
    victim,
    tmpFile: join('/tmp', `skein-escape-${process.pid}-${abstractName.slice(-6)}.txt`),
    unixPath,
    abstractName,
    unixConnections: () => connections,
    servers,
  };
}

const SECRET_NAME = 'SKEIN_ESCAPE_TEST_SECRET';

// ---------------------------------------------------------------------------------------------
// The full profile, agent running as root (as in CI)
// ---------------------------------------------------------------------------------------------

let agent: StartedAgent;
let handle: AgentHandle;
let ctx: Ctx;
let servers: Server[] = [];

beforeAll(async () => {
  const dir = tempDir('skein-escape-');
  const fx = await hostFixtures(dir);
  servers = fx.servers;
  agent = await startAgent({
    dir,
    env: { [SECRET_NAME]: 'hunter2' },
    config: baseConfig({
      // The default isolation: every routine has a worker of its own.
      workers: { poolSize: 1, isolation: 'routine', circuit: { failures: 1000, windowMs: 60_000, cooldownMs: 100 } },
      limits: { maxResultBytes: MAX_RESULT_BYTES },
      sandbox: { fileSizeMb: FILE_SIZE_MB },
      routines: { add: { file: EXAMPLES }, ...routinesFor(TECHNIQUES), ...GAP_ROUTINES },
    }),
  });
  expect(agent.logs.find((l) => l.msg === 'sandbox ready')?.profile).toBe('full');
  handle = { pid: agent.pid, logs: agent.logs, client: agent.client(), alive: () => alive(agent.pid) && agent.proc.exitCode === null, waitForLogs: logWaiter(agent.logs) };
  ctx = { ...fx, port: agent.port, agentPid: agent.pid, caKey: join(dir, 'state/pki/ca.key'), configPath: agent.configPath, secretName: SECRET_NAME };
});

afterAll(async () => {
  await handle?.client.close();
  await agent?.stop();
  for (const s of servers) s.close();
  if (ctx) rmSync(ctx.tmpFile, { force: true });
  await stopAll();
});

describe('full profile: hostile routines are refused and the agent keeps serving', () => {
  it('has at least 40 techniques, one routine name each', () => {
    expect(TECHNIQUES.length).toBeGreaterThanOrEqual(40);
    expect(new Set(TECHNIQUES.map((t) => t.name)).size).toBe(TECHNIQUES.length);
  });

  it.each(TECHNIQUES)('$family: $name', async (t) => {
    await runTechnique(t, ctx, handle);
    if (t.name === 'read_parent_environ' || t.name === 'ptrace_proc_mem') {
      // The refusal names the agent's own /proc entry: the routine really aimed at its parent.
      const err = await failure(handle.client.dispatch(t.name));
      expect(err.details.exception.message).toContain(`/proc/${ctx.agentPid}/`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Known gaps (it.fails: asserts the SECURE behaviour, fails today; when a fix lands it starts
// "passing unexpectedly") and the gaps this suite found that are now fixed.
// ---------------------------------------------------------------------------------------------

/** Waits until every worker is started and idle again. */
async function settle(): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const h = (await handle.client.health()) as { workers: number; idle: number; inFlight: number };
    if ((h.workers > 0 && h.idle === h.workers && h.inFlight === 0) || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 25));
  }
}

const exits = () => agent.logs.filter((l) => l.msg === 'worker exited; starting a replacement').length;

async function afterWorkerExit(before: number): Promise<void> {
  await handle.waitForLogs((l) => l.msg === 'worker exited; starting a replacement', before + 1);
  await settle();
}

describe('known gaps and their fixes', () => {
  // Documented in SANDBOX.md: Landlock does not cover stat(), so metadata (existence, size,
  // mode, owner, times) of files a routine cannot read is visible. Here: /etc/shadow's size.
  it.fails('stat() of a file outside the allow-list is refused', async () => {
    await expect(handle.client.dispatch('gap_stat', { args: ['/etc/shadow'] })).rejects.toMatchObject({
      code: 'SKEIN_ERR_ROUTINE_RAISED',
      details: { exception: { type: 'PermissionError' } },
    });
  });

  // Fixed by workers.isolation "routine" (the default): a routine can find the bootstrap's
  // routine table through gc and replace functions, but only in its own workers, which never
  // run another routine.
  it('a routine cannot replace another routine in its worker', async () => {
    await settle();
    try {
      // Its own worker holds no other routine to poison; victim runs in a worker of its own.
      expect(await handle.client.dispatch('poison_victim')).toBe('table not found');
      expect(await handle.client.dispatch('victim', { args: [2, 3] })).toBe(5);
    } finally {
      const before = exits();
      await failure(handle.client.dispatch('retire_worker')); // the poisoned worker, by LIFO
      await afterWorkerExit(before);
    }
  });

  // Fixed by workers.isolation "routine" (the default): a routine can still write a reply for
  // its own call id before it returns and then read and answer the next call sent to its
  // worker -- but that worker only ever receives calls of the same routine.
  it('a routine cannot read or answer the next call sent to its worker', async () => {
    await settle();
    const before = exits();
    try {
      expect(await handle.client.dispatch('hijack_next_call')).toBe('early');
      expect(await handle.client.dispatch('add', { args: [2, 3] })).toBe(5);
    } finally {
      await afterWorkerExit(before);
    }
  });

  // Fixed: a reply nested ~100 000 levels deep used to overflow the JS stack while the
  // response was encoded (HTTP 500); results deeper than the codec limit are now refused.
  it('a deeply nested reply is refused without an internal error', async () => {
    const err = await failure(handle.client.dispatch('gap_deep_reply', { args: [100_000], requestId: 'deep-reply' }));
    expect(err.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
    expect(err.details.exception).toEqual({ type: 'ResultNotSerializable', message: 'the result nests deeper than 64 levels' });
  });

  // Fixed: results are checked against the codec's nesting limit (MAX_DEPTH = 64).
  it('a result nested deeper than the codec allows is an error response, not an undecodable 200', async () => {
    const err = await failure(handle.client.dispatch('gap_deep_result_codec', { args: [100] }));
    expect(err.details.status).toBe(422);
    expect(err.details.exception.type).toBe('ResultNotSerializable');
  });

  // Fixed: json.dumps' RecursionError on a very deep result is reported as
  // ResultNotSerializable instead of killing the worker.
  it('a result too deep to serialise is reported as ResultNotSerializable', async () => {
    const err = await failure(handle.client.dispatch('gap_deep_result_json', { args: [5000] }));
    expect(err.code).toBe('SKEIN_ERR_ROUTINE_RAISED');
    expect(err.details.exception.type).toBe('ResultNotSerializable');
  });
});

describe('the agent afterwards', () => {
  it('is the same process, still serving, and logged no internal error', async () => {
    expect(handle.alive()).toBe(true);
    expect(ctx.agentPid).toBe(agent.pid);
    expect(await handle.client.dispatch('add', { args: [40, 2] })).toBe(42);
    const internal = agent.logs.filter((l) => l.msg === 'internal error');
    expect(internal).toEqual([]);
    expect(agent.logs.filter((l) => l.level === 'raw')).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// The agent itself as an unprivileged user
// ---------------------------------------------------------------------------------------------

const NOBODY = 65534;
const SYSTEM_PYTHON = '/usr/bin/python3';
const which = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim() || null;
const setpriv = which('setpriv');
const runuser = which('runuser');
const isRoot = process.getuid?.() === 0;
const canDrop = requires(
  condition('root', isRoot, 'dropping to another user needs root; CI runs as root'),
  { what: 'setpriv or runuser', ok: setpriv !== null || runuser !== null, debian: 'util-linux' },
  file(SYSTEM_PYTHON, { debian: 'python3' }),
);

// The default python3 lives under /root/.pyenv (0700): the unprivileged agent uses the
// system interpreter, whose layout (built-in _socket/_posixsubprocess) also differs.
const UNPRIVILEGED_SUBSET = [
  'exec_os_system',
  'exec_os_execv',
  'exec_os_fork',
  'exec_fork_exec_subclasses',
  'net_tcp_connect',
  'read_etc_shadow',
  'read_parent_environ',
  'write_tmp',
  'sig_kill_parent',
  'ptrace_attach_parent',
  'res_memory',
  'res_fd_exhaustion',
  'res_thread_bomb',
  'forge_wrong_id',
];
const UNPRIVILEGED: Technique[] = UNPRIVILEGED_SUBSET.map((name) => TECHNIQUES.find((t) => t.name === name)!);

interface Unprivileged {
  proc: ChildProcess;
  pid: number;
  port: number;
  dir: string;
  logs: LogLine[];
  stderr: () => string;
}

/** Starts dist/skein as uid/gid 65534 through setpriv (or runuser); resolves once listening. */
function startUnprivileged(dir: string, config: Record<string, unknown>): Promise<Unprivileged> {
  requireBinary();
  const configPath = join(dir, 'agent.config.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2), { mode: 0o644 });
  const argv = ['agent', '--config', configPath];
  const [cmd, args] = setpriv ? [setpriv, [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', BINARY, ...argv]] : [runuser!, ['-u', 'nobody', '--', BINARY, ...argv]];
  const proc = spawn(cmd, args, { cwd: dir, env: { PATH: '/usr/bin:/bin', HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  let raw = '';
  let pending = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`unprivileged agent not listening within 20 s:\n${raw}`)), 20_000);
    proc.on('exit', (c, s) => {
      clearTimeout(timer);
      reject(new Error(`unprivileged agent exited (${c ?? s}):\n${raw}`));
    });
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (text: string) => {
      raw += text;
      pending += text;
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        let parsed: LogLine;
        try {
          parsed = JSON.parse(line) as LogLine;
        } catch {
          parsed = { ts: '', level: 'raw', msg: line };
        }
        logs.push(parsed);
        if (parsed.msg === 'listening') {
          clearTimeout(timer);
          // setpriv and runuser exec (runuser forks; then the agent is its child): the PID
          // the agent logged at start is authoritative.
          const started = logs.find((l) => l.msg === 'starting skein agent');
          resolve({ proc, pid: Number(started?.pid ?? proc.pid), port: Number(String(parsed.address).split(':').pop()), dir, logs, stderr: () => raw });
        }
      }
    });
  });
}

canDrop.describe(`the agent as an unprivileged user (uid ${NOBODY})`, () => {
  let up: Unprivileged | undefined;
  let upHandle: AgentHandle;
  let upCtx: Ctx;
  let upServers: Server[] = [];
  let upDir: string;

  beforeAll(async () => {
    upDir = mkdtempSync(join(tmpdir(), 'skein-escape-nobody-'));
    chmodSync(upDir, 0o755);
    const state = join(upDir, 'state');
    mkdirSync(state);
    chownSync(state, NOBODY, NOBODY);
    const fx = await hostFixtures(upDir, NOBODY);
    upServers = fx.servers;
    up = await startUnprivileged(upDir, {
      agent: { name: 'nobody', listen: '127.0.0.1:0', stateDir: state },
      log: { level: 'info', format: 'json' },
      workers: { poolSize: 2, python: SYSTEM_PYTHON, circuit: { failures: 1000, windowMs: 60_000, cooldownMs: 100 } },
      limits: { maxResultBytes: MAX_RESULT_BYTES },
      authorization: { allow: [{ identities: [DEV_CLIENT], routines: ['*'] }] },
      routines: { add: { file: EXAMPLES }, ...routinesFor(UNPRIVILEGED) },
    });
    const pki = join(state, 'pki');
    const client = new SkeinClient({
      peer: `127.0.0.1:${up.port}`,
      cert: readFileSync(join(pki, 'client-dev-client.crt')),
      key: readFileSync(join(pki, 'client-dev-client.key')),
      ca: readFileSync(join(pki, 'ca.crt')),
    });
    const pid = up.pid;
    upHandle = { pid, logs: up.logs, client, alive: () => alive(pid), waitForLogs: logWaiter(up.logs) };
    upCtx = { ...fx, port: up.port, agentPid: pid, caKey: join(pki, 'ca.key'), configPath: join(upDir, 'agent.config.json'), secretName: SECRET_NAME };
  });

  afterAll(async () => {
    await upHandle?.client.close();
    if (up && up.proc.exitCode === null && up.proc.signalCode === null) {
      const exited = new Promise((r) => up!.proc.once('exit', r));
      up.proc.kill('SIGTERM');
      const t = setTimeout(() => up!.proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    for (const s of upServers) s.close();
    if (upCtx) rmSync(upCtx.tmpFile, { force: true });
    if (upDir) rmSync(upDir, { recursive: true, force: true });
  });

  it('runs the full profile with every layer, as uid 65534', () => {
    const ready = up!.logs.find((l) => l.msg === 'sandbox ready');
    expect(ready?.profile).toBe('full');
    expect(ready?.canary).toBe('all blocked');
    const status = readFileSync(`/proc/${up!.pid}/status`, 'utf8');
    expect(status).toMatch(new RegExp(`^Uid:\\s+${NOBODY}\\s+${NOBODY}\\s+${NOBODY}\\s+${NOBODY}$`, 'm'));
  });

  it.each(UNPRIVILEGED)('$family: $name', async (t) => {
    await runTechnique(t, upCtx, upHandle);
  });

  it('is still the same process afterwards, with no internal error', async () => {
    expect(upHandle.alive()).toBe(true);
    expect(await upHandle.client.dispatch('add', { args: [1, 1] })).toBe(2);
    expect(up!.logs.filter((l) => l.msg === 'internal error')).toEqual([]);
  });
});
