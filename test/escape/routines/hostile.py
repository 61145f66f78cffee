"""Hostile routines for test/escape/escape.test.ts: one function per escape technique.

Each routine tries one forbidden thing. It either lets the refusal propagate (the test then
sees SKEIN_ERR_ROUTINE_RAISED with the exception type and errno), or returns a value that
proves the refusal (an errno name, an exit status, a list of what was refused). A routine
never reports success quietly: where the forbidden thing would have worked, it returns a
string starting with "ESCAPED" or leaves a marker file the test looks for.

Nothing is imported at module level except os and sys: routine source is loaded after the
audit hook is installed, so a blocked import at the top would stop the worker from starting.

Helpers reach modules and libc the way an attacker would, without the import statement:
  _raw(name)    BuiltinImporter / PathFinder + exec_module, no import statement. Loading an
                extension module (.so) still raises the "import" audit event, so for a blocked
                one (_socket under pyenv) it retries under a dotted alias the block-list misses.
  _libc()       libc through the _ctypes extension loaded by _raw, no ctypes package
"""
import os
import sys


def _errname(e):
    import errno
    code = getattr(e, 'errno', None)
    return errno.errorcode.get(code, str(code)) if code else type(e).__name__


def _raw(name):
    """Load a module without the import system's audit event (the block-list bypass from
    SANDBOX.md). Single-phase extension modules register themselves in sys.modules; forget
    them afterwards so this worker's later imports still go through the hook."""
    before = set(sys.modules)
    module = sys.modules.get(name)
    if module is not None:
        return module
    bootstrap = sys.modules['_frozen_importlib']
    external = sys.modules['_frozen_importlib_external']
    spec = bootstrap.BuiltinImporter.find_spec(name)
    if spec is None:
        spec = external.PathFinder.find_spec(name)
    if spec is None:
        raise ImportError('cannot find %s' % name)
    try:
        module = bootstrap.module_from_spec(spec)
    except (ImportError, PermissionError):   # BlockedImportError (or PermissionError with blockedAs unset)
        # Loading an extension module raises the "import" audit event with the spec's name,
        # and the hook refuses a blocked name. The init function is looked up by the last
        # dotted component only, so a prefixed name loads the same module unrefused.
        if not isinstance(spec.loader, external.ExtensionFileLoader):
            raise
        alias = 'skein_escape.' + name
        spec = bootstrap.spec_from_loader(alias, external.ExtensionFileLoader(alias, spec.origin))
        module = bootstrap.module_from_spec(spec)
    spec.loader.exec_module(module)
    for extra in set(sys.modules) - before:
        del sys.modules[extra]
    return module


class _Libc:
    """Just enough of ctypes, built on the raw _ctypes extension."""

    def __init__(self):
        _c = _raw('_ctypes')

        class c_long(_c._SimpleCData):
            _type_ = 'l'

        class c_int(_c._SimpleCData):
            _type_ = 'i'

        class c_char(_c._SimpleCData):
            _type_ = 'c'

        class LongFn(_c.CFuncPtr):
            _flags_ = _c.FUNCFLAG_CDECL | _c.FUNCFLAG_USE_ERRNO
            _restype_ = c_long

        class IntFn(_c.CFuncPtr):
            _flags_ = _c.FUNCFLAG_CDECL | _c.FUNCFLAG_USE_ERRNO
            _restype_ = c_int

        class Dll:
            pass

        self._c, self.c_long, self.c_char = _c, c_long, c_char
        self.fns = {'long': LongFn, 'int': IntFn}
        self.dll = Dll()
        self.dll._handle = _c.dlopen(None, os.RTLD_NOW)

    def buf(self, n):
        return type('Buf', (self._c.Array,), {'_type_': self.c_char, '_length_': n})()

    def call(self, name, *args, restype='int'):
        """(return value, errno) of libc function `name` (returning C int, or long); ints are
        widened to long, str/bytes become char*, {"buf": n} a zeroed buffer of n bytes, None
        NULL."""
        conv = []
        for a in args:
            if isinstance(a, bool) or a is None:
                conv.append(None if a is None else self.c_long(int(a)))
            elif isinstance(a, int):
                conv.append(self.c_long(a))
            elif isinstance(a, str):
                conv.append(a.encode())
            elif isinstance(a, dict):
                conv.append(self.buf(int(a['buf'])))
            else:
                conv.append(a)
        self._c.set_errno(0)
        ret = self.fns[restype]((name, self.dll))(*conv)
        return ret, self._c.get_errno()


