"""Ordinary routines that must keep working under sandbox.profile "full"
(test/escape/compat.test.ts): standard library modules, threads, logging, an allowed
third-party package. Imports are inside the functions, as a routine author would often
write them, so each call exercises the import path under the sandbox."""


def use_json(value):
    import json
    text = json.dumps(value, sort_keys=True)
    return {'text': text, 'back': json.loads(text), 'c_scanner': json.scanner.c_make_scanner is not None}


def use_re(text):
    import re
    words = re.findall(r'[a-z]+', text.lower())
    return {'words': words, 'sub': re.sub(r'(\d+)', lambda m: str(int(m.group(1)) * 2), text)}


def use_decimal(a, b):
    import decimal
    import sys
    from decimal import Decimal, localcontext
    with localcontext() as ctx:
        ctx.prec = 50
        q = Decimal(a) / Decimal(b)
    return {'sum': str(Decimal(a) + Decimal(b)), 'quotient': str(q), 'c_impl': '_decimal' in sys.modules}


def use_dataclasses(x, y):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Point:
        x: int
        y: int

        def norm1(self):
            return abs(self.x) + abs(self.y)

    p = Point(x, y)
    q = dataclasses.replace(p, y=0)
    return {'asdict': dataclasses.asdict(p), 'norm1': p.norm1(), 'replaced': dataclasses.astuple(q), 'fields': [f.name for f in dataclasses.fields(Point)]}


def use_logging(marker):
    import logging
    import sys
    log = logging.getLogger('skein.compat')
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter('%(levelname)s %(name)s %(message)s'))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    log.info('compat log line %s', marker)
    log.warning('compat warning %s', marker)
    return 'logged'


def use_threading(n):
    import threading
    from concurrent.futures import ThreadPoolExecutor
    lock = threading.Lock()
    counter = {'value': 0}

    def work(k):
        for _ in range(1000):
            with lock:
                counter['value'] += 1
        return k * k

    threads = [threading.Thread(target=work, args=(i,)) for i in range(int(n))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with ThreadPoolExecutor(max_workers=4) as pool:
        squares = list(pool.map(work, range(int(n))))
    return {'counter': counter['value'], 'squares': squares, 'alive': threading.active_count()}


def use_datetime(iso, zone):
    import datetime
    from zoneinfo import ZoneInfo
    utc = datetime.datetime.fromisoformat(iso).replace(tzinfo=datetime.timezone.utc)
    local = utc.astimezone(ZoneInfo(zone))
    return {'local': local.isoformat(), 'tzname': local.tzname(), 'plus_week': (utc + datetime.timedelta(days=7)).date().isoformat()}


def use_collections(words):
    import collections
    counts = collections.Counter(words)
    dq = collections.deque(words, maxlen=2)
    Pair = collections.namedtuple('Pair', 'word count')
    od = collections.OrderedDict(sorted(counts.items()))
    dd = collections.defaultdict(list)
    for w in words:
        dd[len(w)].append(w)
    return {'top': [list(Pair(*kv)) for kv in counts.most_common(2)], 'deque': list(dq), 'ordered': list(od), 'by_len': {str(k): v for k, v in sorted(dd.items())}}


def use_itertools(n):
    import itertools
    return {
        'combinations': [list(c) for c in itertools.combinations(range(int(n)), 2)],
        'accumulate': list(itertools.accumulate(range(1, int(n) + 1))),
        'chain': list(itertools.chain('ab', 'cd')),
        'groupby': [[k, len(list(g))] for k, g in itertools.groupby('aaabbc')],
    }


def use_hashlib(text):
    import hashlib
    import hmac
    data = text.encode()
    return {
        'sha256': hashlib.sha256(data).hexdigest(),
        'md5': hashlib.md5(data).hexdigest(),
        'blake2b': hashlib.blake2b(data, digest_size=16).hexdigest(),
        'hmac': hmac.new(b'key', data, 'sha256').hexdigest(),
        'pbkdf2': hashlib.pbkdf2_hmac('sha256', data, b'salt', 1000).hex(),
    }


def use_base64(text):
    import base64
    raw = text.encode()
    return {'b64': base64.b64encode(raw).decode(), 'urlsafe': base64.urlsafe_b64encode(b'\xfb\xff').decode(), 'b32': base64.b32encode(raw).decode(), 'back': base64.b64decode(base64.b64encode(raw)).decode()}


def use_misc():
    """A few more everyday modules: random, statistics, math, struct, textwrap, uuid, os.urandom."""
    import math
    import os
    import random
    import statistics
    import struct
    import textwrap
    import uuid
    rng = random.Random(42)
    return {
        'random': rng.randint(0, 10 ** 6),
        'mean': statistics.mean([1, 2, 3, 4]),
        'sqrt2': math.sqrt(2),
        'struct': struct.unpack('<I', struct.pack('<I', 0xdeadbeef))[0],
        'wrap': textwrap.wrap('the quick brown fox jumps', 10),
        'uuid_version': uuid.uuid4().version,
        'urandom': len(os.urandom(16)),
    }


def import_allowed(value):
    import skein_allowed
    return skein_allowed.digest(value)


def import_forbidden():
    import skein_forbidden
    return skein_forbidden.secret()


def read_package_file(path):
    """Reads a package's source file directly (no import system): shows what Landlock grants."""
    with open(path) as f:
        return len(f.read())


def load_package_directly(name, directory):
    """Imports a package from its directory by path (importlib.util.spec_from_file_location),
    without the import system listing the package directory's parent."""
    import importlib.util
    import os
    import sys
    spec = importlib.util.spec_from_file_location(name, os.path.join(directory, name, '__init__.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop(name, None)
    return sorted(k for k in vars(module) if not k.startswith('_'))


def allowed_digest_by_path(value, directory):
    """skein_allowed.digest(), with the package loaded by path (see load_package_directly)."""
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location('skein_allowed', os.path.join(directory, 'skein_allowed', '__init__.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.digest(value)
