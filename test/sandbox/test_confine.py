# Tests for agent/sandbox/confine.py. Run: python3 -I -S test/sandbox/test_confine.py [-v]
#
# Every test spawns a fresh `python3 -I -S -c <confine.py + harness>` child, exactly as the
# worker bootstrap will, applies a policy there, tries something and prints one JSON line; the
# assertions run here in the parent. Tests that need something this host lacks (root for the
# unprivileged run, /usr/bin/python3, a kernel layer) skip with a printed reason.
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
CONFINE_PATH = os.path.join(HERE, '..', '..', 'agent', 'sandbox', 'confine.py')
with open(CONFINE_PATH) as f:
    CONFINE = f.read()

PYTHON = sys.executable
SYSTEM_PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else None
SETPRIV = shutil.which('setpriv')
IS_ROOT = os.geteuid() == 0
ENV = {'LC_ALL': 'C.UTF-8', 'LANG': 'C.UTF-8', 'PATH': '/usr/bin:/bin'}

STRICT = {
    'required': ['userns', 'netns', 'ipcns', 'mountns', 'rlimits', 'landlock', 'landlock-net',
                 'landlock-scope', 'seccomp', 'canary', 'audit'],
    'setsid': True, 'namespaces': True, 'landlock': True, 'seccomp': True, 'canary': True,
    'limits': {'memoryBytes': 1 << 30, 'openFiles': 256, 'fileSizeBytes': 1 << 20,
               'cpuSeconds': 30, 'processes': 4096},
    'auditHook': {'blockedModules': ['subprocess', 'ctypes', 'socket'], 'allowedPackages': []},
}
NO_AUDIT = dict(STRICT, required=[n for n in STRICT['required'] if n != 'audit'], auditHook=None)
EXPECTED_STRICT = ['setsid', 'userns', 'netns', 'ipcns', 'mountns', 'rlimits', 'landlock',
                   'landlock-net', 'landlock-scope', 'seccomp', 'canary', 'audit']
# Simulates Docker's default profile / Ubuntu's AppArmor in the child before apply(): a seccomp
# filter that refuses unshare(CLONE_NEWUSER) with EPERM.
NO_USERNS_PRE = r'''
import struct, ctypes
_nr = _ARCHES[_arch()]['nr']
_insns = [(BPF_LD_W_ABS, 0, 0, OFF_NR), (BPF_JEQ_K, 0, 3, _nr['unshare']),
          (BPF_LD_W_ABS, 0, 0, OFF_ARGS[0]), (BPF_JSET_K, 0, 1, CLONE_NEWUSER),
          (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM), (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
_buf = ctypes.create_string_buffer(b''.join(struct.pack('=HBBI', *i) for i in _insns))
class _Prog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]
_prctl(PR_SET_NO_NEW_PRIVS, 1)
assert _syscall(_nr['seccomp'], 1, 0, ctypes.byref(_Prog(len(_insns), ctypes.addressof(_buf)))) == 0
'''

# Runs in the child after confine.py's text. `body` fills `out`; `attempt` records how a call
# ended: {"ok": true, "value": ...} or {"ok": false, "type": ..., "errno": ...}.
HARNESS = r'''
import json as _json
out = {}

def attempt(fn):
    try:
        value = fn()
        try:
            _json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        return {"ok": True, "value": value}
    except BaseException as e:
        return {"ok": False, "type": type(e).__name__, "errno": _errname(e), "message": str(e)[:300]}

_policy = _json.loads(%(policy)r)
if _policy is not None:
    try:
        out["applied"] = apply(_policy)
    except ConfinementError as e:
        out["error"] = str(e)
    out["skipped"] = last_report.get("skipped")
    out["applyCanary"] = last_report.get("canary")
%(body)s
print("\n" + _json.dumps(out))
'''


def run_child(policy, body='', python=PYTHON, as_nobody=False, pre=''):
    """Spawn a confined child; return the dict it printed."""
    source = CONFINE + '\n' + pre + '\n' + HARNESS % {
        'policy': json.dumps(policy), 'body': body}
    argv = [python, '-I', '-S', '-c', source]
    if as_nobody:
        argv = [SETPRIV, '--reuid=65534', '--regid=65534', '--clear-groups'] + argv
    proc = subprocess.run(argv, cwd='/', env=ENV, capture_output=True, text=True, timeout=60)
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    if proc.returncode != 0 or not lines:
        raise AssertionError('child failed (rc=%d)\nstdout: %s\nstderr: %s'
                             % (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:]))
    return json.loads(lines[-1])


def probe_host():
    return run_child(None, 'out["probe"] = probe()')['probe']


HOST = probe_host()
FULL_HOST = (HOST['seccomp']['available'] and HOST['landlock']['abi'] >= 6 and HOST['userns'])


def blocked(result, *errnos):
    return not result['ok'] and (not errnos or result['errno'] in errnos)


