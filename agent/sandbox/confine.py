# skein worker confinement: the kernel-enforced layers, applied from inside the worker.
#
# Standard library only (ctypes). The bootstrap injects this file's text and calls it before
# any routine code is loaded:
#
#     exec(compile(CONFINE_SOURCE, '<skein-confine>', 'exec'), ns)
#     applied = ns['apply'](policy)   # layer names; ConfinementError if a required one fails
#
# and `skein doctor` runs `python3 -I -S -c <this text + "print(json.dumps(probe()))">`.
# Compiling this file costs 6-15 ms per process (more than all the layers): a worker should get
# the code object the agent compiled once with the same interpreter (marshal), see confine.md.
#
# Why the kernel and not Python: a module block-list or an audit hook is bypassable from inside
# the interpreter (see SANDBOX.md). The boundary is made of
#   user+net+ipc namespaces  uid 65534, only a downed loopback, private SysV IPC
#   rlimits                  memory, open files, file size, CPU, processes, no core dumps
#   Landlock                 read-only stdlib/system libraries/allowed packages; no writes, no
#                            exec, no TCP, no signals or abstract sockets leaving the worker
#   seccomp-bpf              no sockets, exec, fork, ptrace, mounts, namespaces, keyrings,
#                            set*id, chmod/chown/xattr, nor prlimit/renice of other processes
# with the audit hook last, as a tripwire and telemetry source only.
#
# Policy (all keys optional; a layer the host lacks is skipped unless it is in "required"):
#   required     [layer, ...]  must apply, else ConfinementError("<layer>: <reason>")
#   setsid       bool (True)   new session unless already leader
#   namespaces   bool (True)   layers userns, netns, ipcns
#   limits       {memoryBytes, openFiles, fileSizeBytes, cpuSeconds, processes}; layer rlimits
#   landlock     bool (True)   layers landlock, landlock-net (ABI 4), landlock-scope (ABI 6)
#   readPaths    [path, ...]   extra read-only trees (allowed package directories)
#   listPaths    [path, ...]   directories that may be listed but whose files stay unreadable
#                              (sys.path entries holding allowed packages: the import system
#                              lists them to find a package, then reads only what readPaths grant)
#   seccomp      bool (True)   layer seccomp
#   canary       bool (False)  run canary() after the kernel layers; layer canary if all blocked
#   auditHook    {blockedModules, allowedPackages, blockedAs: "PermissionError"|"ImportError"}
#                or None (default {}); layer audit
#
# Public API: probe(), apply(policy), canary(), audit_counts(), ConfinementError, LAYERS,
# last_report (what the last apply() applied and why anything was skipped).

import os
import stat
import sys


class ConfinementError(RuntimeError):
    """A layer named in policy["required"] could not be applied. Message: "<layer>: <reason>"."""


class BlockedImportError(ImportError):
    """Raised for a blocked import when auditHook.blockedAs is "ImportError": optional imports
    (numpy's `try: import ctypes except ImportError`) then degrade instead of failing."""


# Layer names apply() can report, in the order it applies them.
LAYERS = ('setsid', 'userns', 'netns', 'ipcns', 'rlimits', 'landlock', 'landlock-net',
          'landlock-scope', 'seccomp', 'canary', 'audit')

# Filled by apply(): {"applied": [...], "skipped": {layer: reason}, "threads": n,
# "canary": canary() result when the policy asked for it}.
last_report = {}

# ---------------------------------------------------------------------------------------------
# Constants (values from the Linux UAPI headers)
# ---------------------------------------------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_THREAD = 0x00010000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# Namespace bits a thread-creating clone() must not carry (CLONE_NEWTIME is clone3-only).
CLONE_NS_MASK = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                 | CLONE_NEWPID | CLONE_NEWNET)

PR_GET_SECCOMP = 21
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39

NOBODY = 65534                       # the uid/gid the worker appears as inside its user namespace
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Landlock (include/uapi/linux/landlock.h)
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_ABI1_ALL = (1 << 13) - 1          # EXECUTE .. MAKE_SYM: every right ABI 1 knows
FS_REFER = 1 << 13                   # ABI 2
FS_TRUNCATE = 1 << 14                # ABI 3
FS_IOCTL_DEV = 1 << 15               # ABI 5
NET_BIND_TCP = 1 << 0                # ABI 4
NET_CONNECT_TCP = 1 << 1             # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1                # ABI 6
NR_LANDLOCK_CREATE_RULESET = 444     # same number on x86_64 and aarch64
NR_LANDLOCK_ADD_RULE = 445
NR_LANDLOCK_RESTRICT_SELF = 446

# seccomp (include/uapi/linux/seccomp.h, filter.h, audit.h)
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM, ENOSYS = 1, 38
BPF_LD_W_ABS = 0x20                  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15                     # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
# struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6]. Loads read the low 32 bits.
OFF_NR, OFF_ARCH, OFF_ARGS = 0, 4, (16, 24, 32, 40, 48, 56)
X32_SYSCALL_BIT = 0x40000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C  # terminal input injection / console control ioctls

