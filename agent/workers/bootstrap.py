# skein worker bootstrap. Started as `python3 -I -S -u -c <this file>`; speaks worker
# protocol v2 (agent/workers/frames.ts, docs/protocol.md): length-prefixed frames both ways,
# calls on stdin, replies on a private descriptor (the original fd 1): fd 1 is pointed at
# stderr so a routine's print() can never forge a reply.
#   header: u32 length (big-endian), u8 kind, u8 encoding, u32 call id (big-endian); payload
#   agent -> worker  I init {"v":2,"worker":..,"routines":..,"limits":..,...}   (JSON)
#                    C call {"r":routine,"a":args,"k":kwargs,"c":credits}      (JSON, or CBOR when it holds bytes)
#                    G grant N more credits (JSON int)   S stop: close the running generator
#   worker -> agent  H hello {"ready":true,"v":2,"pid":N,"python":..,"layers":[..]} or {"ready":false,"error":{..}}
#                    R result  Y item (one credit each)  D generator done  E error {"type","message","trace"}
#                    L left ["timer"|"trace"|"threads",...] before the call's last frame, when the call
#                      left live activity behind (the agent then retires the worker; it also counts
#                      threads and child processes itself, from /proc, which a routine cannot fake)
# Values go as JSON (the C-accelerated json: the fast path) unless they hold bytes or
# bytearray, which go as CBOR (the subset below; no tags).
import sys, os, json, builtins, traceback, signal, _thread, struct, select

_HEADER = struct.Struct('>IBBI')
_HEADER_BYTES = _HEADER.size
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from
K_INIT, K_CALL, K_GRANT, K_STOP = 0x49, 0x43, 0x47, 0x53
K_HELLO, K_RESULT, K_ITEM, K_DONE, K_ERROR, K_LEFT = 0x48, 0x52, 0x59, 0x44, 0x45, 0x4c
E_NONE, E_JSON, E_CBOR = 0x6e, 0x6a, 0x63
VERSION = 2
_BIG_WRITE = 65536

# Protocol onto a private descriptor; fd 1 becomes stderr for routine output.
_proto = os.dup(1)
os.dup2(2, 1)
sys.stdout = sys.stderr
_layers = []
_inbuf = bytearray()
_poller = select.poll()
_poller.register(0, select.POLLIN)


def _write_all(data, write=os.write):
    # One write takes a reply whole unless the pipe is full; the loop is for that case.
    n = write(_proto, data)
    if n < len(data):
        view = memoryview(data)[n:]
        while view:
            view = view[write(_proto, view):]


def _send(kind, cid, enc=E_NONE, payload=b''):
    n = len(payload)
    if n <= _BIG_WRITE:
        _write_all(_pack_header(n, kind, enc, cid) + payload)
    else:
        # A big payload (1 MiB of bytes) goes as it is, not copied behind its header.
        _write_all(_pack_header(n, kind, enc, cid))
        _write_all(payload)


def _send_json(kind, cid, obj):
    _send(kind, cid, E_JSON, json.dumps(obj, separators=(',', ':'), allow_nan=False).encode())


def _fill(n):
    buf = _inbuf
    while len(buf) < n:
        chunk = os.read(0, max(_BIG_WRITE, n - len(buf)))
        if not chunk:
            # stdin closed: end without running a routine's atexit hooks (the agent otherwise
            # ends workers with SIGKILL, which runs none either).
            os._exit(0)
        buf += chunk


def _read_frame(read=os.read):
    if not _inbuf:
        # The usual case: the agent's one write of a frame arrives as one read, so the frame is
        # taken from it as it is, without going through the buffer.
        chunk = read(0, _BIG_WRITE)
        if not chunk:
            os._exit(0)  # stdin closed, as in _fill
        if len(chunk) >= _HEADER_BYTES:
            n, kind, enc, cid = _unpack_header(chunk)
            if len(chunk) == _HEADER_BYTES + n:
                return kind, enc, cid, chunk[_HEADER_BYTES:]
        _inbuf.extend(chunk)
    _fill(_HEADER_BYTES)
    n, kind, enc, cid = _unpack_header(_inbuf)
    _fill(_HEADER_BYTES + n)
    with memoryview(_inbuf) as view:
        payload = bytes(view[_HEADER_BYTES:_HEADER_BYTES + n])
    del _inbuf[:_HEADER_BYTES + n]
    return kind, enc, cid, payload


def _pending():
    """Whether a frame from the agent is waiting (a stop, more credit) without blocking."""
    return len(_inbuf) > 0 or bool(_poller.poll(0))