# Body shared by the strict-policy tests: the whole escape catalogue, results in `out`.
ESCAPES = r'''
import os, sys, errno as _errno
out["canary"] = canary()
out["uid"] = os.getuid()
ppid = os.getppid()
out["procEnviron"] = attempt(lambda: open('/proc/%d/environ' % ppid, 'rb').read(10))
out["etcShadow"] = attempt(lambda: open('/etc/shadow', 'rb').read(1))
out["listRoot"] = attempt(lambda: os.listdir('/root'))
out["writeTmp"] = attempt(lambda: open('/tmp/skein-test-%d' % os.getpid(), 'w').write('x'))
out["writeCwd"] = attempt(lambda: open('skein-test-%d' % os.getpid(), 'w').write('x'))
out["writeStdlib"] = attempt(lambda: open(os.path.join(os.path.dirname(os.__file__), 'evil.py'), 'w'))
out["mkdirTmp"] = attempt(lambda: os.mkdir('/tmp/skein-test-dir-%d' % os.getpid()))
out["devNull"] = attempt(lambda: open(os.devnull, 'w').write('ok'))
out["killParent"] = attempt(lambda: os.kill(ppid, 0))
out["killSelf"] = attempt(lambda: os.kill(os.getpid(), 0))
out["osSystem"] = attempt(lambda: os.system('true'))
out["importSubprocess"] = attempt(lambda: __import__('subprocess'))
out["importCtypes"] = attempt(lambda: __import__('ctypes'))
out["importSocket"] = attempt(lambda: __import__('socket'))
out["import_socket"] = attempt(lambda: __import__('_socket'))   # accelerators go with them
out["import_ctypes"] = attempt(lambda: __import__('_ctypes'))   # purged although apply() used it
# The block-list is a tripwire, not a boundary: modules reached without an import statement
# still meet the kernel.
def posix_fork():
    posix = __builtins__.__loader__.load_module('posix') if hasattr(__builtins__, '__loader__') \
        else sys.modules['posix']
    return posix.fork()
out["posixFork"] = attempt(posix_fork)
def fork_exec_via_subclasses():
    classes, todo = {}, [().__class__.__base__]
    while todo:   # every class reachable from object, as an escape would walk them
        for c in type.__subclasses__(todo.pop()):
            if c.__name__ not in classes:
                classes[c.__name__] = c
                todo.append(c)
    try:
        mod = classes['BuiltinImporter'].load_module('_posixsubprocess')
        route = 'BuiltinImporter'
    except ImportError:   # not built in (pyenv builds): load the extension file directly
        origin = [os.path.join(d, n) for d in sys.path if os.path.isdir(d)
                  for n in os.listdir(d) if n.startswith('_posixsubprocess.')][0]
        mod = classes['ExtensionFileLoader']('_posixsubprocess', origin).load_module()
        route = 'ExtensionFileLoader'
    r, w = os.pipe()
    mod.fork_exec([b'/bin/true'], [b'/bin/true'], True, (w,), None, None, -1, -1, -1, -1, -1, -1,
                  r, w, True, False, -1, None, None, None, -1, None, True)
    return route
out["forkExec"] = attempt(fork_exec_via_subclasses)
def raw_socket():
    return canary.__globals__['_raw_module']('_socket').socket()
out["rawSocket"] = attempt(raw_socket)
out["outer"] = globals().get("_outer")
'''


@unittest.skipUnless(FULL_HOST, 'host lacks seccomp errno / Landlock ABI 6 / user namespaces: %s'
                     % json.dumps(HOST))