# Syscalls answered with EPERM. Landlock does not cover ownership, mode, xattrs or timestamps
# (a worker started by root still owns every root-owned file), so those are denied here too.
# kill/tkill/tgkill stay allowed: Landlock's signal scope stops signals leaving the worker.
SECCOMP_DENY = (
    # network: the socket family (Landlock and the empty netns are further layers)
    'socket', 'socketpair', 'connect', 'bind', 'listen', 'accept', 'accept4',
    # new programs and processes (thread-creating clone is handled separately)
    'execve', 'execveat', 'fork', 'vfork',
    # other processes' memory
    'ptrace', 'process_vm_readv', 'process_vm_writev', 'process_madvise', 'kcmp', 'pidfd_getfd',
    # mounts, root and namespaces
    'mount', 'umount2', 'pivot_root', 'chroot', 'open_tree', 'open_tree_attr', 'move_mount',
    'fsopen', 'fsconfig', 'fsmount', 'fspick', 'mount_setattr', 'unshare', 'setns',
    # large kernel attack surface a Python routine has no use for
    'bpf', 'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'keyctl', 'add_key',
    'request_key', 'perf_event_open', 'userfaultfd', 'init_module', 'finit_module',
    'delete_module', 'kexec_load', 'kexec_file_load', 'uselib', 'syslog', 'acct', 'swapon',
    'swapoff', 'reboot', 'quotactl', 'quotactl_fd', 'vhangup', 'lsm_set_self_attr',
    # identity
    'setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid', 'setfsuid',
    'setfsgid', 'setgroups',
    # file handles bypass path-based checks; watches reveal activity in unreadable places
    'name_to_handle_at', 'open_by_handle_at', 'inotify_add_watch', 'fanotify_init',
    'fanotify_mark',
    # metadata Landlock does not cover
    'chmod', 'fchmod', 'fchmodat', 'fchmodat2', 'chown', 'fchown', 'lchown', 'fchownat',
    'setxattr', 'lsetxattr', 'fsetxattr', 'setxattrat', 'removexattr', 'lremovexattr',
    'fremovexattr', 'removexattrat', 'file_setattr', 'utime', 'utimes', 'futimesat', 'utimensat',
)

# Syscalls that act on a process named by pid: allowed only on this process (pid 0 or our
# own), because the kernel lets a same-uid process use them on its parent even from inside the
# sandbox: prlimit64(agent, RLIMIT_CPU, 1) would kill the agent past Landlock's signal scope.
# name -> (index of the pid argument, index and required value of a "which" argument or None)
PRIO_PROCESS, IOPRIO_WHO_PROCESS = 0, 1
SECCOMP_SELF_ONLY = {
    'prlimit64': (0, None),
    'setpriority': (1, (0, PRIO_PROCESS)),
    'ioprio_set': (1, (0, IOPRIO_WHO_PROCESS)),
    'sched_setaffinity': (0, None),
    'sched_setscheduler': (0, None),
    'sched_setparam': (0, None),
    'sched_setattr': (0, None),
}

# Syscall numbers (from arch/x86/entry/syscalls/syscall_64.tbl and asm-generic/unistd.h).
# Every number above MAX_REVIEWED_NR (newer than the kernel this table was reviewed against)
# gets ENOSYS, which is what an older kernel answers, so libc falls back gracefully.
_NR_X86_64 = dict(
    socket=41, socketpair=53, connect=42, bind=49, listen=50, accept=43, accept4=288,
    execve=59, execveat=322, fork=57, vfork=58, clone=56, clone3=435, ioctl=16, seccomp=317,
    ptrace=101, process_vm_readv=310, process_vm_writev=311, process_madvise=440, kcmp=312,
    pidfd_getfd=438, mount=165, umount2=166, pivot_root=155, chroot=161, open_tree=428,
    open_tree_attr=467, move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433,
    mount_setattr=442, unshare=272, setns=308, bpf=321, io_uring_setup=425, io_uring_enter=426,
    io_uring_register=427, keyctl=250, add_key=248, request_key=249, perf_event_open=298,
    userfaultfd=323, init_module=175, finit_module=313, delete_module=176, kexec_load=246,
    kexec_file_load=320, uselib=134, syslog=103, acct=163, swapon=167, swapoff=168, reboot=169,
    quotactl=179, quotactl_fd=443, vhangup=153, lsm_set_self_attr=460, setuid=105, setgid=106,
    setreuid=113, setregid=114, setresuid=117, setresgid=119, setfsuid=122, setfsgid=123,
    setgroups=116, name_to_handle_at=303, open_by_handle_at=304, inotify_add_watch=254,
    fanotify_init=300, fanotify_mark=301, prlimit64=302, setpriority=141, ioprio_set=251,
    sched_setaffinity=203, sched_setscheduler=144, sched_setparam=142, sched_setattr=314,
    chmod=90, fchmod=91,
    fchmodat=268, fchmodat2=452, chown=92, fchown=93, lchown=94, fchownat=260, setxattr=188,
    lsetxattr=189, fsetxattr=190, setxattrat=463, removexattr=197, lremovexattr=198,
    fremovexattr=199, removexattrat=466, file_setattr=469, utime=132, utimes=235,
    futimesat=261, utimensat=280,
)
_NR_AARCH64 = dict(   # asm-generic numbering; aarch64 has no fork/vfork/chmod/chown/utime(s)
    socket=198, socketpair=199, connect=203, bind=200, listen=201, accept=202, accept4=242,
    execve=221, execveat=281, clone=220, clone3=435, ioctl=29, seccomp=277,
    ptrace=117, process_vm_readv=270, process_vm_writev=271, process_madvise=440, kcmp=272,
    pidfd_getfd=438, mount=40, umount2=39, pivot_root=41, chroot=51, open_tree=428,
    open_tree_attr=467, move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433,
    mount_setattr=442, unshare=97, setns=268, bpf=280, io_uring_setup=425, io_uring_enter=426,
    io_uring_register=427, keyctl=219, add_key=217, request_key=218, perf_event_open=241,
    userfaultfd=282, init_module=105, finit_module=273, delete_module=106, kexec_load=104,
    kexec_file_load=294, syslog=116, acct=89, swapon=224, swapoff=225, reboot=142, quotactl=60,
    quotactl_fd=443, vhangup=58, lsm_set_self_attr=460, setuid=146, setgid=144, setreuid=145,
    setregid=143, setresuid=147, setresgid=149, setfsuid=151, setfsgid=152, setgroups=159,
    name_to_handle_at=264, open_by_handle_at=265, inotify_add_watch=27, fanotify_init=262,
    fanotify_mark=263, prlimit64=261, setpriority=140, ioprio_set=30, sched_setaffinity=122,
    sched_setscheduler=119, sched_setparam=118, sched_setattr=274, fchmod=52, fchmodat=53,
    fchmodat2=452, fchown=55, fchownat=54, setxattr=5, lsetxattr=6, fsetxattr=7, setxattrat=463,
    removexattr=14, lremovexattr=15, fremovexattr=16, removexattrat=466, file_setattr=469,
    utimensat=88,
)
MAX_REVIEWED_NR = 470   # listns; the table above was reviewed against Linux 6.18/6.19
_ARCHES = {
    'x86_64': {'audit': 0xC000003E, 'x32': True, 'nr': _NR_X86_64},
    'aarch64': {'audit': 0xC00000B7, 'x32': False, 'nr': _NR_AARCH64},
}

