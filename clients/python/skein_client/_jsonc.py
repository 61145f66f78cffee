"""JSONC, the dialect of skein's profile file (as the CLI reads it): JSON with ``//`` and ``/* */``
comments and trailing commas. Comments and trailing commas become spaces, so the ``json``
module's line and column still point into the original text."""

from __future__ import annotations

import json
import re
from typing import Any

_GAP = r"(?:\s|//[^\n]*|/\*[\s\S]*?\*/)*"
# One token at a time: a string (kept whole, so "//" inside it is not a comment), a comment, a
# comma followed only by comments and a closing bracket, or any other character.
_TOKEN = re.compile(
    r'(?P<string>"(?:[^"\\\n]|\\.)*")'
    r"|(?P<drop>//[^\n]*|/\*[\s\S]*?\*/|,(?=" + _GAP + r"[}\]]))"
    r"|(?P<open>/\*)"
    r"|(?P<other>[\s\S])"
)


def loads(text: str) -> Any:
    """Parses JSONC; raises ``ValueError`` naming the line and column of a syntax error."""
    out = []
    for m in _TOKEN.finditer(text):
        if m.group("drop") is not None:
            out.append(re.sub(r"[^\n]", " ", m.group(0)))
        elif m.group("open") is not None:
            raise ValueError(f"line {text.count(chr(10), 0, m.start()) + 1}: unterminated /* comment")
        else:
            out.append(m.group(0))
    try:
        return json.loads("".join(out))
    except json.JSONDecodeError as err:
        raise ValueError(f"line {err.lineno} column {err.colno}: {err.msg}") from None