def _read_init():
    _fill(_HEADER_BYTES)
    n, kind, enc, cid = _unpack_header(_inbuf)
    if kind != K_INIT or enc != E_JSON:
        # Not a v2 init frame: most likely a v1 agent's JSON line. Answered as v1 would read it.
        os.write(_proto, b'{"ready":false,"error":{"routine":null,"type":"ProtocolVersion",'
                         b'"message":"this worker speaks protocol v2; the agent sent something else"}}\n')
        os._exit(3)
    kind, enc, cid, payload = _read_frame()
    init = json.loads(payload)
    if not isinstance(init, dict):
        os._exit(3)
    if init.get('v') != VERSION:
        _send_json(K_HELLO, 0, {'ready': False, 'v': VERSION, 'error': {'routine': None, 'type': 'ProtocolVersion',
                   'message': 'the agent speaks protocol v%s, this worker v%d' % (init.get('v'), VERSION)}})
        os._exit(3)
    return init


_init = _read_init()


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
    _send_json(K_HELLO, 0, {'ready': False, 'v': VERSION, 'error': {'routine': None, 'type': 'ConfinementError', 'message': message}})
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
            _send_json(K_HELLO, 0, {'ready': False, 'v': VERSION, 'error': {'routine': name, 'type': type(e).__name__, 'message': str(e)}})
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
def _left(getitimer=signal.getitimer, real=signal.ITIMER_REAL, virtual=signal.ITIMER_VIRTUAL,
          prof=signal.ITIMER_PROF, idle=(0.0, 0.0), gettrace=sys.gettrace, getprofile=sys.getprofile,
          threads=_thread._count):
    """Live activity a call left behind that could act during a later call: an armed interval
    timer or alarm (its handler runs in the main thread, reading whatever frame it
    interrupts; without one, its signal kills the worker in a later call), a trace or profile
    function (called on every frame, the bootstrap's included), threads. Child processes and
    native threads are counted by the agent. None when there is none (every call asks)."""
    timer = getitimer(real) != idle or getitimer(virtual) != idle or getitimer(prof) != idle
    trace = gettrace() is not None or getprofile() is not None
    threaded = threads() > 0
    if not (timer or trace or threaded):
        return None
    return [what for what, live in (('timer', timer), ('trace', trace), ('threads', threaded)) if live]


# --- values: JSON, or CBOR when they hold bytes ----------------------------------------------

class _HoldsBytes(Exception):
    """Raised inside json's encoder at the first bytes/bytearray: the value goes as CBOR."""


class _Unsendable(Exception):
    """A value CBOR (as the agent takes it) cannot carry; `path` is built while unwinding."""

    def __init__(self, message):
        Exception.__init__(self, message)
        self.path = []

    def __str__(self):
        return '%s%s%s' % (''.join(self.path), ': ' if self.path else '', self.args[0])


def _no_json(o):
    if isinstance(o, (bytes, bytearray)):
        raise _HoldsBytes()
    raise TypeError('Object of type %s is not JSON serializable' % type(o).__name__)


# The C encoder; `default` only runs for what json cannot write itself.
_json_encode = json.JSONEncoder(separators=(',', ':'), allow_nan=False, default=_no_json).encode
_pack_double = struct.Struct('>d').pack
_INF = float('inf')


def _cbor_head(out, major, n):
    if n < 24:
        out.append(major << 5 | n)
    elif n < 0x100:
        out += bytes((major << 5 | 24, n))
    elif n < 0x10000:
        out.append(major << 5 | 25)
        out += n.to_bytes(2, 'big')
    elif n < 0x100000000:
        out.append(major << 5 | 26)
        out += n.to_bytes(4, 'big')
    else:
        out.append(major << 5 | 27)
        out += n.to_bytes(8, 'big')


def _cbor_key(k):
    # Keys as json writes them, so a value's keys arrive the same whether or not it also
    # holds bytes: str as is; int, float, bool and None as json's text for them; nothing else.
    if isinstance(k, str):
        return k
    if k is True:
        return 'true'
    if k is False:
        return 'false'
    if k is None:
        return 'null'
    if isinstance(k, int):
        return int.__repr__(k)
    if isinstance(k, float):
        if k != k or k in (_INF, -_INF):
            raise _Unsendable('key %r is not a finite number' % k)
        return float.__repr__(k)
    raise _Unsendable('keys must be str, int, float, bool or None, not %s' % type(k).__name__)