# Paths the interpreter may need to read lazily after confinement (besides its own stdlib,
# lib-dynload and executable directory, which are computed). Directories named in
# PACKAGE_DIR_NAMES are carved out of the library roots and the stdlib so that third-party
# packages are readable only when the policy lists them in readPaths: Landlock then enforces
# the package allow-list.
LIBRARY_ROOTS = ('/usr/lib', '/lib', '/lib64', '/usr/lib64')   # libffi, libssl, libm ...
SYSTEM_READ_PATHS = (
    '/etc/ld.so.cache',                           # the loader resolves sonames through it
    '/usr/share/zoneinfo', '/etc/localtime',      # zoneinfo / time.localtime
    '/dev/urandom', '/dev/zero',                  # os.urandom fallback, anonymous maps
    '/sys/devices/system/cpu',                    # CPU topology (os.cpu_count, OpenBLAS)
)
READ_WRITE_PATHS = ('/dev/null',)
PACKAGE_DIR_NAMES = frozenset({'site-packages', 'dist-packages'})

# ---------------------------------------------------------------------------------------------
# ctypes plumbing (imported lazily: probe() and apply() need it, canary() does not)
# ---------------------------------------------------------------------------------------------

_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.prctl.restype = ctypes.c_int
        _LIBC = (ctypes, libc)
    return _LIBC


def _check(ret, what):
    """Raise OSError(errno) when a libc call returned -1."""
    if ret == -1:
        err = _libc()[0].get_errno()
        raise OSError(err, '%s: %s' % (what, _errname(OSError(err, ''))))
    return ret


def _why(e):
    """A short reason for a skipped layer: "what: ERRNO" for our own calls, else the error."""
    if isinstance(e, OSError) and e.errno:
        text = e.strerror if ': ' in (e.strerror or '') else _errname(e)
        return text + (' (%s)' % e.filename if e.filename else '')
    return '%s: %s' % (type(e).__name__, e)


def _syscall(nr, *args):
    ctypes, libc = _libc()
    # syscall() is variadic: plain ints must be widened to a full machine word by hand
    # (ctypes would pass them as 32-bit int). None is NULL; byref() objects pass through.
    words = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return libc.syscall(ctypes.c_long(nr), *words)


def _prctl(option, arg2=0):
    ctypes, libc = _libc()
    z = ctypes.c_ulong(0)
    return libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), z, z, z)


def _errname(e):
    import errno
    code = getattr(e, 'errno', None)
    return errno.errorcode.get(code, str(code)) if code else type(e).__name__


def _thread_count():
    try:
        return len(os.listdir('/proc/self/task'))
    except OSError:
        return 0    # unknown (no /proc): let the kernel refuse if it must


def _arch():
    machine = os.uname().machine
    # A 32-bit or x32 interpreter on a 64-bit kernel would make every syscall fail our arch check.
    if machine in _ARCHES and sys.maxsize > 2 ** 32:
        return machine
    return None


def _landlock_abi():
    try:
        abi = _syscall(NR_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    except OSError:
        return 0
    return abi if abi > 0 else 0


def _seccomp_actions():
    try:
        with open('/proc/sys/kernel/seccomp/actions_avail') as f:
            return f.read().split()
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------
# probe(): what the host offers, without confining this process
# ---------------------------------------------------------------------------------------------

def _probe_userns():
    """Fork a child that tries the same unshare apply() does; return (ok, errno name)."""
    _, libc = _libc()
    pid = os.fork()
    if pid == 0:   # child: no Python-level work, just the syscall and an exit code
        try:
            rc = libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC)
            os._exit(0 if rc == 0 else (_libc()[0].get_errno() or 255) & 0xFF)
        finally:
            os._exit(255)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return True, None
    import errno
    return False, errno.errorcode.get(code, 'exit %d' % code)