def _libc():
    return _Libc()


def _raise_errno(what, err):
    raise OSError(err, '%s: %s' % (what, os.strerror(err)))


def _proto_fd():
    """The worker's private protocol descriptor, found as a hostile routine would."""
    import fcntl
    import stat
    for fd in range(3, 256):
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) and flags & os.O_ACCMODE != os.O_RDONLY:
            return fd
    raise RuntimeError('no protocol descriptor found')


def _sh(marker):
    return 'touch %s' % marker


# --- command execution -----------------------------------------------------------------------

def exec_os_system(marker):
    # os.system returns the wait status, or -1 if the shell could not even be started.
    return os.system(_sh(marker))


def exec_os_popen(marker):
    # os.popen is built on subprocess: the block-list refuses the import.
    with os.popen(_sh(marker)) as f:
        return 'ESCAPED: ' + f.read()


def exec_subprocess_run(marker):
    import subprocess
    subprocess.run(['/bin/sh', '-c', _sh(marker)])
    return 'ESCAPED'


def exec_subprocess_bypass(marker):
    # subprocess.py loaded without the import statement: the block-list never sees it, the
    # kernel still refuses the fork.
    subprocess = _raw('subprocess')
    subprocess.run(['/bin/sh', '-c', _sh(marker)])
    return 'ESCAPED'


def exec_os_execv(marker):
    os.execv('/bin/sh', ['sh', '-c', _sh(marker)])


def exec_os_fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return 'ESCAPED: forked %d' % pid


def exec_posix_spawn(marker):
    pid = os.posix_spawn('/bin/sh', ['sh', '-c', _sh(marker)], {})
    os.waitpid(pid, 0)
    return 'ESCAPED: spawned %d' % pid


def exec_pty_spawn(marker):
    import pty
    pty.spawn(['/bin/sh', '-c', _sh(marker)])
    return 'ESCAPED'


def exec_fork_exec_subclasses(marker):
    # The classic: BuiltinImporter from object's subclasses, then _posixsubprocess.fork_exec,
    # which raises no audit event on 3.11.
    importer = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'BuiltinImporter'][0]
    try:
        fork_exec = importer.load_module('_posixsubprocess').fork_exec
    except ImportError:   # an extension module on this interpreter, not built in
        path_finder = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'PathFinder'][0]
        spec = path_finder.find_spec('_posixsubprocess')
        module = sys.modules['_frozen_importlib'].module_from_spec(spec)
        spec.loader.exec_module(module)
        fork_exec = module.fork_exec
    errpipe_read, errpipe_write = os.pipe()
    try:
        pid = fork_exec([b'/bin/sh', b'-c', _sh(marker).encode()], [b'/bin/sh'], True, (errpipe_write,),
                        None, None, -1, -1, -1, -1, -1, -1, errpipe_read, errpipe_write,
                        False, False, -1, None, None, None, -1, None, True)
    finally:
        os.close(errpipe_read)
        os.close(errpipe_write)
    os.waitpid(pid, 0)
    return 'ESCAPED: fork_exec %d' % pid


def exec_loader_posix(marker):
    # __builtins__.__loader__ is BuiltinImporter: posix without the os module.
    posix = __builtins__.__loader__.load_module('posix')
    result = {}
    try:
        pid = posix.fork()
        if pid == 0:
            posix._exit(0)
        result['fork'] = 'ESCAPED'
    except OSError as e:
        result['fork'] = _errname(e)
    try:
        posix.execv('/bin/sh', ['sh', '-c', _sh(marker)])
    except OSError as e:
        result['execv'] = _errname(e)
    return result