def _cbor_encode(v, out):
    if isinstance(v, str):
        try:
            b = v.encode('utf-8')
        except UnicodeEncodeError as e:
            raise _Unsendable('a lone surrogate at index %d: strings must be valid Unicode' % e.start)
        _cbor_head(out, 3, len(b))
        out += b
    elif v is None:
        out.append(0xf6)
    elif v is True:
        out.append(0xf5)
    elif v is False:
        out.append(0xf4)
    elif isinstance(v, int):
        if 0 <= v < 0x10000000000000000:
            _cbor_head(out, 0, v)
        elif -0x10000000000000000 <= v < 0:
            _cbor_head(out, 1, -1 - v)
        else:
            # CBOR would need a bignum tag, which the agent does not take (nor could JSON callers).
            raise _Unsendable('integer %s does not fit in 64 bits; send it as a string' % (str(v)[:40]))
    elif isinstance(v, float):
        if v != v or v in (_INF, -_INF):
            raise _Unsendable('Out of range float values are not JSON compliant')
        out.append(0xfb)
        out += _pack_double(v)
    elif isinstance(v, (bytes, bytearray)):
        _cbor_head(out, 2, len(v))
        out += v
    elif isinstance(v, (list, tuple)):
        _cbor_head(out, 4, len(v))
        for i, x in enumerate(v):
            try:
                _cbor_encode(x, out)
            except _Unsendable as e:
                e.path.insert(0, '[%d]' % i)
                raise
    elif isinstance(v, dict):
        _cbor_head(out, 5, len(v))
        seen = set()
        for k, x in v.items():
            key = _cbor_key(k)
            if key in seen:
                raise _Unsendable('duplicate key %s: each key may appear once' % json.dumps(key))
            seen.add(key)
            _cbor_encode(key, out)
            try:
                _cbor_encode(x, out)
            except _Unsendable as e:
                e.path.insert(0, '.' + key)
                raise
    else:
        raise _Unsendable('Object of type %s is not JSON serializable' % type(v).__name__)


def _encode(value):
    """(encoding, payload) of a result or item. Raises ValueError, TypeError or RecursionError
    for what cannot be sent (reported as ResultNotSerializable)."""
    try:
        return E_JSON, _json_encode(value).encode()
    except _HoldsBytes:
        pass
    out = bytearray()
    try:
        _cbor_encode(value, out)
    except _Unsendable as e:
        raise ValueError(str(e))
    return E_CBOR, out


_unpack_half = struct.Struct('>e').unpack_from
_unpack_single = struct.Struct('>f').unpack_from
_unpack_double = struct.Struct('>d').unpack_from


def _cbor_decode(d, i):
    """One CBOR item of a call frame from the agent (agent/workers/cbor-encode.ts and what
    it may pass on: definite lengths, no tags); returns (value, next offset)."""
    ib = d[i]
    major = ib >> 5
    info = ib & 31
    i += 1
    if major == 7:
        if info == 20:
            return False, i
        if info == 21:
            return True, i
        if info == 22:
            return None, i
        if info == 25:
            return _unpack_half(d, i)[0], i + 2
        if info == 26:
            return _unpack_single(d, i)[0], i + 4
        if info == 27:
            return _unpack_double(d, i)[0], i + 8
        raise ValueError('CBOR simple value %d' % info)
    if info < 24:
        n = info
    elif info < 28:
        size = 1 << (info - 24)
        n = int.from_bytes(d[i:i + size], 'big')
        i += size
    else:
        raise ValueError('CBOR indefinite length')
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major == 2:
        return d[i:i + n], i + n
    if major == 3:
        return str(d[i:i + n], 'utf-8'), i + n
    if major == 4:
        items = []
        for _ in range(n):
            v, i = _cbor_decode(d, i)
            items.append(v)
        return items, i
    if major == 5:
        m = {}
        for _ in range(n):
            k, i = _cbor_decode(d, i)
            m[k], i = _cbor_decode(d, i)
        return m, i
    raise ValueError('CBOR tag')


def _cbor_loads(data):
    value, end = _cbor_decode(data, 0)
    if end != len(data):
        raise ValueError('CBOR: trailing bytes')
    return value


# --- calls ---------------------------------------------------------------------------------

_GeneratorType = type((lambda: (yield))())


async def _agen_probe():
    yield


_AsyncGeneratorType = type(_agen_probe())


class EventLoopUnavailable(RuntimeError):
    """An async generator awaited something that needs an event loop."""