def probe():
    import shutil
    arch = _arch()
    actions = _seccomp_actions()
    try:
        userns, userns_error = _probe_userns()
    except OSError as e:
        userns, userns_error = False, _errname(e)
    nnp = _prctl(PR_GET_NO_NEW_PRIVS)
    mode = _prctl(PR_GET_SECCOMP)
    result = {
        'python': '%d.%d.%d' % sys.version_info[:3],
        'arch': os.uname().machine,
        'kernel': os.uname().release,
        'seccomp': {
            'available': bool(arch) and 'errno' in actions and mode >= 0,
            'actions': actions,
            'mode': mode,                 # 2 = this process is already filtered (e.g. Docker)
        },
        'landlock': {'abi': _landlock_abi()},
        'userns': userns,
        'bwrap': shutil.which('bwrap'),
        'noNewPrivs': nnp >= 0,
        'uid': os.geteuid(),
    }
    if userns_error:
        result['usernsError'] = userns_error
    if not arch:
        result['seccomp']['reason'] = 'no syscall table for this architecture/interpreter'
    return result


# ---------------------------------------------------------------------------------------------
# apply(): the layers, in the order SANDBOX.md measured
# ---------------------------------------------------------------------------------------------

class _Report:
    def __init__(self, required):
        self.required = required
        self.applied = []
        self.skipped = {}

    def ok(self, *names):
        self.applied.extend(names)

    def miss(self, names, reason):
        for name in names:
            self.skipped[name] = reason
        for name in names:
            if name in self.required:
                raise ConfinementError('%s: %s' % (name, reason))


def _enabled(policy, key):
    value = policy.get(key, True)
    return value is not False and value is not None


def _step(rep, names, enabled, fn, *args):
    """Run one layer. A layer the host lacks is skipped (ConfinementError if required); an
    unexpected exception is reported the same way instead of escaping half-way through."""
    if not enabled:
        rep.miss(names, 'disabled by policy')
        return
    try:
        fn(rep, *args)
    except ConfinementError:
        raise
    except Exception as e:
        rep.miss([n for n in names if n not in rep.applied and n not in rep.skipped],
                 'unexpected %s' % _why(e))


def apply(policy=None):
    """Confine the calling process. Returns the names of the layers applied, in order."""
    global last_report, _LIBC
    policy = dict(policy or {})
    required = [str(n) for n in policy.get('required') or ()]
    for name in required:
        if name not in LAYERS:
            raise ConfinementError('%s: unknown layer (known: %s)' % (name, ', '.join(LAYERS)))
    rep = _Report(frozenset(required))
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    threads = _thread_count()
    actions = _seccomp_actions()   # read now: Landlock will hide /proc
    last_report = {'applied': rep.applied, 'skipped': rep.skipped, 'threads': threads}

    # 1. setsid: the agent spawns workers detached; this covers callers that did not.
    _step(rep, ['setsid'], _enabled(policy, 'setsid'), _do_setsid)
    # 2. namespaces: unshare(CLONE_NEWUSER) needs a single-threaded process, so it goes first.
    _step(rep, ['userns', 'netns', 'ipcns'], _enabled(policy, 'namespaces'), _do_namespaces,
          outer_uid, outer_gid, threads)
    # 3. resource limits (always at least RLIMIT_CORE = 0)
    _step(rep, ['rlimits'], True, _do_rlimits, policy.get('limits') or {}, outer_uid)
    # 4. Landlock, then 5. seccomp, which forbids unshare and so comes last.
    _step(rep, ['landlock', 'landlock-net', 'landlock-scope'], _enabled(policy, 'landlock'),
          _do_landlock, policy.get('readPaths') or (), policy.get('listPaths') or ())
    _step(rep, ['seccomp'], _enabled(policy, 'seccomp'), _do_seccomp, actions)
    # Optionally prove the kernel layers, before the audit hook can mask what they do.
    _step(rep, ['canary'], bool(policy.get('canary')), _do_canary)
    # 6. the audit hook, after the last ctypes use; drop our handle on libc first.
    _LIBC = None
    audit = policy.get('auditHook', {})
    _step(rep, ['audit'], audit is not False and audit is not None, _do_audit,
          audit if isinstance(audit, dict) else {})
    return list(rep.applied)


def _no_new_privs():
    """Landlock and seccomp both require no_new_privs (or CAP_SYS_ADMIN); it is harmless to a
    worker that can no longer exec anything anyway."""
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1), 'prctl(PR_SET_NO_NEW_PRIVS)')


def _do_canary(rep):
    result = last_report['canary'] = canary()
    allowed = [k for k, v in result.items() if v == 'allowed']
    if allowed:
        rep.miss(['canary'], 'not blocked: %s' % ', '.join(allowed))
    else:
        rep.ok('canary')


def _do_setsid(rep):
    try:
        if os.getsid(0) != os.getpid():
            os.setsid()
        rep.ok('setsid')
    except OSError as e:   # EPERM: already a process-group leader in another session
        rep.miss(['setsid'], 'setsid: %s' % _errname(e))


# --- namespaces ------------------------------------------------------------------------------

def _write_proc(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _drop_capabilities():
    """Clear the full capability set the new user namespace grants its creator."""
    ctypes, libc = _libc()

    class Header(ctypes.Structure):
        _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32),
                    ('inheritable', ctypes.c_uint32)]

    header, data = Header(LINUX_CAPABILITY_VERSION_3, 0), (Data * 2)()
    _check(libc.capset(ctypes.byref(header), data), 'capset')


