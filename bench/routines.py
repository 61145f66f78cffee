# Routines of the calls bench (bench/calls.ts).


def blob(data):
    """Returns its bytes argument: the bytes round trip."""
    return data


def items(n, size):
    """Yields n byte strings of size bytes: stream items/s and MB/s."""
    chunk = b'x' * size
    for _ in range(n):
        yield chunk