class StrictPolicy(unittest.TestCase):
    def check_escapes(self, out):
        self.assertEqual(out.get('applied'), EXPECTED_STRICT, out)
        # canary() after apply(): everything refused (socket possibly by the audit hook, which
        # refuses to load _socket)...
        for key in ('socket', 'fork', 'readEtcPasswd', 'writeTmp', 'signalParent'):
            self.assertEqual(out['canary'][key], 'blocked', (key, out['canary']))
        self.assertIn(out['canary']['errno']['socket'], ('EPERM', 'PermissionError'))
        # ...and the canary apply() ran before the hook shows which kernel layer said no.
        canary = out['applyCanary']
        for key in ('socket', 'fork', 'readEtcPasswd', 'writeTmp', 'signalParent'):
            self.assertEqual(canary[key], 'blocked', (key, canary))
        self.assertEqual(canary['errno']['socket'], 'EPERM')        # seccomp
        self.assertEqual(canary['errno']['fork'], 'EPERM')          # seccomp
        self.assertEqual(canary['errno']['readEtcPasswd'], 'EACCES')  # Landlock
        self.assertEqual(canary['errno']['writeTmp'], 'EACCES')     # Landlock
        self.assertEqual(canary['errno']['signalParent'], 'EPERM')  # Landlock scope
        self.assertEqual(out['uid'], 65534)
        for key in ('procEnviron', 'etcShadow', 'listRoot', 'writeTmp', 'writeCwd', 'writeStdlib',
                    'mkdirTmp', 'killParent'):
            self.assertTrue(blocked(out[key], 'EACCES', 'EPERM'), (key, out[key]))
        self.assertEqual(out['devNull'], {'ok': True, 'value': 2})
        self.assertEqual(out['killSelf']['ok'], True)
        # os.system: glibc's clone(CLONE_VM|CLONE_VFORK) is refused and system() reports the
        # failed spawn as "exit 127" (32512); nothing ran.
        self.assertEqual(out['osSystem'], {'ok': True, 'value': 127 << 8})
        for key in ('importSubprocess', 'importCtypes', 'importSocket', 'import_socket',
                    'import_ctypes'):
            self.assertEqual(out[key]['type'], 'PermissionError', (key, out[key]))
            self.assertIn('blocked by policy', out[key]['message'])
        self.assertTrue(blocked(out['posixFork'], 'EPERM'), out['posixFork'])
        self.assertTrue(blocked(out['forkExec'], 'EPERM'), out['forkExec'])
        self.assertTrue(blocked(out['rawSocket'], 'EPERM'), out['rawSocket'])

    def test_strict_as_root_or_current_user(self):
        self.check_escapes(run_child(STRICT, ESCAPES))

    @unittest.skipUnless(SYSTEM_PYTHON, 'no /usr/bin/python3 (apt-get install python3)')
    def test_strict_with_distribution_python(self):
        self.check_escapes(run_child(STRICT, ESCAPES, python=SYSTEM_PYTHON))

    @unittest.skipUnless(IS_ROOT and SETPRIV and SYSTEM_PYTHON,
                         'needs root, setpriv and /usr/bin/python3 to run as uid 65534 (apt-get install util-linux python3)')
    def test_strict_as_unprivileged_user(self):
        # The pyenv interpreter lives under /root (0700), so the unprivileged run uses the
        # distribution's python3.
        out = run_child(STRICT, ESCAPES, python=SYSTEM_PYTHON, as_nobody=True,
                        pre='import os\n_outer = (os.getuid(), os.getgid(), os.getgroups())')
        self.check_escapes(out)
        self.assertEqual(out['outer'], [65534, 65534, []])

    def test_stdlib_works_after_confinement(self):
        body = r'''
import json, re, decimal, datetime, threading, logging, dataclasses, hashlib, collections
import encodings.idna, encodings.cp1252, zoneinfo, random, math, struct, base64, uuid, io
results = []
t = threading.Thread(target=lambda: results.append(sum(range(1000))))
t.start(); t.join()
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(4) as pool:
    squares = list(pool.map(lambda x: x * x, range(8)))
@dataclasses.dataclass
class P:
    x: int
stream = io.StringIO()
logging.basicConfig(stream=stream, level=logging.INFO)
logging.getLogger('t').info('hello %s', 1)
out["checks"] = {
    "json": json.loads(json.dumps({"a": [1, 2]})),
    "re": re.sub(r"\d+", "#", "a1b22"),
    "decimal": str(decimal.Decimal("1.10") * 3),
    "datetime": datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc).isoformat(),
    "now": bool(datetime.datetime.now().year),
    "thread": results,
    "pool": squares,
    "dataclass": repr(P(3)),
    "logging": stream.getvalue().strip(),
    "sha256": hashlib.sha256(b"x").hexdigest()[:12],
    "cp1252": "é".encode("cp1252").hex(),
    "idna": "bücher.example".encode("idna").decode(),
    "zoneinfo": str(datetime.datetime(2024, 7, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")).utcoffset()),
    "random": 0 <= random.random() < 1,
    "urandom": len(os.urandom(8)),
    "uuid4": len(str(uuid.uuid4())),
    "cpus": (os.cpu_count() or 0) > 0,
}
'''
        out = run_child(STRICT, body)
        self.assertEqual(out['applied'], EXPECTED_STRICT)
        self.assertEqual(out['checks'], {
            'json': {'a': [1, 2]}, 're': 'a#b#', 'decimal': '3.30',
            'datetime': '2020-01-02T00:00:00+00:00', 'now': True, 'thread': [499500],
            'pool': [0, 1, 4, 9, 16, 25, 36, 49], 'dataclass': 'P(x=3)',
            'logging': 'INFO:t:hello 1', 'sha256': '2d711642b726', 'cp1252': 'e9',
            'idna': 'xn--bcher-kva.example', 'zoneinfo': '2:00:00', 'random': True,
            'urandom': 8, 'uuid4': 36, 'cpus': True})

    def test_every_stdlib_module_imports_as_before(self):
        # Whatever the interpreter's standard library can import unconfined, it still can under
        # the kernel layers (no audit hook: its block-list would refuse a few by design).
        body = r'''
import io, contextlib, warnings
warnings.simplefilter("ignore")
sys.dont_write_bytecode = True   # the unconfined run must leave the stdlib as it is
skip = {"antigravity", "this", "__hello__", "__phello__", "idlelib", "turtledemo"}
ok = []
for name in sorted(sys.stdlib_module_names - skip):
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            __import__(name)
        ok.append(name)
    except BaseException:
        pass
out["ok"] = ok
'''
        body = 'import sys\n' + body
        runs = [(PYTHON, False)]
        if SYSTEM_PYTHON:
            runs.append((SYSTEM_PYTHON, False))
            if IS_ROOT and SETPRIV:
                runs.append((SYSTEM_PYTHON, True))
        for python, as_nobody in runs:
            free = run_child(None, body, python=python, as_nobody=as_nobody)['ok']
            confined = run_child(NO_AUDIT, body, python=python, as_nobody=as_nobody)
            self.assertEqual(confined['applied'], [l for l in EXPECTED_STRICT if l != 'audit'])
            self.assertGreater(len(free), 200)
            self.assertEqual(confined['ok'], free, (python, as_nobody,
                                                    sorted(set(free) - set(confined['ok']))))

    def test_tcp_connect_fails_under_each_layer(self):
        body = r'''
import socket
def connect():
    s = socket.socket()
    s.settimeout(2)
    s.connect(("127.0.0.1", 22))
out["connect"] = attempt(connect)
'''
        no_audit = dict(NO_AUDIT, required=[])
        full = run_child(no_audit, body)
        self.assertTrue(blocked(full['connect'], 'EPERM'), full)               # seccomp: socket()
        netns_only = run_child(dict(no_audit, seccomp=False, landlock=False), body)
        self.assertIn('netns', netns_only['applied'])
        self.assertTrue(blocked(netns_only['connect'], 'ENETUNREACH'), netns_only)  # only a downed lo
        landlock_only = run_child(dict(no_audit, seccomp=False, namespaces=False), body)
        self.assertIn('landlock-net', landlock_only['applied'])
        self.assertTrue(blocked(landlock_only['connect'], 'EACCES'), landlock_only)  # Landlock TCP

    def test_subprocess_fails_without_the_block_list(self):
        body = r'''
import subprocess
out["run"] = attempt(lambda: subprocess.run(["/bin/true"]).returncode)
out["popen"] = attempt(lambda: subprocess.Popen(["/bin/sh", "-c", "exit 0"]).wait())
out["system"] = attempt(lambda: os.system("true"))
out["counts"] = audit_counts()
'''
        out = run_child(dict(STRICT, auditHook={}), body)
        self.assertTrue(blocked(out['run'], 'EPERM'), out)
        self.assertTrue(blocked(out['popen'], 'EPERM'), out)
        self.assertEqual(out['system'], {'ok': True, 'value': 127 << 8})
        self.assertGreaterEqual(out['counts'].get('subprocess.Popen', 0), 2)
        self.assertEqual(out['counts'].get('os.system'), 1)

    def test_ctypes_cannot_undo_or_escape(self):
        body = r'''
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    rc = getattr(libc, name)(*args)
    return [rc, errno.errorcode.get(ctypes.get_errno())]
out["unshare"] = call("unshare", CLONE_NEWUSER)
out["unshareNet"] = call("unshare", CLONE_NEWNET)
out["setuid0"] = call("setuid", 0)
out["ptrace"] = call("ptrace", 16, os.getppid(), 0, 0)          # PTRACE_ATTACH
out["clone3"] = [libc.syscall(ctypes.c_long(435), None, ctypes.c_long(0)), errno.errorcode.get(ctypes.get_errno())]
out["future"] = [libc.syscall(ctypes.c_long(MAX_REVIEWED_NR + 1)), errno.errorcode.get(ctypes.get_errno())]
out["x32"] = [libc.syscall(ctypes.c_long(0x40000000 | 39)), errno.errorcode.get(ctypes.get_errno())]
out["getpid"] = libc.getpid() == os.getpid()
out["chmod"] = attempt(lambda: os.chmod("/dev/null", os.stat("/dev/null").st_mode & 0o7777))
# Process-directed calls reach only this process. (Values written are the current ones, so a
# broken filter could not hurt the test runner.)
import resource
ppid = os.getppid()
out["prlimitParent"] = attempt(lambda: resource.prlimit(ppid, resource.RLIMIT_NOFILE))
out["prlimitSelf"] = attempt(lambda: resource.prlimit(os.getpid(), resource.RLIMIT_NOFILE))
out["setrlimit"] = attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)))
out["reniceParent"] = attempt(lambda: os.setpriority(os.PRIO_PROCESS, ppid, os.getpriority(os.PRIO_PROCESS, ppid)))
out["reniceUser"] = attempt(lambda: os.setpriority(os.PRIO_USER, 0, os.getpriority(os.PRIO_USER, 0)))
out["reniceSelf"] = attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 1))
out["affinityParent"] = attempt(lambda: os.sched_setaffinity(ppid, os.sched_getaffinity(ppid)))
out["affinitySelf"] = attempt(lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)))
out["inotify"] = attempt(lambda: __import__("posix") and libc.inotify_add_watch(libc.inotify_init1(0), b"/etc", 0xfff) == -1 and ctypes.get_errno())
pdeathsig = ctypes.c_int(-1)
libc.prctl(2, ctypes.byref(pdeathsig), 0, 0, 0)                 # PR_GET_PDEATHSIG
out["pdeathsig"] = pdeathsig.value
out["nnp"] = _prctl(PR_GET_NO_NEW_PRIVS)
out["seccompMode"] = _prctl(PR_GET_SECCOMP)
'''
        # The bootstrap sets PR_SET_PDEATHSIG before apply(); the user namespace must keep it.
        pre = '_prctl(1, 9)   # PR_SET_PDEATHSIG, SIGKILL'
        out = run_child(NO_AUDIT, body, pre=pre)
        self.assertEqual(out['pdeathsig'], 9)
        self.assertEqual(out['unshare'], [-1, 'EPERM'])
        self.assertEqual(out['unshareNet'], [-1, 'EPERM'])
        self.assertEqual(out['setuid0'], [-1, 'EPERM'])
        self.assertEqual(out['ptrace'], [-1, 'EPERM'])
        self.assertEqual(out['clone3'], [-1, 'ENOSYS'])
        self.assertEqual(out['future'], [-1, 'ENOSYS'])
        self.assertEqual(out['x32'], [-1, 'EPERM'])
        self.assertTrue(out['getpid'])
        self.assertTrue(blocked(out['chmod'], 'EPERM'), out['chmod'])
        for key in ('prlimitParent', 'reniceParent', 'reniceUser', 'affinityParent'):
            self.assertTrue(blocked(out[key], 'EPERM'), (key, out[key]))
        for key in ('prlimitSelf', 'setrlimit', 'reniceSelf', 'affinitySelf'):
            self.assertTrue(out[key]['ok'], (key, out[key]))
        self.assertEqual(out['inotify'], {'ok': True, 'value': 1})   # EPERM
        self.assertEqual((out['nnp'], out['seccompMode']), (1, 2))

    @unittest.skipUnless(SYSTEM_PYTHON and os.path.isdir('/usr/lib/python3/dist-packages/yaml'),
                         'needs /usr/bin/python3 and python3-yaml in dist-packages (apt-get install python3-yaml)')
    def test_landlock_enforces_the_package_allow_list(self):
        body = r'''
import sys, importlib
sys.path.append("/usr/lib/python3/dist-packages")
out["yaml"] = attempt(lambda: importlib.import_module("yaml").safe_load("a: 1"))
'''
        pkg = '/usr/lib/python3/dist-packages/yaml'
        body += r'''
out["read"] = attempt(lambda: len(open("/usr/lib/python3/dist-packages/yaml/__init__.py", "rb").read()))
out["list"] = attempt(lambda: len(os.listdir("/usr/lib/python3/dist-packages")))
'''
        # Unlisted: hidden under an empty tmpfs in the worker's mount namespace.
        unlisted = run_child(dict(NO_AUDIT, required=[]), body, python=SYSTEM_PYTHON)
        self.assertIn('mountns', unlisted['applied'])
        self.assertEqual(unlisted['yaml']['type'], 'ModuleNotFoundError', unlisted)
        self.assertTrue(blocked(unlisted['read'], 'ENOENT'), unlisted)
        self.assertEqual(unlisted['list'], {'ok': True, 'value': 0})
        # Listed with its package: the directory is not hidden, Landlock grants the package.
        listed = run_child(dict(NO_AUDIT, required=[], readPaths=[pkg]), body, python=SYSTEM_PYTHON)
        self.assertEqual(listed['yaml'], {'ok': True, 'value': {'a': 1}})
        self.assertTrue(listed['read']['ok'], listed)
        # A listed directory (listPaths) without the package: carved out of /usr/lib instead,
        # so it can be listed but its files stay unreadable.
        dirs = run_child(dict(NO_AUDIT, required=[], listPaths=[os.path.dirname(pkg)]), body,
                         python=SYSTEM_PYTHON)
        self.assertTrue(blocked(dirs['yaml'], 'EACCES'), dirs)
        self.assertTrue(blocked(dirs['read'], 'EACCES'), dirs)
        self.assertGreater(dirs['list']['value'], 0)
        # No user namespace (so no mount namespace): the carve-out alone.
        carved = run_child(dict(NO_AUDIT, required=['landlock', 'seccomp']), body,
                           python=SYSTEM_PYTHON, pre=NO_USERNS_PRE)
        self.assertNotIn('mountns', carved['applied'])
        self.assertTrue(blocked(carved['yaml'], 'EACCES'), carved)
        self.assertTrue(blocked(carved['read'], 'EACCES'), carved)
        # The audit hook's package allow-list says no to an unlisted package that exists...
        hooked = dict(STRICT, readPaths=[pkg], auditHook={'allowedPackages': ['json5']})
        body2 = body.replace('importlib.import_module("yaml")', '__import__("yaml")')
        out = run_child(hooked, body2, python=SYSTEM_PYTHON)
        self.assertEqual(out['yaml']['type'], 'PermissionError', out)
        # ...and lets a listed one through.
        hooked['auditHook'] = {'allowedPackages': ['yaml']}
        self.assertEqual(run_child(hooked, body2, python=SYSTEM_PYTHON)['yaml']['ok'], True)

    @unittest.skipUnless(IS_ROOT and os.path.isdir('/usr/lib/python3/dist-packages/yaml'),
                         'needs root (to bind-mount /usr) and python3-yaml in dist-packages (apt-get install python3-yaml)')
    def test_package_dirs_hidden_wherever_reachable(self):
        # Landlock rules belong to inodes: /usr bind-mounted elsewhere exposes /usr/lib's whole-tree
        # grant there too, so a package directory must be hidden at each path it can be reached.
        import tempfile
        alias = tempfile.mkdtemp(prefix='skein-alias-')
        self.addCleanup(os.rmdir, alias)
        pre = r'''
import ctypes
_l = ctypes.CDLL(None, use_errno=True)
assert _l.unshare(CLONE_NEWNS) == 0
assert _l.mount(None, b'/', None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) == 0
assert _l.mount(b'/usr', %r, None, ctypes.c_ulong(4096), None) == 0   # MS_BIND
''' % alias.encode()
        body = r'''
A = %r
out["mounts"] = last_report.get("hidden")
out["stdlibViaAlias"] = attempt(lambda: len(open(A + "/lib/python3.11/json/__init__.py", "rb").read()) > 0)
out["readViaAlias"] = attempt(lambda: open(A + "/lib/python3/dist-packages/yaml/__init__.py", "rb").read(1))
out["read"] = attempt(lambda: open("/usr/lib/python3/dist-packages/yaml/__init__.py", "rb").read(1))
out["listViaAlias"] = attempt(lambda: os.listdir(A + "/lib/python3/dist-packages"))
site = os.path.join(os.path.dirname(os.__file__), "site-packages")
out["site"] = attempt(lambda: os.listdir(site)) if os.path.isdir(site) else {"ok": True, "value": []}
''' % alias
        out = run_child(NO_AUDIT, body, pre=pre)
        self.assertEqual(out['applied'], [l for l in EXPECTED_STRICT if l != 'audit'], out)
        self.assertIn(alias + '/lib/python3/dist-packages', out['mounts'])
        self.assertIn('/usr/lib/python3/dist-packages', out['mounts'])
        if os.path.isdir('/usr/lib/python3.11/json'):
            self.assertEqual(out['stdlibViaAlias'], {'ok': True, 'value': True})   # same inodes
        self.assertTrue(blocked(out['readViaAlias'], 'ENOENT'), out)
        self.assertTrue(blocked(out['read'], 'ENOENT'), out)
        self.assertEqual(out['listViaAlias'], {'ok': True, 'value': []})
        self.assertEqual(out['site'], {'ok': True, 'value': []})
        # A listed directory is carved out instead: unreadable through either path.
        out = run_child(dict(NO_AUDIT, listPaths=['/usr/lib/python3/dist-packages']), body, pre=pre)
        self.assertNotIn('/usr/lib/python3/dist-packages', out['mounts'])
        self.assertTrue(blocked(out['readViaAlias'], 'EACCES'), out)
        self.assertTrue(blocked(out['read'], 'EACCES'), out)
        self.assertEqual(out['site'], {'ok': True, 'value': []})   # still hidden

    @unittest.skipUnless(SYSTEM_PYTHON and os.path.isdir('/usr/lib/python3/dist-packages/numpy'),
                         'needs /usr/bin/python3 and python3-numpy (apt-get install python3-numpy)')
    def test_numpy_under_strict_policy(self):
        body = r'''
import sys
sys.path.append("/usr/lib/python3/dist-packages")
def use_numpy():
    import numpy as np
    a = np.arange(1.0, 10.0).reshape(3, 3) + np.eye(3)
    return [np.__version__ != "", round(float(np.linalg.det(a)), 6), (a @ a).shape]
out["numpy"] = attempt(use_numpy)
'''
        policy = dict(STRICT, readPaths=['/usr/lib/python3/dist-packages/numpy'],
                      auditHook={'blockedModules': ['ctypes', 'socket', 'subprocess'],
                                 'allowedPackages': ['numpy'], 'blockedAs': 'ImportError'})
        out = run_child(policy, body, python=SYSTEM_PYTHON)
        self.assertEqual(out['applied'], EXPECTED_STRICT)
        self.assertEqual(out['numpy'], {'ok': True, 'value': [True, -2.0, [3, 3]]})
        # numpy does `try: import ctypes / except ImportError`: a PermissionError breaks it.
        policy['auditHook'] = dict(policy['auditHook'], blockedAs='PermissionError')
        out = run_child(policy, body, python=SYSTEM_PYTHON)
        self.assertEqual(out['numpy']['type'], 'PermissionError')

    def test_blocked_as_import_error(self):
        body = 'out["ctypes"] = attempt(lambda: __import__("ctypes"))'
        policy = dict(NO_AUDIT, required=[], auditHook={'blockedModules': ['ctypes'],
                                                        'blockedAs': 'ImportError'})
        out = run_child(policy, body)
        self.assertEqual(out['ctypes']['type'], 'BlockedImportError')
        self.assertIn('blocked by policy', out['ctypes']['message'])

    def test_limits(self):
        body = r'''
import resource
out["bigAlloc"] = attempt(lambda: len(bytearray(2 << 30)))
fds = []
def exhaust():
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
out["nofile"] = attempt(exhaust)
for fd in fds:
    os.close(fd)
out["core"] = resource.getrlimit(resource.RLIMIT_CORE)
out["cpu"] = resource.getrlimit(resource.RLIMIT_CPU)
'''
        out = run_child(NO_AUDIT, body)
        self.assertEqual(out['bigAlloc']['type'], 'MemoryError')
        self.assertTrue(blocked(out['nofile'], 'EMFILE'), out['nofile'])
        self.assertEqual(out['core'], [0, 0])
        self.assertEqual(out['cpu'], [30, 31])

    def test_file_size_limit(self):
        # Landlock off so a file can be written at all; FSIZE must stop it at 1 MiB.
        body = r'''
path = "/tmp/skein-fsize-%d" % os.getpid()
def write():
    with open(path, "wb") as f:
        f.write(b"x" * (2 << 20))
out["write"] = attempt(write)
os.unlink(path)
'''
        out = run_child(dict(NO_AUDIT, required=[], landlock=False), body)
        self.assertTrue(blocked(out['write'], 'EFBIG'), out)

    def test_probe_leaves_the_process_unchanged(self):
        body = r'''
def status():
    with open("/proc/self/status") as f:
        return {l.split(":")[0]: l.split(":", 1)[1].strip() for l in f}
before = status()
out["probe"] = probe()
after = status()
out["same"] = {k: before[k] == after[k] for k in ("NoNewPrivs", "Seccomp", "Uid", "Gid", "Threads", "CapEff")}
out["children"] = attempt(lambda: os.waitpid(-1, os.WNOHANG))
out["ns"] = os.readlink("/proc/self/ns/user") == os.readlink("/proc/%d/ns/user" % os.getppid())
'''
        out = run_child(None, body)
        self.assertTrue(all(out['same'].values()), out['same'])
        self.assertEqual(out['children']['errno'], 'ECHILD')   # the probe child was reaped
        self.assertTrue(out['ns'])
        p = out['probe']
        self.assertEqual(set(p) >= {'python', 'seccomp', 'landlock', 'userns', 'bwrap',
                                    'noNewPrivs', 'arch'}, True, p)
        self.assertEqual(p['python'], '%d.%d.%d' % sys.version_info[:3])
        self.assertIn('errno', p['seccomp']['actions'])
        self.assertEqual(p['landlock']['abi'], HOST['landlock']['abi'])
        self.assertTrue(p['noNewPrivs'])

    def test_probe_finds_executables_as_shutil_which_does(self):
        # probe() reports bwrap through its own PATH walk (shutil's import is too costly for
        # the start-up's one interpreter run); it must answer as shutil.which would.
        body = r'''
import shutil, tempfile
d = tempfile.mkdtemp()
os.mkdir(os.path.join(d, "adir"))
with open(os.path.join(d, "noexec"), "w") as f:
    f.write("")
cases = []
for path in (None, "/bin:/usr/bin", d + ":/usr/bin", ":/bin", "/nonexistent"):
    if path is None:
        os.environ.pop("PATH", None)
    else:
        os.environ["PATH"] = path
    for name in ("bwrap", "sh", "python3", "adir", "noexec", "no-such-tool"):
        cases.append([path, name, _which(name), shutil.which(name)])
out["cases"] = cases
'''
        for path, name, ours, theirs in run_child(None, body)['cases']:
            self.assertEqual(ours, theirs, (path, name))

    def test_probe_as_unprivileged_user(self):
        if not (IS_ROOT and SETPRIV and SYSTEM_PYTHON):
            self.skipTest('needs root, setpriv and /usr/bin/python3 (apt-get install util-linux python3)')
        p = run_child(None, 'out["p"] = probe()', python=SYSTEM_PYTHON, as_nobody=True)['p']
        self.assertEqual((p['uid'], p['userns'], p['landlock']['abi'] > 0,
                          p['seccomp']['available']), (65534, True, True, True))