def _do_namespaces(rep, uid, gid, threads):
    names = ['userns', 'netns', 'ipcns']
    if threads > 1:
        rep.miss(names, 'process has %d threads; unshare needs a single-threaded process' % threads)
        return
    _, libc = _libc()
    try:
        _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC), 'unshare')
    except OSError as e:
        reason = 'unshare(CLONE_NEWUSER): %s' % _errname(e)
        # Hosts that forbid user namespaces (AppArmor, Docker's profile) may still let root
        # take private network and IPC namespaces.
        if uid == 0 and libc.unshare(CLONE_NEWNET | CLONE_NEWIPC) == 0:
            rep.miss(['userns'], reason)
            rep.ok('netns', 'ipcns')
        else:
            rep.miss(names, reason)
        return
    try:
        # Map the outer uid/gid to nobody. setgroups must be denied before an unprivileged
        # process may write gid_map.
        try:
            _write_proc('/proc/self/setgroups', b'deny')
        except FileNotFoundError:
            pass
        _write_proc('/proc/self/uid_map', b'%d %d 1' % (NOBODY, uid))
        _write_proc('/proc/self/gid_map', b'%d %d 1' % (NOBODY, gid))
        _drop_capabilities()
    except OSError as e:   # still in the new namespaces, as an unmapped user
        rep.ok('netns', 'ipcns')
        rep.miss(['userns'], 'after unshare: %s' % _why(e))
        return
    rep.ok(*names)


# --- rlimits ---------------------------------------------------------------------------------

def _do_rlimits(rep, limits, outer_uid):
    import resource
    infinity = resource.RLIM_INFINITY
    wanted = [
        ('memoryBytes', resource.RLIMIT_AS),
        ('openFiles', resource.RLIMIT_NOFILE),
        ('fileSizeBytes', resource.RLIMIT_FSIZE),
        ('cpuSeconds', resource.RLIMIT_CPU),
    ]
    if outer_uid != 0:   # the kernel does not enforce RLIMIT_NPROC against root
        wanted.append(('processes', resource.RLIMIT_NPROC))
    try:
        for key, res in wanted:
            value = limits.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                continue
            _, hard = resource.getrlimit(res)
            # CPU: soft limit raises SIGXCPU, the hard limit one second later SIGKILLs.
            soft, new_hard = value, value + 1 if res == resource.RLIMIT_CPU else value
            if hard != infinity:   # an unprivileged process cannot raise its hard limit
                soft, new_hard = min(soft, hard), min(new_hard, hard)
            resource.setrlimit(res, (soft, new_hard))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as e:
        rep.miss(['rlimits'], 'setrlimit: %s' % _why(e))
        return
    rep.ok('rlimits')


# --- Landlock --------------------------------------------------------------------------------

def _python_dirs():
    """Directories of this interpreter's standard library and extension modules (to be scanned
    for package directories). Computed from sys and os rather than sysconfig, whose import costs
    ~2 ms of worker start-up."""
    version = 'python%d.%d' % sys.version_info[:2]
    libdirs = {getattr(sys, 'platlibdir', 'lib'), 'lib'}
    dirs = [os.path.dirname(os.__file__)]
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        for lib in libdirs:
            dirs.append(os.path.join(prefix, lib, version))
            dirs.append(os.path.join(prefix, lib, version, 'lib-dynload'))
    dirs.extend(p for p in sys.path if p.endswith('lib-dynload'))   # distribution builds
    return dirs


DIR_READ = FS_READ_FILE | FS_READ_DIR


def _grant_tree(rules, path, depth=2):
    """Grant read on directory `path`, carving out site-/dist-packages found within `depth`
    levels. Landlock cannot subtract from a granted tree, so a tree that holds a package
    directory is granted child by child, plus READ_DIR on itself so the import system can list
    it. Symlinked children are skipped there: granting one would grant its target, which a
    whole-tree rule never does."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        rules[path] = DIR_READ
        return
    split = {}
    for entry in entries:
        if entry.name in PACKAGE_DIR_NAMES:
            split[entry.name] = None                     # carved out
        elif depth > 0 and entry.name.startswith('python') and entry.is_dir(follow_symlinks=False):
            try:
                if not PACKAGE_DIR_NAMES.isdisjoint(os.listdir(entry.path)):
                    split[entry.name] = entry.path       # python3/, python3.11/: look inside
            except OSError:
                pass
    if not split:
        rules[path] = DIR_READ
        return
    rules[path] = rules.get(path, 0) | FS_READ_DIR
    for entry in entries:
        if entry.name in split:
            if split[entry.name]:
                _grant_tree(rules, entry.path, depth - 1)
        elif entry.is_dir(follow_symlinks=False):
            rules[entry.path] = DIR_READ
        elif not entry.is_symlink():
            rules[entry.path] = FS_READ_FILE


def _resolve(path):
    """(real path, is directory) as the kernel resolves `path`, or None if it does not exist or
    cannot be reached. One O_PATH open replaces os.path.realpath's lstat of every component."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        try:
            return os.readlink('/proc/self/fd/%d' % fd), is_dir
        except OSError:   # no /proc: the slow way
            return os.path.realpath(path), is_dir
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_rules(extra_paths, list_paths=()):
    """{real path: access} for the Landlock ruleset. Roots are resolved first so that /lib ->
    /usr/lib is not granted whole behind the carve-outs' back. Access on non-directories is
    limited to file rights (directory rights on a file are EINVAL)."""
    rules = {}
    seen = set()
    exe = _resolve(sys.executable) if sys.executable else None
    exe_dir = os.path.dirname(exe[0]) if exe else None
    scanned = dict.fromkeys(_python_dirs() + list(LIBRARY_ROOTS), True)
    whole = dict.fromkeys([p for p in (exe_dir,) if p] + list(SYSTEM_READ_PATHS), False)
    for path, scan in list(scanned.items()) + list(whole.items()):
        resolved = _resolve(path)
        if resolved is None or resolved[0] in seen:
            continue
        real, is_dir = resolved
        seen.add(real)
        if is_dir and scan:
            _grant_tree(rules, real)
        else:
            rules[real] = rules.get(real, 0) | (DIR_READ if is_dir else FS_READ_FILE)
    for path in READ_WRITE_PATHS:
        resolved = _resolve(path)
        if resolved:
            rules[resolved[0]] = FS_READ_FILE | FS_WRITE_FILE
    for path in extra_paths:   # allowed package directories: granted whole, as given
        resolved = _resolve(path) if isinstance(path, str) and path else None
        if resolved:
            real, is_dir = resolved
            rules[real] = rules.get(real, 0) | (DIR_READ if is_dir else FS_READ_FILE)
    for path in list_paths:    # listing only: READ_DIR beneath, no READ_FILE
        resolved = _resolve(path) if isinstance(path, str) and path else None
        if resolved and resolved[1]:
            rules[resolved[0]] = rules.get(resolved[0], 0) | FS_READ_DIR
    return rules