def exec_wrap_close_globals(marker):
    # os.system reached through a class's __init__ globals (no import at all).
    wrap = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]
    return wrap.__init__.__globals__['system'](_sh(marker))


def exec_ctypes_import():
    import ctypes
    return 'ESCAPED: %r' % ctypes.CDLL(None).system


def exec_ctypes_system(marker):
    # libc system() via _ctypes loaded past the block-list: -1 when the shell cannot start.
    ret, err = _libc().call('system', _sh(marker))
    return {'ret': ret, 'errno': os.strerror(err) if err else None}


def exec_ctypes_fork():
    ret, err = _libc().call('fork')
    if ret == 0:
        os._exit(0)
    if ret == -1:
        _raise_errno('fork', err)
    return 'ESCAPED: fork %d' % ret


def exec_multiprocessing():
    import multiprocessing
    p = multiprocessing.Process(target=print)
    p.start()
    return 'ESCAPED'


def exec_subinterpreter(marker):
    # A subinterpreter has its own (empty) audit hooks, so the block-list does not apply there;
    # the kernel layers are per-process and do. isolated=False: an isolated subinterpreter
    # refuses subprocesses by itself, before the kernel is asked.
    interpreters = _raw('_xxsubinterpreters')
    r, w = os.pipe()
    code = '''
import os, json
res = {"system": os.system(%(cmd)r)}
try:
    import subprocess
    res["import_subprocess"] = "ok"
    try:
        subprocess.run(["/bin/sh", "-c", %(cmd)r])
        res["subprocess_run"] = "ESCAPED"
    except OSError as e:
        res["subprocess_run"] = type(e).__name__ + ":" + str(e.errno)
except ImportError as e:
    res["import_subprocess"] = type(e).__name__
try:
    os.fork()
    res["fork"] = "ESCAPED"
except Exception as e:
    res["fork"] = type(e).__name__
os.write(%(w)d, json.dumps(res).encode())
''' % {'cmd': _sh(marker), 'w': w}
    interp = interpreters.create(isolated=False)
    try:
        interpreters.run_string(interp, code)
    finally:
        interpreters.destroy(interp)
        os.close(w)
    try:
        data = os.read(r, 65536)
    finally:
        os.close(r)
    import json
    return json.loads(data)


# --- network ---------------------------------------------------------------------------------

def net_socket_import(port):
    import socket
    socket.create_connection(('127.0.0.1', port), timeout=2).close()
    return 'ESCAPED'


def net_tcp_connect(port):
    # _socket past the block-list: socket() itself is refused by seccomp.
    _socket = _raw('_socket')
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(('127.0.0.1', int(port)))
    finally:
        s.close()
    return 'ESCAPED: connected to the agent'


def net_udp_sendto(port):
    _socket = _raw('_socket')
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        s.sendto(b'hello', ('127.0.0.1', int(port)))
    finally:
        s.close()
    return 'ESCAPED'


def net_socketpair():
    _socket = _raw('_socket')
    a, b = _socket.socketpair()
    a.close()
    b.close()
    return 'ESCAPED'


def net_unix_connect(path):
    _socket = _raw('_socket')
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.send(b'hello from a worker\n')
    finally:
        s.close()
    return 'ESCAPED'


def net_unix_abstract(name):
    _socket = _raw('_socket')
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect('\0' + name)
    finally:
        s.close()
    return 'ESCAPED'


def net_raw_syscall_socket():
    # socket(AF_INET, SOCK_STREAM, 0) straight through libc.
    ret, err = _libc().call('socket', 2, 1, 0)
    if ret == -1:
        _raise_errno('socket', err)
    return 'ESCAPED: fd %d' % ret


def net_getaddrinfo(host):
    _socket = _raw('_socket')
    return 'ESCAPED: %r' % (_socket.getaddrinfo(host, 443),)


