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
#   mount namespace          third-party package directories (site-/dist-packages) in the
#                            trees Landlock grants are hidden under empty read-only tmpfs
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
#   namespaces   bool (True)   layers userns, netns, ipcns, mountns (mountns: only with Landlock)
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
LAYERS = ('setsid', 'userns', 'netns', 'ipcns', 'mountns', 'rlimits', 'landlock',
          'landlock-net', 'landlock-scope', 'seccomp', 'canary', 'audit')

# Filled by apply(): {"applied": [...], "skipped": {layer: reason}, "threads": n,
# "hidden": [paths the mount namespace covered with an empty tmpfs],
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

# mount(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

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
# PACKAGE_DIR_NAMES inside the library roots and the stdlib must stay unreadable unless the
# policy lists them (readPaths/listPaths), so that the kernel enforces the package allow-list:
# in a mount namespace each is hidden under an empty read-only tmpfs and Landlock grants the
# trees whole (a handful of rules); without one (or for a listed directory) Landlock carves it
# out of the tree, granting its siblings one by one (hundreds of rules, ~4 ms).
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


def _read_file(path):
    """A small (/proc) file's bytes, without the cost of open()'s buffered objects."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b''.join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _seccomp_actions():
    try:
        return _read_file('/proc/sys/kernel/seccomp/actions_avail').decode().split()
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


def _which(name):
    """shutil.which for a bare name: the first executable file on PATH (os.defpath when unset,
    as in the probe's cleared environment). shutil's import (fnmatch, bz2, lzma and their
    libraries) cost more than the rest of probe() in the start-up's one interpreter run."""
    for d in os.environ.get('PATH', os.defpath).split(os.pathsep):
        path = os.path.join(d or os.curdir, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def probe():
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
        'bwrap': _which('bwrap'),
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
    last_report = {'applied': rep.applied, 'skipped': rep.skipped, 'threads': threads,
                   'hidden': []}

    # What Landlock will grant, planned before the namespaces: the mount namespace hides the
    # package directories found in those trees. None: Landlock is off or unavailable.
    landlock, fs, no_fs = _enabled(policy, 'landlock'), None, 'disabled by policy'
    abi = _landlock_abi() if landlock else 0
    if landlock and abi < 1:
        no_fs = 'not supported by this kernel'
    elif abi >= 1:
        try:
            fs = _fs_plan(policy.get('readPaths') or (), policy.get('listPaths') or ())
        except Exception as e:   # the Landlock step plans again and reports it
            no_fs = 'planning its rules failed: %s' % _why(e)

    # 1. setsid: the agent spawns workers detached; this covers callers that did not.
    _step(rep, ['setsid'], _enabled(policy, 'setsid'), _do_setsid)
    # 2. namespaces: unshare(CLONE_NEWUSER) needs a single-threaded process, so it goes first.
    _step(rep, ['userns', 'netns', 'ipcns', 'mountns'], _enabled(policy, 'namespaces'),
          _do_namespaces, outer_uid, outer_gid, threads, fs, no_fs)
    # 3. resource limits (always at least RLIMIT_CORE = 0)
    _step(rep, ['rlimits'], True, _do_rlimits, policy.get('limits') or {}, outer_uid)
    # 4. Landlock, then 5. seccomp, which forbids unshare and so comes last.
    _step(rep, ['landlock', 'landlock-net', 'landlock-scope'], landlock, _do_landlock, abi, fs,
          policy.get('readPaths') or (), policy.get('listPaths') or ())
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


def _do_namespaces(rep, uid, gid, threads, fs=None, no_fs='Landlock is off'):
    names = ['userns', 'netns', 'ipcns']
    if threads > 1:
        rep.miss(names + ['mountns'],
                 'process has %d threads; unshare needs a single-threaded process' % threads)
        return
    ctypes, libc = _libc()
    flags = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC
    # The mount namespace only serves Landlock (it hides package directories from its grants),
    # and is taken only together with a user namespace, which owns it: its mounts then cannot
    # propagate to the host, and the worker cannot undo them once its capabilities are gone.
    mount_reason = None
    if fs is None:
        mount_reason = 'only hides package directories from Landlock: %s' % no_fs
    elif libc.unshare(flags | CLONE_NEWNS) != 0:
        mount_reason = 'unshare(CLONE_NEWNS): %s' % _errname(OSError(ctypes.get_errno(), ''))
    if mount_reason is not None:
        try:
            _check(libc.unshare(flags), 'unshare')
        except OSError as e:
            reason = 'unshare(CLONE_NEWUSER): %s' % _errname(e)
            # Hosts that forbid user namespaces (AppArmor, Docker's profile) may still let root
            # take private network and IPC namespaces.
            if uid == 0 and libc.unshare(CLONE_NEWNET | CLONE_NEWIPC) == 0:
                rep.miss(['userns', 'mountns'], reason)
                rep.ok('netns', 'ipcns')
            else:
                rep.miss(names + ['mountns'], reason)
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
        if mount_reason is None:   # needs the capabilities the user namespace granted
            try:
                mount_reason = _hide_package_dirs(ctypes, libc, fs)
            except Exception as e:   # whatever was hidden stays hidden; Landlock carves all
                fs['hidden'] = set()
                mount_reason = 'unexpected %s' % _why(e)
        _drop_capabilities()
    except OSError as e:   # still in the new namespaces, as an unmapped user
        if fs is not None:
            fs['hidden'] = set()   # capabilities may remain: let Landlock carve instead
        rep.ok('netns', 'ipcns')
        rep.miss(['userns', 'mountns'], 'after unshare: %s' % _why(e))
        return
    rep.ok(*names)
    if mount_reason is None:
        rep.ok('mountns')
    else:
        rep.miss(['mountns'], mount_reason)


def _mountinfo():
    """[(device, root within its file system, mount point)] of this mount namespace."""
    mounts = []
    for line in _read_file('/proc/self/mountinfo').split(b'\n'):
        fields = line.split(b' ', 5)
        if len(fields) > 5:
            root, point = [os.fsdecode(_unescape(v)) for v in fields[3:5]]
            mounts.append((fields[2], root, point))
    return mounts


def _unescape(value):
    """mountinfo writes space, tab, newline and backslash in paths as \\ooo."""
    if b'\\' not in value:
        return value
    parts = value.split(b'\\')
    return parts[0] + b''.join(bytes([int(p[:3], 8)]) + p[3:] for p in parts[1:])


def _exposures(path, ident, mounts):
    """Every path of this mount namespace at which directory `path` (identity (st_dev, st_ino))
    can be reached: itself, and wherever another mount of its file system (a bind mount) shows
    it. A Landlock rule is attached to an inode, not to a path, so a tree granted whole and
    seen through a bind mount would expose a package directory hidden only at `path`.
    Candidates come from every mount that contains `path`; only those that stat() to the
    same directory count (others are shadowed by another mount, so unreachable)."""
    found, checked = [path], {path}
    for c_device, c_root, c_point in mounts:
        if not (c_point == '/' or path == c_point or path.startswith(c_point + '/')):
            continue
        inside = c_root.rstrip('/') + path[len(c_point.rstrip('/')):]   # path within the fs
        for device, root, point in mounts:
            root = root.rstrip('/')
            if device != c_device or not (inside == root or inside.startswith(root + '/')):
                continue
            alias = point.rstrip('/') + inside[len(root):] or '/'
            if alias in checked:
                continue
            checked.add(alias)
            try:
                st = os.stat(alias)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == ident:
                found.append(alias)
    return found


def _hide_package_dirs(ctypes, libc, fs):
    """In the new mount namespace: mount an empty read-only tmpfs over every package directory
    Landlock's trees hold, at every path it is reachable at, unless the policy allows something
    in or above it. Returns None on success (fs["hidden"] then lists the hidden directories;
    the others stay carved out of the Landlock rules), else why nothing was hidden."""
    try:
        # Already a slave of the host (the namespace belongs to a new user namespace); private
        # so that nothing propagates in either direction.
        _check(libc.mount(None, b'/', None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None),
               'mount(/, MS_PRIVATE)')
        mounts = _mountinfo()
    except OSError as e:
        return _why(e)
    allowed = fs['allowed']

    def is_allowed(path):
        prefix = path + '/'
        return any(a == path or a.startswith(prefix) or path.startswith(a + '/')
                   for a in allowed)

    targets = {}
    for path, ident in fs['packages'].items():
        if ident is None or is_allowed(path):   # symlinks: their targets decide
            continue
        paths = _exposures(path, ident, mounts)
        if not any(is_allowed(p) for p in paths):
            targets[path] = paths
    done, error = {}, None
    flags = ctypes.c_ulong(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    hidden = fs['hidden']
    for path, paths in targets.items():
        for p in paths:
            if p not in done:
                done[p] = libc.mount(b'tmpfs', os.fsencode(p), b'tmpfs', flags,
                                     b'mode=0555') == 0
                if not done[p] and error is None:
                    error = 'mount(tmpfs, %s): %s' % (p, _errname(OSError(ctypes.get_errno(), '')))
        if all(done[p] for p in paths):   # else Landlock carves it out (alias-proof)
            hidden.add(path)
    last_report['hidden'] = [p for p, ok in done.items() if ok]
    return error if targets and not hidden else None


# --- rlimits ---------------------------------------------------------------------------------

# asm-generic/resource.h numbering (x86 and arm64): AS, NOFILE, FSIZE, CPU, NPROC, CORE
_RLIMIT_NUMBERS = (9, 7, 1, 0, 6, 4)


def _rlimit_calls():
    """(getrlimit(res) -> (soft, hard), setrlimit(res, (soft, hard)), RLIM_INFINITY, resource
    numbers as in _RLIMIT_NUMBERS). Through libc where the numbering is known: importing the
    resource extension module costs ~0.3 ms of every worker start."""
    if os.uname().machine not in _ARCHES:
        import resource as r
        return (r.getrlimit, r.setrlimit, r.RLIM_INFINITY,
                (r.RLIMIT_AS, r.RLIMIT_NOFILE, r.RLIMIT_FSIZE, r.RLIMIT_CPU, r.RLIMIT_NPROC,
                 r.RLIMIT_CORE))
    ctypes, libc = _libc()
    pair = ctypes.c_ulong * 2   # struct rlimit {rlim_t cur, max}; rlim_t is unsigned long

    def getrlimit(res):
        value = pair()
        _check(libc.getrlimit(res, value), 'getrlimit')
        return value[0], value[1]

    def setrlimit(res, limits):
        _check(libc.setrlimit(res, pair(*limits)), 'setrlimit')

    return getrlimit, setrlimit, ctypes.c_ulong(-1).value, _RLIMIT_NUMBERS


def _do_rlimits(rep, limits, outer_uid):
    getrlimit, setrlimit, infinity, numbers = _rlimit_calls()
    rlimit_as, rlimit_nofile, rlimit_fsize, rlimit_cpu, rlimit_nproc, rlimit_core = numbers
    wanted = [
        ('memoryBytes', rlimit_as),
        ('openFiles', rlimit_nofile),
        ('fileSizeBytes', rlimit_fsize),
        ('cpuSeconds', rlimit_cpu),
    ]
    if outer_uid != 0:   # the kernel does not enforce RLIMIT_NPROC against root
        wanted.append(('processes', rlimit_nproc))
    try:
        for key, res in wanted:
            value = limits.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                continue
            value = min(value, infinity - 1)
            _, hard = getrlimit(res)
            # CPU: soft limit raises SIGXCPU, the hard limit one second later SIGKILLs.
            soft, new_hard = value, value + 1 if res == rlimit_cpu else value
            if hard != infinity:   # an unprivileged process cannot raise its hard limit
                soft, new_hard = min(soft, hard), min(new_hard, hard)
            setrlimit(res, (soft, new_hard))
        setrlimit(rlimit_core, (0, 0))
    except (OSError, ValueError) as e:
        why = _why(e)
        rep.miss(['rlimits'], why if why.startswith('setrlimit') else 'setrlimit: %s' % why)
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


def _listdir(path, cache):
    names = cache.get(path)
    if names is None:
        names = cache[path] = os.listdir(path)
    return names


def _find_packages(found, path, cache, depth=2):
    """Record in `found` the package directories (PACKAGE_DIR_NAMES entries) of directory `path`
    and of its python*/ subdirectories, within `depth` levels: {path: (st_dev, st_ino) of a
    real directory, or None for anything else (a symlink: its target decides)}. A python*/
    subdirectory is searched only when it holds a package directory itself (python3/,
    python3.11/ next to the stdlib), as the carve-out always did. `cache`: listings so far."""
    try:
        names = _listdir(path, cache)
    except OSError:
        return
    for name in PACKAGE_DIR_NAMES.intersection(names):
        child = path + '/' + name
        try:
            st = os.lstat(child)
        except OSError:
            continue
        found[child] = (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None
    if depth <= 0:
        return
    for name in names:
        if name.startswith('python'):
            child = path + '/' + name
            try:
                if not stat.S_ISDIR(os.lstat(child).st_mode):
                    continue
                sub = _listdir(child, cache)
            except OSError:
                continue
            if not PACKAGE_DIR_NAMES.isdisjoint(sub):
                _find_packages(found, child, cache, depth - 1)


def _grant_tree(rules, path, carved):
    """Grant read on directory `path` except for the `carved` paths within it. Landlock cannot
    subtract from a granted tree, so a tree that holds a carved directory is granted child by
    child, plus READ_DIR on itself so the import system can list it. Symlinked children are
    skipped there: granting one would grant its target, which a whole-tree rule never does."""
    prefix = path + '/'
    inside = [c for c in carved if c.startswith(prefix)]
    if not inside:
        rules[path] = rules.get(path, 0) | DIR_READ
        return
    try:
        entries = list(os.scandir(path))
    except OSError:
        rules[path] = rules.get(path, 0) | DIR_READ
        return
    rules[path] = rules.get(path, 0) | FS_READ_DIR
    for entry in entries:
        child = entry.path
        if child in carved:
            continue
        if entry.is_dir(follow_symlinks=False):
            child_prefix = child + '/'
            if any(c.startswith(child_prefix) for c in inside):
                _grant_tree(rules, child, carved)
            else:
                rules[child] = rules.get(child, 0) | DIR_READ
        elif not entry.is_symlink():
            rules[child] = rules.get(child, 0) | FS_READ_FILE


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


def _fs_plan(extra_paths, list_paths=()):
    """What Landlock grants, resolved: {"roots": [(real path, is directory, search it for
    package directories)], "packages": the package directories found (see _find_packages),
    "readWrite": [real path], "extra": [(real path, is directory)] from readPaths, "list":
    [real directory] from listPaths, "allowed": the real paths of both, "hidden": the package
    directories the mount namespace hid (filled by _hide_package_dirs)}. Roots are resolved
    first so that /lib -> /usr/lib is not granted whole behind a carve-out's back."""
    roots, seen, packages, listings = [], set(), {}, {}
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
        roots.append((real, is_dir, is_dir and scan))
        if is_dir and scan:
            _find_packages(packages, real, listings)
    read_write = [r[0] for r in map(_resolve, READ_WRITE_PATHS) if r]
    extra = [r for r in (_resolve(p) for p in extra_paths if isinstance(p, str) and p) if r]
    listed = [r[0] for r in (_resolve(p) for p in list_paths if isinstance(p, str) and p)
              if r and r[1]]
    return {'roots': roots, 'packages': packages, 'readWrite': read_write, 'extra': extra,
            'list': listed, 'allowed': [r[0] for r in extra] + listed, 'hidden': set()}


def _read_rules(fs):
    """{real path: access} for the Landlock ruleset. Package directories the mount namespace
    hid are granted with their trees (they are empty now); the others are carved out. Access
    on non-directories is limited to file rights (directory rights on a file are EINVAL). A
    rule whose rights an ancestor's rule already grants is left out."""
    rules = {}
    hidden = fs['hidden']
    if hidden:   # symlinks need no carving: Landlock checks the path they resolve to
        carved = {p for p, ident in fs['packages'].items() if ident and p not in hidden}
    else:        # no mount namespace: carve every entry, as always
        carved = set(fs['packages'])
    for real, is_dir, scan in fs['roots']:
        if scan:
            _grant_tree(rules, real, carved)
        else:
            rules[real] = rules.get(real, 0) | (DIR_READ if is_dir else FS_READ_FILE)
    for real in fs['readWrite']:
        rules[real] = FS_READ_FILE | FS_WRITE_FILE
    for real, is_dir in fs['extra']:   # allowed package directories: granted whole, as given
        rules[real] = rules.get(real, 0) | (DIR_READ if is_dir else FS_READ_FILE)
    for real in fs['list']:            # listing only: READ_DIR beneath, no READ_FILE
        rules[real] = rules.get(real, 0) | FS_READ_DIR
    kept = {}
    for path, access in rules.items():
        parent = path
        while parent != '/':
            parent = parent.rpartition('/')[0] or '/'
            if rules.get(parent, 0) & access == access:
                break
        else:
            kept[path] = access
    return kept


def _do_landlock(rep, abi, fs, extra_paths=(), list_paths=()):
    names = ['landlock', 'landlock-net', 'landlock-scope']
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
    add_rule, c_long = libc.syscall, ctypes.c_long     # hot loop: up to a few hundred rules
    nr_add, ruleset_arg, rule_type, flags = (c_long(NR_LANDLOCK_ADD_RULE), c_long(ruleset),
                                             c_long(LANDLOCK_RULE_PATH_BENEATH), c_long(0))
    rule = PathBeneath(0, -1)
    rule_ref = ctypes.byref(rule)
    try:
        if fs is None:   # not planned by apply() (or planning failed there: fail here)
            fs = _fs_plan(extra_paths, list_paths)
        for path, access in _read_rules(fs).items():
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
    table = ctypes.create_string_buffer(struct.pack('=' + 'HBBI' * len(insns),
                                                    *[f for i in insns for f in i]))
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