def _do_landlock(rep, extra_paths, list_paths=()):
    names = ['landlock', 'landlock-net', 'landlock-scope']
    abi = _landlock_abi()
    if abi < 1:
        rep.miss(names, 'Landlock is not supported or not enabled by this kernel')
        return
    threads = _thread_count()
    if threads > 1:   # landlock_restrict_self() only confines the calling thread (ABI < 8)
        rep.miss(names, 'process has %d threads; Landlock would leave the others free' % threads)
        return
    ctypes, libc = _libc()

    class RulesetAttr(ctypes.Structure):
        _fields_ = [('handled_access_fs', ctypes.c_uint64),
                    ('handled_access_net', ctypes.c_uint64),
                    ('scoped', ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [('allowed_access', ctypes.c_uint64), ('parent_fd', ctypes.c_int32)]

    # Handle every right this ABI knows: anything handled and not granted below is denied.
    handled = FS_ABI1_ALL
    handled |= FS_REFER if abi >= 2 else 0
    handled |= FS_TRUNCATE if abi >= 3 else 0
    handled |= FS_IOCTL_DEV if abi >= 5 else 0
    attr = RulesetAttr(handled, 0, 0)
    size = 8   # the struct grew with the ABI; older kernels reject unknown trailing fields
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP   # no rules: all TCP denied
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    try:
        _no_new_privs()
        ruleset = _check(_syscall(NR_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0),
                         'landlock_create_ruleset')
    except OSError as e:
        rep.miss(names, _why(e))
        return
    stdlib = (_resolve(os.path.dirname(os.__file__)) or ('?',))[0]
    granted_stdlib = False
    add_rule, c_long = libc.syscall, ctypes.c_long     # hot loop: a few hundred rules
    nr_add, ruleset_arg, rule_type, flags = (c_long(NR_LANDLOCK_ADD_RULE), c_long(ruleset),
                                             c_long(LANDLOCK_RULE_PATH_BENEATH), c_long(0))
    rule = PathBeneath(0, -1)
    rule_ref = ctypes.byref(rule)
    try:
        for path, access in _read_rules(extra_paths, list_paths).items():
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue   # vanished, or unreadable to this user: nothing to grant
            try:
                rule.allowed_access, rule.parent_fd = access & handled, fd
                _check(add_rule(nr_add, ruleset_arg, rule_type, rule_ref, flags),
                       'landlock_add_rule(%s)' % path)
            finally:
                os.close(fd)
            if not granted_stdlib and (path == stdlib or stdlib.startswith(path + '/')
                                       or path.startswith(stdlib + '/')):
                granted_stdlib = True
        if not granted_stdlib:   # restricting now would break every later import
            rep.miss(names, 'cannot grant read access to the standard library at %s' % stdlib)
            return
        _check(_syscall(NR_LANDLOCK_RESTRICT_SELF, ruleset, 0), 'landlock_restrict_self')
    except OSError as e:
        rep.miss(names, _why(e))
        return
    finally:
        os.close(ruleset)
    rep.ok('landlock')
    if abi >= 4:
        rep.ok('landlock-net')
    else:
        rep.miss(['landlock-net'], 'needs Landlock ABI 4, host has %d' % abi)
    if abi >= 6:
        rep.ok('landlock-scope')
    else:
        rep.miss(['landlock-scope'], 'needs Landlock ABI 6, host has %d' % abi)


# --- seccomp ---------------------------------------------------------------------------------

def seccomp_program(arch, pid):
    """The classic-BPF filter as (code, jt, jf, k) tuples. Mostly constant per syscall number,
    so the kernel's action cache lets read/write/futex & co. skip the filter entirely. `pid` is
    this process (the filter is never inherited: fork and exec are denied)."""
    info = _ARCHES[arch]
    nr = info['nr']
    deny, nosys = SECCOMP_RET_ERRNO | EPERM, SECCOMP_RET_ERRNO | ENOSYS
    prog = [
        (BPF_LD_W_ABS, 0, 0, OFF_ARCH),
        (BPF_JEQ_K, 1, 0, info['audit']),      # another ABI (int 0x80, compat): deny all
        (BPF_RET_K, 0, 0, deny),
        (BPF_LD_W_ABS, 0, 0, OFF_NR),
    ]
    if info['x32']:
        prog += [(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT), (BPF_RET_K, 0, 0, deny)]
    prog += [(BPF_JGT_K, 0, 1, MAX_REVIEWED_NR), (BPF_RET_K, 0, 0, nosys)]
    for name in SECCOMP_DENY:
        if name in nr:
            prog += [(BPF_JEQ_K, 0, 1, nr[name]), (BPF_RET_K, 0, 0, deny)]
    # clone3 passes its flags in memory the filter cannot read: ENOSYS makes glibc fall back
    # to clone(), whose flags we can inspect.
    prog += [(BPF_JEQ_K, 0, 1, nr['clone3']), (BPF_RET_K, 0, 0, nosys)]
    # clone(): threads only (CLONE_THREAD set, no namespace flags).
    prog += [
        (BPF_JEQ_K, 0, 5, nr['clone']),
        (BPF_LD_W_ABS, 0, 0, OFF_ARGS[0]),
        (BPF_JSET_K, 2, 0, CLONE_NS_MASK),
        (BPF_JSET_K, 0, 1, CLONE_THREAD),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, deny),
    ]
    # Process-directed calls: only pid 0 (= self) or our own pid. The pid arguments are
    # pid_t/int, so the low 32 bits the filter sees are what the kernel uses.
    for name, (pid_arg, which) in SECCOMP_SELF_ONLY.items():
        check_pid = [
            (BPF_LD_W_ABS, 0, 0, OFF_ARGS[pid_arg]),
            (BPF_JEQ_K, 1, 0, 0),
            (BPF_JEQ_K, 0, 1, pid),
            (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            (BPF_RET_K, 0, 0, deny),
        ]
        if which is not None:   # e.g. setpriority(PRIO_PROCESS, ...), never PRIO_PGRP/USER
            check_pid = [(BPF_LD_W_ABS, 0, 0, OFF_ARGS[which[0]]),
                         (BPF_JEQ_K, 0, len(check_pid) - 1, which[1])] + check_pid
        prog += [(BPF_JEQ_K, 0, len(check_pid), nr[name])] + check_pid
    # ioctl(): no terminal input injection (TIOCSTI) or console control (TIOCLINUX).
    prog += [
        (BPF_JEQ_K, 0, 5, nr['ioctl']),
        (BPF_LD_W_ABS, 0, 0, OFF_ARGS[1]),
        (BPF_JEQ_K, 2, 0, TIOCSTI),
        (BPF_JEQ_K, 1, 0, TIOCLINUX),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, deny),
    ]
    prog.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return prog


def _do_seccomp(rep, actions):
    arch = _arch()
    if arch is None:
        rep.miss(['seccomp'], 'no syscall table for %s (%d-bit interpreter)'
                 % (os.uname().machine, 64 if sys.maxsize > 2 ** 32 else 32))
        return
    if actions and 'errno' not in actions:   # unreadable (no /proc): let the kernel decide
        rep.miss(['seccomp'], 'kernel lacks seccomp filters with the errno action')
        return
    ctypes, _ = _libc()
    import struct

    class SockFprog(ctypes.Structure):
        _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]

    insns = seccomp_program(arch, os.getpid())
    # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k;}, in native byte order
    table = ctypes.create_string_buffer(b''.join([struct.pack('=HBBI', *i) for i in insns]))
    fprog = SockFprog(len(insns), ctypes.addressof(table))
    try:
        _no_new_privs()
        ret = _check(_syscall(_ARCHES[arch]['nr']['seccomp'], SECCOMP_SET_MODE_FILTER,
                              SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog)),
                     'seccomp(SET_MODE_FILTER)')
    except OSError as e:
        rep.miss(['seccomp'], _why(e))
        return
    if ret != 0:   # TSYNC: the id of a thread that could not be synchronised
        rep.miss(['seccomp'], 'thread %d could not take the filter' % ret)
        return
    rep.ok('seccomp')