def net_urlopen(port):
    import urllib.request
    return 'ESCAPED: %r' % urllib.request.urlopen('https://127.0.0.1:%d/healthz' % port, timeout=2).status


# --- reading outside the allow-list ----------------------------------------------------------

def read_file(path):
    with open(path, 'rb') as f:
        return 'ESCAPED: read %d bytes' % len(f.read(4096))


def read_etc_passwd():
    return read_file('/etc/passwd')


def read_etc_shadow():
    return read_file('/etc/shadow')


def read_root_home():
    return 'ESCAPED: %r' % os.listdir('/root')


def read_private_key(path):
    return read_file(path)


def read_parent_environ():
    return read_file('/proc/%d/environ' % os.getppid())


def read_proc_dotdot(agent_pid):
    return read_file('/proc/self/../%d/cmdline' % int(agent_pid))


def read_loader_get_data(path):
    # SourceFileLoader.get_data reads any file without the open() builtin.
    external = sys.modules['_frozen_importlib_external']
    data = external.SourceFileLoader('x', path).get_data(path)
    return 'ESCAPED: read %d bytes' % len(data)


def read_list_root():
    return 'ESCAPED: %r' % os.listdir('/')


def read_inherited_fds():
    """Descriptors the worker inherited besides stdio and the protocol pipe: a leaked file or
    directory descriptor would bypass every path-based rule."""
    import stat
    found = {}
    for fd in range(0, 1024):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        kind = ('fifo' if stat.S_ISFIFO(mode) else 'sock' if stat.S_ISSOCK(mode)
                else 'chr' if stat.S_ISCHR(mode) else 'dir' if stat.S_ISDIR(mode)
                else 'reg' if stat.S_ISREG(mode) else 'other')
        found[str(fd)] = kind
    return found


def read_environ(secret_name):
    """The agent passes a minimal environment: no secret of the agent's reaches routines."""
    return {'keys': sorted(os.environ), 'leaked': secret_name in os.environ}


def read_stat_leak(path):
    # Landlock does not cover stat(): metadata of unreadable files is visible (SANDBOX.md).
    st = os.stat(path)
    return {'size': st.st_size, 'mode': st.st_mode}


# --- writing ---------------------------------------------------------------------------------

def write_tmp(path):
    with open(path, 'w') as f:
        f.write('escaped')
    return 'ESCAPED'


def write_cwd():
    with open('pwned.txt', 'w') as f:
        f.write('escaped')
    return 'ESCAPED: wrote %s' % os.path.abspath('pwned.txt')


def write_set_data(path):
    """SourceFileLoader.set_data swallows its own OSError (it is meant for best-effort .pyc
    caching), so the proof is whether the files exist afterwards: one in the test's temp dir,
    one next to the standard library."""
    external = sys.modules['_frozen_importlib_external']
    stdlib_path = os.path.join(os.path.dirname(os.__file__), '__pycache__', 'skein_escape_probe.cpython-311.pyc')
    results = {}
    for key, p in (('temp', path), ('stdlib', stdlib_path)):
        external.SourceFileLoader('x', p).set_data(p, b'escaped')
        results[key] = os.path.exists(p)
    results['stdlibPath'] = stdlib_path
    return results


def write_mkdir(path):
    os.mkdir(path)
    return 'ESCAPED'


def write_symlink(path):
    os.symlink('/etc/shadow', path)
    return 'ESCAPED'


def write_hardlink(path):
    os.link(os.__file__, path)
    return 'ESCAPED'


def write_chmod_stdlib():
    # Metadata is not covered by Landlock; seccomp refuses chmod. The mode is left unchanged
    # even if it were allowed (same mode), so a hole here damages nothing.
    os.chmod(os.__file__, os.stat(os.__file__).st_mode & 0o7777)
    return 'ESCAPED'


def write_utime_stdlib():
    st = os.stat(os.__file__)
    os.utime(os.__file__, ns=(st.st_atime_ns, st.st_mtime_ns))
    return 'ESCAPED'