class PolicyHandling(unittest.TestCase):
    def test_unknown_required_layer_fails_before_anything_is_applied(self):
        body = r'''
with open("/proc/self/status") as f:
    out["status"] = {l.split(":")[0]: l.split(":", 1)[1].strip() for l in f}
'''
        out = run_child({'required': ['nonexistent']}, body)
        self.assertTrue(out['error'].startswith('nonexistent: unknown layer'), out)
        self.assertNotIn('applied', out)
        self.assertEqual((out['status']['Seccomp'], out['status']['NoNewPrivs']), ('0', '0'))

    def test_required_but_disabled_layer(self):
        out = run_child({'required': ['seccomp'], 'seccomp': False}, '')
        self.assertEqual(out['error'], 'seccomp: disabled by policy')

    def test_required_layer_the_process_cannot_take(self):
        # Threads running before apply(): unshare and Landlock (which would only confine the
        # calling thread) must refuse; seccomp still reaches every thread through TSYNC.
        pre = r'''
import threading, time
_stop = threading.Event()
_t = threading.Thread(target=_stop.wait, daemon=True)
_t.start()
'''
        out = run_child({'required': ['seccomp'], 'auditHook': None}, '_stop.set()', pre=pre)
        self.assertEqual(out['applied'], ['setsid', 'rlimits', 'seccomp'], out)
        self.assertIn('threads', out['skipped']['userns'])
        self.assertIn('threads', out['skipped']['landlock'])
        out = run_child({'required': ['landlock']}, '_stop.set()', pre=pre)
        self.assertTrue(out['error'].startswith('landlock: process has 2 threads'), out)

    @unittest.skipUnless(FULL_HOST, 'host lacks a full set of layers')
    def test_host_without_user_namespaces(self):
        # Simulate Docker's default profile / Ubuntu's AppArmor: a seccomp filter installed
        # before apply() refuses unshare(CLONE_NEWUSER) with EPERM.
        pre = NO_USERNS_PRE
        out = run_child({'required': ['landlock', 'seccomp'], 'auditHook': None}, '', pre=pre)
        self.assertEqual(out['skipped']['userns'], 'unshare(CLONE_NEWUSER): EPERM')
        self.assertEqual(out['skipped']['mountns'], 'unshare(CLONE_NEWUSER): EPERM')
        if IS_ROOT:   # root still gets private network and IPC namespaces
            self.assertEqual(out['applied'], ['setsid', 'netns', 'ipcns', 'rlimits', 'landlock',
                                              'landlock-net', 'landlock-scope', 'seccomp'])
        else:
            self.assertNotIn('netns', out['applied'])
        out = run_child({'required': ['userns'], 'auditHook': None}, '', pre=pre)
        self.assertEqual(out['error'], 'userns: unshare(CLONE_NEWUSER): EPERM')

    def test_everything_disabled(self):
        out = run_child({'setsid': False, 'namespaces': False, 'landlock': False,
                         'seccomp': False, 'auditHook': None}, 'out["uid"] = os.getuid()')
        self.assertEqual(out['applied'], ['rlimits'])
        self.assertEqual(out['uid'], os.geteuid())

    def test_blocked_dotted_names_and_purge(self):
        body = r'''
out["xmlEtree"] = attempt(lambda: __import__("xml.etree.ElementTree"))
out["xmlDom"] = attempt(lambda: __import__("xml.dom.minidom") and True)
out["json"] = attempt(lambda: __import__("json") and True)
'''
        policy = {'auditHook': {'blockedModules': ['xml.etree', 'json']}, 'namespaces': False,
                  'landlock': False, 'seccomp': False}
        out = run_child(policy, body, pre='import json')   # json imported before apply()
        self.assertEqual(out['xmlEtree']['type'], 'PermissionError')
        self.assertEqual(out['xmlDom'], {'ok': True, 'value': True})
        self.assertEqual(out['json']['type'], 'PermissionError')   # purged, so it is seen

    def test_seccomp_table_matches_system_headers(self):
        import re
        ns = {}
        exec(compile(CONFINE, '<skein-confine>', 'exec'), ns)
        checked = 0
        for arch, header in (('x86_64', '/usr/include/x86_64-linux-gnu/asm/unistd_64.h'),
                             ('aarch64', '/usr/include/asm-generic/unistd.h')):
            if not os.path.exists(header):
                continue
            with open(header) as f:
                known = {m.group(1): int(m.group(2)) for m in
                         re.finditer(r'#define __NR(?:3264)?_(\w+)\s+(\d+)', f.read())}
            for name, nr in ns['_ARCHES'][arch]['nr'].items():
                if name in known:   # headers older than the table lack the newest calls
                    self.assertEqual(nr, known[name], (arch, name))
                    checked += 1
            for name in ns['SECCOMP_DENY']:   # every denied name exists for x86_64
                if arch == 'x86_64':
                    self.assertIn(name, ns['_ARCHES'][arch]['nr'], name)
        if not checked:
            self.skipTest('no kernel headers to compare with (apt-get install linux-libc-dev)')
        # a filter that fits the classic-BPF limits (4096 instructions, 8-bit jumps)
        for arch in ns['_ARCHES']:
            prog = ns['seccomp_program'](arch, os.getpid())
            self.assertLess(len(prog), 4096)
            self.assertTrue(all(jt < 256 and jf < 256 for _, jt, jf, _ in prog))


