import { spawnSync } from 'node:child_process';
import { configError } from '../config/schema-dsl.ts';
import { SkeinError } from '../../common/errors/index.ts';

/**
 * The whole environment of a worker (spawned directly or through bwrap --clearenv): nothing
 * of the agent's (tokens, keys, paths) reaches routines. Native thread pools (OpenBLAS,
 * OpenMP, MKL) are told to use one thread: a worker must be single-threaded between calls or
 * the pool retires it (agent/workers/pool.ts), and parallelism comes from the pool's size.
 */
export const WORKER_ENV: Readonly<Record<string, string>> = {
  LC_ALL: 'C.UTF-8',
  LANG: 'C.UTF-8',
  OPENBLAS_NUM_THREADS: '1',
  OMP_NUM_THREADS: '1',
  MKL_NUM_THREADS: '1',
};

export interface PythonInfo {
  /** The real interpreter binary (version-manager shims resolved). */
  executable: string;
  /** sys.base_prefix: the tree a bubblewrap mount namespace must expose read-only. */
  prefix: string;
}

/** confine.py compiled by the workers' interpreter: a marshalled code object (hex) and the version it is for. */
export interface CompiledConfine {
  code: string;
  pythonVersion: string;
}

/** What one run of the configured interpreter reports at start-up (see inspectPython). */
export interface PythonInspection<Caps> {
  python: PythonInfo;
  /** confine.probe(): the host's capabilities, unconfined. */
  caps: Caps;
  confine: CompiledConfine;
}

/*
 * One interpreter run does what took four: resolve the executable and prefix, run confine's
 * probe() and compile confine.py (the canary stays a run of its own, confined). The
 * configured command may be a version-manager shim (pyenv, asdf: a shell script costing
 * ~170 ms a run), so it runs once, with the agent's environment the shim needs; the probe
 * then runs with the same cleared environment (LC_ALL only) it always had, so shutil.which
 * looks for bwrap on the default path as before. A failing probe or compile is reported
 * as data (the last line of its traceback), so it stays a sandbox error and a missing
 * interpreter stays a configuration error.
 * Hex, not base64: the worker decodes it with the built-in bytes.fromhex instead of
 * importing binascii, which is not built into every interpreter (~0.3 ms per spawn).
 */
const INSPECT = `import sys, os, marshal
from _json import encode_basestring_ascii as _str
def _dump(v):
    # JSON of what this script outputs, without importing json (re, enum and more: ~6 ms of
    # this run, which every start waits for); strings go through json's own C encoder.
    if isinstance(v, str): return _str(v)
    if v is None: return "null"
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, int): return int.__repr__(v)
    if isinstance(v, dict): return "{" + ",".join(_str(str(k)) + ":" + _dump(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)): return "[" + ",".join(map(_dump, v)) + "]"
    raise TypeError("cannot output %s" % type(v).__name__)
out = {"executable": sys.executable, "prefix": sys.base_prefix}
os.environ.clear()
os.environ["LC_ALL"] = "C.UTF-8"
try:
    src = sys.stdin.read()
    co = compile(src, "<skein-confine>", "exec")
    out["confine"] = {"code": marshal.dumps(co).hex(), "pythonVersion": sys.version}
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(co, ns)
    out["caps"] = ns["probe"]()
except BaseException as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(_dump(out))`;

/**
 * Runs the configured interpreter once at start-up: its real executable (later spawns,
 * workers included, use it and not the shim), the host probe and the compiled confine.py.
 */
export function inspectPython<Caps>(python: string, confineSource: string): PythonInspection<Caps> {
  const r = spawnSync(python, ['-I', '-S', '-c', INSPECT], { input: confineSource, encoding: 'utf8', timeout: 15_000 });
  if (r.error || r.status !== 0) {
    const why = r.error?.message ?? (r.stderr.trim() || `exit ${r.status}`);
    throw configError('workers.python', `cannot run ${python}: ${why}`);
  }
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { executable: string; prefix: string; confine?: CompiledConfine; caps?: Caps; error?: string };
  const info = { executable: out.executable || python, prefix: out.prefix || '/usr' };
  if (out.error || !out.caps || !out.confine) throw new SkeinError('SKEIN_ERR_SANDBOX', `sandbox self-test with ${info.executable} failed: ${out.error ?? 'no probe result'}`);
  return { python: info, caps: out.caps, confine: out.confine };
}