def write_truncate(path):
    os.truncate(path, 0)
    return 'ESCAPED'


def write_unlink(path):
    os.unlink(path)
    return 'ESCAPED'


def write_rename(path):
    os.rename(path, path + '.moved')
    return 'ESCAPED'


def write_open_rw_stdlib():
    # O_RDWR on a readable stdlib file: read-only grants must not imply write.
    fd = os.open(os.__file__, os.O_RDWR)
    os.close(fd)
    return 'ESCAPED'


# --- signals, ptrace and other processes -----------------------------------------------------

def sig_kill_parent():
    ppid = os.getppid()
    try:
        os.kill(ppid, 9)
    except OSError as e:
        return {'ppid': ppid, 'refused': _errname(e)}
    return {'ppid': ppid, 'refused': None, 'ESCAPED': True}


def sig_killpg_parent():
    # Signal 0 goes through the same permission check without harming anything if it passed
    # (the agent's process group is the test runner's).
    ppid = os.getppid()
    pgid = os.getpgid(ppid)
    try:
        os.killpg(pgid, 0)
    except OSError as e:
        return {'pgid': pgid, 'refused': _errname(e)}
    return {'pgid': pgid, 'refused': None, 'ESCAPED': True}


def sig_pidfd_parent():
    import signal
    ppid = os.getppid()
    fd = os.pidfd_open(ppid)
    try:
        signal.pidfd_send_signal(fd, 0)
    finally:
        os.close(fd)
    return 'ESCAPED: pidfd_send_signal to %d' % ppid


def sig_prlimit_parent():
    # Reading the agent's limits (new limit NULL) is harmless, and still refused.
    import resource
    return 'ESCAPED: %r' % (resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE),)


def sig_setpriority_parent():
    os.setpriority(os.PRIO_PROCESS, os.getppid(), os.getpriority(os.PRIO_PROCESS, os.getppid()))
    return 'ESCAPED'


def ptrace_attach_parent():
    ret, err = _libc().call('syscall', 101, 16, os.getppid(), 0, 0, restype='long')   # PTRACE_ATTACH
    if ret == -1:
        _raise_errno('ptrace', err)
    return 'ESCAPED: attached'


def ptrace_proc_mem():
    return read_file('/proc/%d/mem' % os.getppid())


def ptrace_process_vm_readv():
    libc = _libc()
    ret, err = libc.call('syscall', 310, os.getppid(), {'buf': 16}, 1, {'buf': 16}, 1, 0, restype='long')
    if ret == -1:
        _raise_errno('process_vm_readv', err)
    return 'ESCAPED: %d' % ret


# --- kernel surface --------------------------------------------------------------------------

def raw_syscall(nr, *args):
    """syscall(nr, *args) through libc: args are ints, strings, {"buf": n} or None."""
    ret, err = _libc().call('syscall', int(nr), *args, restype='long')
    if ret == -1:
        _raise_errno('syscall %d' % nr, err)
    return 'ESCAPED: syscall %d returned %d' % (nr, ret)


def kernel_setuid():
    os.setuid(0)
    return 'ESCAPED'


def kernel_setgid():
    os.setgid(0)
    return 'ESCAPED'


def kernel_tiocsti():
    # Terminal input injection on stdin.
    import fcntl
    fcntl.ioctl(0, 0x5412, b'x')
    return 'ESCAPED'


# --- resources -------------------------------------------------------------------------------

def res_memory():
    data = bytearray(4 * 1024 ** 3)
    return 'ESCAPED: %d' % len(data)


def res_spin():
    while True:
        pass


def res_fork_bomb():
    for i in range(10000):
        if os.fork() == 0:
            os._exit(0)
    return 'ESCAPED'