def _spawn_ms(argv, runs, stdin=b''):
    """Spawn -> first stdout line ("ready"), in ms: (wall samples, CPU samples). CPU time
    (user + system of the child, from wait4) is what to compare on a busy machine."""
    wall, cpu = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd='/', env=ENV, stdout=subprocess.PIPE,
                                stdin=subprocess.PIPE)
        proc.stdin.write(stdin)
        proc.stdin.close()
        line = proc.stdout.readline()
        wall.append((time.perf_counter() - t0) * 1000)
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu.append((usage.ru_utime + usage.ru_stime) * 1000)
        assert line.strip() == b'ready', line
    return wall, cpu


class SpawnCost(unittest.TestCase):
    @unittest.skipUnless(FULL_HOST, 'host lacks a full set of layers')
    def test_spawn_to_ready(self):
        runs = int(os.environ.get('SKEIN_SPAWN_RUNS', '30'))
        # What the worker bootstrap imports before it reports ready (ctypes: PR_SET_PDEATHSIG).
        base = 'import sys, os, json, builtins, traceback, ctypes\n'
        ready = "\nos.write(1, b'ready\\n')\n"
        policy = json.dumps(STRICT)
        apply_src = '\napply(json.loads(%r))' % policy
        # Compiling confine.py costs milliseconds per spawn; a code object compiled once by the
        # agent (marshal, same interpreter) and sent to the worker skips that.
        import marshal
        code = marshal.dumps(compile(CONFINE, '<skein-confine>', 'exec'))
        cases = {
            'interpreter only': ("import os\nos.write(1, b'ready\\n')", b''),
            'bootstrap imports': (base + ready, b''),
            'bootstrap + strict, source': (base + CONFINE + apply_src + ready, b''),
            'bootstrap + strict, marshalled': (
                base + 'import marshal\nexec(marshal.loads(sys.stdin.buffer.read()))' + apply_src
                + ready, code),
        }
        wall, cpu = {}, {}
        for _ in range(2):   # interleave rounds so drift hits every case alike
            for name, (src, data) in cases.items():
                w, c = _spawn_ms([PYTHON, '-I', '-S', '-u', '-c', src], max(1, runs // 2), data)
                wall.setdefault(name, []).extend(w)
                cpu.setdefault(name, []).extend(c)
        print('\nspawn to ready, %d runs each, %s (load %.1f):' % (runs, PYTHON, os.getloadavg()[0]))
        print('  %-32s %12s %12s %12s' % ('', 'wall median', 'wall min', 'CPU median'))
        med_wall = {n: statistics.median(v) for n, v in wall.items()}
        min_wall = {n: min(v) for n, v in wall.items()}
        med_cpu = {n: statistics.median(v) for n, v in cpu.items()}
        for name in cases:
            print('  %-32s %9.2f ms %9.2f ms %9.2f ms'
                  % (name, med_wall[name], min_wall[name], med_cpu[name]))
        base = 'bootstrap imports'
        for name in ('bootstrap + strict, source', 'bootstrap + strict, marshalled'):
            print('  %s: confinement adds %.2f ms (median), %.2f ms (min)'
                  % (name, med_wall[name] - med_wall[base], min_wall[name] - min_wall[base]))
        print('  (CPU includes interpreter shutdown; on a busy host compare the minimums)')


if __name__ == '__main__':
    print('host: %s' % json.dumps(HOST))
    unittest.main(verbosity=2 if '-v' in sys.argv else 1)