# --- audit hook ------------------------------------------------------------------------------

# Events counted as telemetry (the kernel layers are what actually stop them).
AUDIT_COUNTED = frozenset({
    'open', 'os.system', 'os.exec', 'os.posix_spawn', 'os.spawn', 'os.fork', 'os.forkpty',
    'os.kill', 'os.killpg', 'subprocess.Popen', 'pty.spawn', 'ctypes.dlopen', 'ctypes.dlsym',
    'socket.__new__', 'socket.bind', 'socket.connect',
    'socket.getaddrinfo', 'socket.gethostbyname', 'socket.gethostbyaddr', 'socket.getnameinfo',
    'socket.sendto', 'socket.sendmsg', 'socket.sethostname', 'sys.addaudithook',
    'sys._current_frames', 'sys.setprofile', 'sys.settrace', 'os.chmod', 'os.chown',
    'os.setxattr', 'os.removexattr', 'os.utime', 'shutil.rmtree', 'os.remove', 'os.rename',
    'os.mkdir', 'os.symlink', 'os.link', 'os.truncate', 'resource.setrlimit', 'resource.prlimit',
    'fcntl.ioctl',
})   # not counted: per-import or per-call events (marshal.loads, exec, ctypes.call_function)
_AUDIT_COUNTS = {}
# Modules loaded before any routine that stay importable whatever the block-list says: the
# audit "import" event only fires for modules not yet in sys.modules.
_CORE_MODULES = frozenset({
    'sys', 'builtins', 'os', 'posix', 'os.path', 'posixpath', 'genericpath', 'stat', '_stat',
    'io', '_io', 'abc', '_abc', 'codecs', '_codecs', 'encodings', 'marshal', '_imp',
    '_frozen_importlib', '_frozen_importlib_external', '_thread', '_warnings', '_weakref',
    'time', 'zipimport', '_signal', '_collections_abc', '__main__',
})


