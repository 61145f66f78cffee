"""Example routines served by the default agent.config.json.

A routine is a plain function; its positional and keyword arguments come from the request
body ({"args": [...], "kwargs": {...}}). It returns strings, numbers, booleans, None, lists,
dicts and bytes (docs/calls.md#bytes); a generator streams its items (docs/calls.md).
"""
import time


def echo(*args, **kwargs):
    """Returns its arguments: one positional argument as itself, otherwise a list/dict."""
    if kwargs:
        return {"args": list(args), "kwargs": kwargs}
    return args[0] if len(args) == 1 else list(args)


def add(*numbers):
    """Adds numbers: add(2, 3) -> 5."""
    return sum(numbers)


def fail(message="this routine always fails"):
    """Raises ValueError, to show how a routine error reaches the caller (HTTP 422)."""
    raise ValueError(message)


def sleep(seconds=1.0):
    """Sleeps, to try deadlines: dispatch with --timeout lower than the sleep."""
    time.sleep(float(seconds))
    return seconds


def reverse_bytes(data):
    """Reverses a byte string: CBOR byte strings arrive as bytes, and bytes go back as bytes."""
    return bytes(data)[::-1]


def countdown(n=3):
    """A generator: yields n, n-1, ..., 1 (streamed, or collected into a list)."""
    for i in range(int(n), 0, -1):
        yield i