def res_thread_bomb(limit):
    """Starts sleeping threads until the kernel or an rlimit refuses one (bounded by `limit`),
    then releases and joins them."""
    import threading
    stop = threading.Event()
    threads = []
    refused = None
    try:
        for _ in range(int(limit)):
            t = threading.Thread(target=stop.wait)
            t.start()
            threads.append(t)
    except RuntimeError as e:
        refused = '%s: %s' % (type(e).__name__, e)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {'started': len(threads), 'refused': refused}


def res_fd_exhaustion():
    handles = []
    try:
        while len(handles) < 100000:
            handles.append(open('/dev/null', 'rb'))
    finally:
        n = len(handles)
        for h in handles:
            h.close()
    return 'ESCAPED: %d descriptors' % n


def res_huge_file(temp):
    """No writable path anywhere (EACCES), and an anonymous memfd, which needs no path, is
    capped by RLIMIT_FSIZE (EFBIG; CPython ignores SIGXFSZ)."""
    results = {}
    for p in (temp, '/tmp', '/var/tmp', '/dev/shm', os.getcwd(), os.path.dirname(os.__file__)):
        try:
            with open(os.path.join(p, 'skein-escape-huge.bin'), 'wb') as f:
                f.write(b'x')
            results[p] = 'ESCAPED'
        except OSError as e:
            results[p] = _errname(e)
    fd = os.memfd_create('huge')
    try:
        chunk = b'x' * (1024 * 1024)
        written = 0
        try:
            while written < 256 * 1024 * 1024:
                written += os.write(fd, chunk)
            results['memfd'] = 'ESCAPED: %d bytes' % written
        except OSError as e:
            results['memfd'] = _errname(e)
            results['memfdBytes'] = written
    finally:
        os.close(fd)
    return results


def res_huge_output(n):
    return 'x' * int(n)


def res_stderr_flood(lines, long_line):
    out = sys.stderr
    for i in range(int(lines)):
        out.write('flood %06d %s\n' % (i, 'y' * 80))
    out.write('L' * int(long_line) + '\n')
    out.flush()
    return 'flooded'


def res_recursion():
    def f(n):
        return f(n + 1) + 1
    return f(0)


def res_recursion_c_stack():
    # Python-to-Python calls no longer use the C stack on 3.11, but repr() of a nested list
    # recurses in C: with the interpreter's guard lifted, the C stack overflows (SIGSEGV).
    sys.setrecursionlimit(10 ** 8)
    value = []
    for _ in range(300000):
        value = [value]
    return len(repr(value))


# --- crafted bytecode ------------------------------------------------------------------------

def code_replace_consts():
    def victim():
        return ('a', 'b', 'c', 12345, None)
    broken = type(victim)(victim.__code__.replace(co_consts=()), {})
    return repr(broken())


def code_marshal_garbage():
    import marshal
    return repr(marshal.loads(b'\xe3' + b'\xff' * 64))


def code_marshal_crafted():
    # A code object whose bytecode reads constant 255 of an empty table, made with marshal.
    import marshal

    def victim():
        return 1
    code = victim.__code__.replace(co_code=bytes([151, 0, 100, 255, 83, 0]), co_consts=())
    crafted = marshal.loads(marshal.dumps(code))
    return repr(type(victim)(crafted, {})())


# --- the protocol descriptor -----------------------------------------------------------------

def _frame(kind, cid, payload, enc=b'j'):
    """A protocol v2 frame (agent/workers/frames.ts; docs/protocol.md), forged by hand."""
    import struct
    return struct.pack('>IBBI', len(payload), ord(kind), ord(enc), cid) + payload


def _read_frame(fd):
    """One frame the agent sends the worker, read straight from fd 0."""
    import struct

    def exactly(n):
        data = b''
        while len(data) < n:
            chunk = os.read(fd, n - len(data))
            if not chunk:
                os._exit(0)
            data += chunk
        return data
    length, kind, enc, cid = struct.unpack('>IBBI', exactly(10))
    return kind, enc, cid, exactly(length)


def forge_wrong_id():
    os.write(_proto_fd(), _frame('R', 999999999, b'"forged"'))
    import time
    time.sleep(1)
    return 'not reached'