def audit_counts():
    """Sensitive audit events seen since apply(): {event: count}; "open:write" for writes."""
    return dict(_AUDIT_COUNTS)


def _do_audit(rep, cfg):
    # A blocked top-level module's C accelerator is blocked with it: "socket" without
    # "_socket" (or "ctypes" without "_ctypes") would block nothing.
    names = [str(m) for m in cfg.get('blockedModules') or ()]
    blocked = frozenset(names + ['_' + m for m in names if '.' not in m and m[:1] != '_'])
    allowed = cfg.get('allowedPackages')
    allowed = None if allowed is None else frozenset(str(p) for p in allowed)
    stdlib = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)
    watched = AUDIT_COUNTED | {'import'}
    find_spec = sys.modules['_frozen_importlib_external'].PathFinder.find_spec
    error = BlockedImportError if cfg.get('blockedAs') == 'ImportError' else PermissionError
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def blocked_name(name):
        if name in blocked:
            return name
        parts = name.split('.')
        for i in range(1, len(parts)):
            prefix = '.'.join(parts[:i])
            if prefix in blocked:
                return prefix
        return None

    # Runs on every audit event in the process: one frozenset lookup for the uninteresting ones.
    def hook(event, args, watched=watched, counts=_AUDIT_COUNTS, blocked=blocked,
             allowed=allowed, stdlib=stdlib, write_flags=write_flags, write_modes=frozenset('wax+'),
             error=error, type=type):
        if event not in watched:
            return
        if event == 'import':
            name = args[0]
            if type(name) is not str:
                return
            if blocked and blocked_name(name):
                raise error('skein sandbox: import of %r is blocked by policy '
                            '(blockedModules: %s)' % (name, blocked_name(name)))
            if allowed is not None:
                top = name.partition('.')[0]
                # Probes for optional packages (copy.py tries org.python.core) must still end in
                # the ImportError their try/except expects: refuse only what really exists.
                if (top not in stdlib and top not in allowed
                        and not top.startswith('_sysconfigdata')   # named per platform
                        and find_spec(top) is not None):
                    raise error('skein sandbox: package %r is not on the allowed package list'
                                % top)
            return
        if event == 'open':
            mode, flags = args[1], args[2]   # open(): mode string; os.open(): flags
            if not ((type(mode) is str and not write_modes.isdisjoint(mode))
                    or (type(flags) is int and flags & write_flags)):
                return
            event = 'open:write'
        counts[event] = counts.get(event, 0) + 1

    sys.addaudithook(hook)
    # A blocked module that is already imported would never raise the "import" event again;
    # forget it so the next import statement goes through the hook (core modules excepted).
    if blocked:
        for name in list(sys.modules):
            if (name not in _CORE_MODULES and not name.startswith('encodings')
                    and blocked_name(name)):
                del sys.modules[name]
    rep.ok('audit')


# ---------------------------------------------------------------------------------------------
# canary(): prove the layers from inside a confined process
# ---------------------------------------------------------------------------------------------

def _raw_module(name):
    """Load a module without the import statement, as a routine could. Built-in modules then
    raise no audit event at all; extension modules still raise "import" (from
    _imp.create_dynamic), which is why apply() runs its canary before installing the hook."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    bootstrap = sys.modules['_frozen_importlib']
    spec = bootstrap.BuiltinImporter.find_spec(name)
    if spec is None:
        spec = sys.modules['_frozen_importlib_external'].PathFinder.find_spec(name)
    if spec is None:
        raise ImportError(name)
    module = bootstrap.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def canary():
    """Try what a confined worker must not be able to do. Returns
    {"socket"|"fork"|"readEtcPasswd"|"writeTmp"|"signalParent": "blocked"|"allowed",
     "errno": {probe: errno name of the refusal}}. An errno of "PermissionError" (no errno)
    means the audit hook refused to load _socket, not the kernel: apply(canary=True) runs this
    before the hook is installed."""
    result, errnos = {}, {}
    loaded = set(sys.modules)

    def attempt(key, action):
        try:
            action()
        except Exception as e:   # OSError from the kernel; ImportError if _socket is unloadable
            result[key] = 'blocked'
            errnos[key] = _errname(e)
        else:
            result[key] = 'allowed'

    def make_socket():
        _socket = _raw_module('_socket')
        _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM).close()

    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    def read_passwd():
        fd = os.open('/etc/passwd', os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.read(fd, 1)
        finally:
            os.close(fd)

    def write_tmp():
        path = '/tmp/.skein-canary-%d-%s' % (os.getpid(), os.urandom(4).hex())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b'x')
        finally:
            os.close(fd)
            os.unlink(path)

    attempt('socket', make_socket)
    attempt('fork', fork)
    attempt('readEtcPasswd', read_passwd)
    attempt('writeTmp', write_tmp)
    attempt('signalParent', lambda: os.kill(os.getppid(), 0))
    # Built-in single-phase modules (_socket on Debian's python) register themselves in
    # sys.modules; forget them so the block-list still sees a routine's import.
    for name in set(sys.modules) - loaded:
        del sys.modules[name]
    result['errno'] = errnos
    return result
