# skein worker bootstrap. Started as `python3 -I -S -u -c <this file>`; the agent sends one
# init line on stdin, then one call per line. Replies go on a private descriptor (the
# original fd 1): fd 1 is pointed at stderr so a routine's print() can never forge a reply.
# Protocol (JSON lines, documented in docs/protocol.md):
#   agent -> worker  {"v":1,"worker":"w1","routines":{name:{source,file,function}},"limits":{...},
#                     "packagePaths":[...],"confine":"<marshalled confine.py, hex>"|null,"policy":{...}|null}
#   worker -> agent  {"ready":true,"pid":N,"python":"3.11.7","layers":[...]}
#                    or {"ready":false,"error":{"routine":..,"type":..,"message":..}}
#   agent -> worker  {"id":N,"r":"echo","a":[...],"k":{...}}
#   worker -> agent  {"id":N,"ok":<result>}  or  {"id":N,"err":{"type":..,"message":..,"trace":..}}
#                    either with "left":["timer"|"trace"|"threads",...] when the call left live
#                    activity behind (the agent then retires the worker; it also counts threads
#                    and child processes itself, from /proc, which a routine cannot fake)
import sys, os, json, builtins, traceback, signal, _thread

_stdin = sys.stdin.buffer
_init = json.loads(_stdin.readline() or b'null')
if not isinstance(_init, dict):
    os._exit(3)

# Protocol onto a private descriptor; fd 1 becomes stderr for routine output.
_proto = os.dup(1)
os.dup2(2, 1)
sys.stdout = sys.stderr
_layers = []


def _send(obj):
    data = (json.dumps(obj, separators=(',', ':'), allow_nan=False) + '\n').encode()
    view = memoryview(data)
    while view:
        n = os.write(_proto, view)
        view = view[n:]


def _apply_limits(limits):
    import resource
    pairs = (
        ('memoryBytes', resource.RLIMIT_AS),
        ('openFiles', resource.RLIMIT_NOFILE),
        ('fileSizeBytes', resource.RLIMIT_FSIZE),
        ('cpuSeconds', resource.RLIMIT_CPU),
    )
    for key, res in pairs:
        value = limits.get(key)
        if isinstance(value, int) and value > 0:
            resource.setrlimit(res, (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _layers.append('rlimits')


def _die_with_parent():
    # PR_SET_PDEATHSIG: the kernel kills this worker if the agent dies, even by SIGKILL.
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0:
            _layers.append('pdeathsig')
        # PR_SET_CHILD_SUBREAPER: an orphaned grandchild (where fork is allowed at all) becomes
        # this worker's child, so the agent sees it in /proc/<pid>/task/<pid>/children.
        libc.prctl(36, 1, 0, 0, 0)
        agent = _init.get('agentPid')
        if agent is not None and os.getppid() != agent:
            os._exit(4)  # the agent died before prctl took effect
    except Exception:
        pass


def _refuse(message, code):
    _send({'ready': False, 'error': {'routine': None, 'type': 'ConfinementError', 'message': message}})
    os._exit(code)


def _confine(code, built_for, policy):
    # The kernel layers (agent/sandbox/confine.py), before any routine code exists in this
    # process. A required layer that cannot be applied ends the worker with a clear error.
    # The agent compiled confine.py once with this interpreter; marshal data is only valid
    # for the exact version that wrote it.
    import marshal
    if built_for != sys.version:
        _refuse('the Python interpreter changed since the agent started (%s, now %s); restart the agent'
                % (built_for, sys.version.split()[0]), 7)
    ns = {'__name__': 'skein_confine'}
    exec(marshal.loads(bytes.fromhex(code)), ns)
    try:
        _layers.extend(ns['apply'](policy))
    except ns['ConfinementError'] as e:
        _refuse(str(e), 6)


def _load_routines(spec):
    table = {}
    for name, r in spec.items():
        g = {'__name__': 'skein.routine.' + name, '__builtins__': builtins, '__file__': r.get('file', name)}
        try:
            exec(compile(r['source'], r.get('file', name), 'exec'), g)
            fn = g.get(r['function'])
            if not callable(fn):
                raise NameError('function %r is not defined in %s' % (r['function'], r.get('file', name)))
        except BaseException as e:
            _send({'ready': False, 'error': {'routine': name, 'type': type(e).__name__, 'message': str(e)}})
            os._exit(5)
        table[name] = fn
    return table


def _trace(e, limit=4096):
    tb = e.__traceback__
    # Drop the bootstrap's own frame so the trace starts in routine code.
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    text = ''.join(traceback.format_exception(type(e), e, tb))
    return text[-limit:]


# Bound now, before any routine exists: what _left() calls cannot be swapped through the
# modules or builtins a routine shares with this bootstrap.
def _left(getitimer=signal.getitimer, timers=(signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF),
          idle=(0.0, 0.0), gettrace=sys.gettrace, getprofile=sys.getprofile, threads=_thread._count):
    """Live activity a call left behind that could act during a later call: an armed interval
    timer or alarm (its handler runs in the main thread, reading whatever frame it
    interrupts), a trace or profile function (called on every frame, the bootstrap's
    included), threads. Child processes and native threads are counted by the agent."""
    left = []
    for which in timers:
        if getitimer(which) != idle:
            left.append('timer')
            break
    if gettrace() is not None or getprofile() is not None:
        left.append('trace')
    if threads():
        left.append('threads')
    return left


def _serve(table):
    readline = _stdin.readline
    loads = json.loads
    send = _send
    left = _left
    while True:
        line = readline()
        if not line:
            return
        msg = loads(line)
        cid = msg['id']
        fn = table.get(msg['r'])
        try:
            if fn is None:
                raise LookupError('routine %r is not loaded in this worker' % msg['r'])
            result = fn(*msg.get('a') or (), **msg.get('k') or {})
        except BaseException as e:
            reply = {'id': cid, 'err': {'type': type(e).__name__, 'message': str(e)[:4096], 'trace': _trace(e)}}
        else:
            reply = {'id': cid, 'ok': result}
        activity = left()
        if activity:
            reply['left'] = activity
        try:
            send(reply)
        except (TypeError, ValueError, RecursionError) as e:
            # RecursionError: a result nested too deep for json; reported, not a dead worker.
            reply = {'id': cid, 'err': {'type': 'ResultNotSerializable', 'message': 'routine returned a value that is not JSON-serialisable: %s' % e, 'trace': ''}}
            if activity:
                reply['left'] = activity
            send(reply)


_die_with_parent()
# Explicit import path: the interpreter's stdlib (all -I -S leaves) plus allowed package dirs.
sys.path.extend(p for p in _init.get('packagePaths') or () if p not in sys.path)
if _init.get('policy') is not None:
    _confine(_init['confine'], _init.get('confineFor'), _init['policy'])
else:
    _apply_limits(_init.get('limits') or {})
_table = _load_routines(_init.get('routines') or {})
del _init
_send({'ready': True, 'pid': os.getpid(), 'python': '%d.%d.%d' % sys.version_info[:3], 'layers': _layers})
_serve(_table)
# stdin closed: end without running a routine's atexit hooks (the agent otherwise ends
# workers with SIGKILL, which runs none either).
os._exit(0)