def forge_print():
    # fd 1 points at stderr (and sys.stdout is sys.stderr): whatever a routine prints, through
    # print(), sys.__stdout__ or fd 1 itself, is a log line, not a reply.
    print('{"id":1,"ok":"forged"}', flush=True)
    print('{"id":2,"ok":"forged"}', file=sys.__stdout__, flush=True)
    os.write(1, b'{"id":3,"ok":"forged"}\n')
    return 'genuine'


def forge_close_proto():
    os.close(_proto_fd())
    return 'never delivered'


def forge_via_fd1():
    # Re-point fd 1 at the protocol descriptor, then write: a wrong-id reply all the same.
    os.dup2(_proto_fd(), 1)
    os.write(1, _frame('R', 5, b'"forged"'))
    import time
    time.sleep(1)
    return 'not reached'


# --- the block-list itself -------------------------------------------------------------------

def audit_hook_tamper():
    """The audit hook keeps its block-list in default arguments: a routine can empty them and
    import anything (SANDBOX.md: the hook is a tripwire, not a boundary). The kernel still
    refuses what the modules try. The hook is restored before returning."""
    import gc
    function = type(audit_hook_tamper)
    hooks = [o for o in gc.get_objects() if type(o) is function and o.__code__.co_name == 'hook'
             and o.__code__.co_filename == '<skein-confine>']
    if not hooks:
        return {'found': False}
    hook = hooks[0]
    saved = hook.__defaults__
    names = hook.__code__.co_varnames[:hook.__code__.co_argcount]
    defaults = dict(zip(names[-len(saved):], saved))
    defaults['blocked'] = frozenset()
    defaults['allowed'] = None
    before = set(sys.modules)
    result = {'found': True}
    try:
        hook.__defaults__ = tuple(defaults[n] for n in names[-len(saved):])
        import socket
        result['import_socket'] = 'ok'
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            result['socket'] = 'ESCAPED'
        except OSError as e:
            result['socket'] = _errname(e)
    finally:
        hook.__defaults__ = saved
        for name in set(sys.modules) - before:
            del sys.modules[name]
    return result


def poison_victim():
    """Replaces another routine in this worker's routine table (found through gc): a later
    call to "victim" on this worker returns what this routine chose."""
    import gc
    for o in gc.get_objects():
        if (type(o) is dict and 'victim' in o and 'poison_victim' in o and '__name__' not in o
                and callable(o.get('victim'))):
            o['victim'] = lambda *a, **k: 'POISONED'
            return 'poisoned'
    return 'table not found'


def victim(*numbers):
    return sum(numbers)


def forge_deep_reply(depth):
    """A result frame with the running call's own id (read from the bootstrap's frame) whose
    value is nested `depth` levels deep: valid JSON, within maxResultBytes."""
    cid = sys._getframe(1).f_locals['cid']
    depth = int(depth)
    os.write(_proto_fd(), _frame('R', cid, b'[' * depth + b']' * depth))
    # Leave at once: a later genuine reply would only add a protocol violation to the picture.
    import time
    time.sleep(0.2)
    os._exit(0)


def res_deep_result(depth):
    value = []
    for _ in range(int(depth)):
        value = [value]
    return value


def hijack_next_call():
    """Answers its own call early (the id is in the bootstrap's frame), so the agent marks the
    worker idle while this routine still runs; then reads the next call the agent sends to
    this worker from fd 0 -- another caller's routine and arguments -- and answers it."""
    import json
    cid = sys._getframe(1).f_locals['cid']
    proto = _proto_fd()
    os.write(proto, _frame('R', cid, b'"early"'))
    kind, enc, stolen_id, payload = _read_frame(0)
    stolen = json.loads(payload)
    os.write(proto, _frame('R', stolen_id, json.dumps({'hijacked': stolen}).encode()))
    os._exit(0)


def retire_worker():
    """Ends this worker (used by the known-gap tests to drop a worker they tampered with)."""
    os._exit(0)