def _run_sync(coro):
    """Runs a coroutine that never suspends. asyncio's loop cannot start in the worker: its
    self-pipe is a socketpair (refused by seccomp) and the socket module is a blocked import;
    so an async generator may await only what completes without waiting (docs/protocol.md)."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    coro.close()
    raise EventLoopUnavailable('an async generator awaited something that needs an event loop (asyncio sleep, I/O, '
                               'futures); the worker sandbox cannot run one: use a plain generator')


class ResultNotSerializable(ValueError):
    """A result or item that cannot be sent (reported with this type name, without a trace)."""


def _unsendable(e):
    # RecursionError: a value nested too deep for the encoder; reported, not a dead worker.
    return ResultNotSerializable('routine returned a value that is not JSON-serialisable: %s' % e)


def _reply_error(cid, e, activity):
    if activity:
        _send_json(K_LEFT, cid, activity)
    trace = '' if type(e) is ResultNotSerializable else _trace(e)
    _send_json(K_ERROR, cid, {'type': type(e).__name__, 'message': str(e)[:4096], 'trace': trace})


def _control(cid, credits, wait):
    """Reads the agent's frames for the running stream: blocks while `wait` and no credit is
    left. Returns (credits, stop). Frames for other calls are stale (sent before their call
    ended) and skipped."""
    while (wait and credits <= 0) or _pending():
        kind, enc, fcid, payload = _read_frame()
        if fcid != cid:
            continue
        if kind == K_STOP:
            return credits, True
        if kind == K_GRANT:
            credits += int(payload)
    return credits, False


def _stream(cid, gen, credits, left):
    """Sends a generator's items, one credit each, then D (or E). A stop frame closes it:
    GeneratorExit at its yield, so its finally blocks run."""
    if isinstance(gen, _AsyncGeneratorType):
        anext = gen.__anext__

        def advance():
            try:
                return _run_sync(anext())
            except StopAsyncIteration:
                raise StopIteration

        def close():
            _run_sync(gen.aclose())
    else:
        advance = gen.__next__
        close = gen.close
    try:
        while True:
            credits, stop = _control(cid, credits, True)
            if stop:
                close()
                break
            try:
                item = advance()
            except StopIteration:
                break
            try:
                enc, payload = _encode(item)
            except (TypeError, ValueError, RecursionError) as e:
                close()
                raise _unsendable(e)
            _send(K_ITEM, cid, enc, payload)
            credits -= 1
    except BaseException as e:
        _reply_error(cid, e, left())
        return
    activity = left()
    if activity:
        _send_json(K_LEFT, cid, activity)
    _send(K_DONE, cid)


def _call_message(enc, payload, scan=json.decoder.JSONDecoder().scan_once, loads=json.loads):
    """A call frame's {"r","a","k","c"}. JSON goes straight to json's (C) scanner: json.loads
    spends more than the scan itself finding the encoding of bytes and skipping whitespace,
    which the agent's JSON.stringify never writes; anything else is left to json.loads."""
    if enc != E_JSON:
        return _cbor_loads(payload)
    text = str(payload, 'utf-8', 'surrogatepass')
    try:
        msg, end = scan(text, 0)
    except StopIteration:
        end = -1
    return msg if end == len(text) else loads(text)


def _serve(table):
    read_frame = _read_frame
    message = _call_message
    encode = _encode
    send = _send
    left = _left
    while True:
        kind, enc, cid, payload = read_frame()
        if kind != K_CALL:
            continue  # a grant or stop for a call that has ended meanwhile
        msg = message(enc, payload)
        fn = table.get(msg['r'])
        try:
            if fn is None:
                raise LookupError('routine %r is not loaded in this worker' % msg['r'])
            result = fn(*msg.get('a') or (), **msg.get('k') or {})
            if isinstance(result, (_GeneratorType, _AsyncGeneratorType)):
                _stream(cid, result, msg.get('c') or 0, left)
                continue
            try:
                renc, out = encode(result)
            except (TypeError, ValueError, RecursionError) as e:
                raise _unsendable(e)
        except BaseException as e:
            _reply_error(cid, e, left())
            continue
        activity = left()
        if activity:
            _send_json(K_LEFT, cid, activity)
        send(K_RESULT, cid, renc, out)


_die_with_parent()
# Explicit import path: the interpreter's stdlib (all -I -S leaves) plus allowed package dirs.
sys.path.extend(p for p in _init.get('packagePaths') or () if p not in sys.path)
if _init.get('policy') is not None:
    _confine(_init['confine'], _init.get('confineFor'), _init['policy'])
else:
    _apply_limits(_init.get('limits') or {})
_table = _load_routines(_init.get('routines') or {})
del _init
_send_json(K_HELLO, 0, {'ready': True, 'v': VERSION, 'pid': os.getpid(), 'python': '%d.%d.%d' % sys.version_info[:3], 'layers': _layers})
_serve(_table)
