"""A tiny third-party package on sandbox.allowedPackages (test/escape/compat.test.ts)."""
import hashlib
import json
import sys
from decimal import Decimal

__version__ = '1.0'


def digest(value):
    """JSON-canonical SHA-256 of `value` plus a Decimal sum: json (_json), hashlib (_hashlib or
    _sha256) and decimal (_decimal) are all C-accelerated stdlib modules."""
    text = json.dumps(value, sort_keys=True, separators=(',', ':'))
    total = sum((Decimal(str(v)) for v in value.values()), Decimal('0')) if isinstance(value, dict) else None
    return {
        'sha256': hashlib.sha256(text.encode()).hexdigest(),
        'total': str(total),
        'json_c': json.encoder.c_make_encoder is not None,
        'decimal_c': '_decimal' in sys.modules,
    }
