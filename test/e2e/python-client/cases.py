"""What test/e2e/python-client.test.ts runs with /usr/bin/python3 and PYTHONPATH=clients/python:
``cases.py CASE '{"client": {...Client kwargs}, ...}'``. Each case prints one JSON document
(values, or errors as class, code, message and details) for the test to assert on."""

import asyncio
import json
import socket
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List

import skein_client as sk


def outcome(fn: Callable[[], Any]) -> Dict[str, Any]:
    try:
        return {"value": fn()}
    except sk.SkeinError as err:
        return failure(err)


async def aoutcome(coro: Awaitable[Any]) -> Dict[str, Any]:
    try:
        return {"value": await coro}
    except sk.SkeinError as err:
        return failure(err)


def failure(err: sk.SkeinError) -> Dict[str, Any]:
    out = {"class": type(err).__name__, "bases": [c.__name__ for c in type(err).__mro__], "code": err.code, "message": err.message, "details": err.details}
    for attr in ("reason", "plugin", "exception_type", "exception_message", "retry_after", "routine", "request_id", "peer", "status"):
        if hasattr(err, attr):
            out[attr] = getattr(err, attr)
    return out


def sync_basics(p: Dict[str, Any]) -> Dict[str, Any]:
    with sk.Client(**p["client"]) as client:
        return {
            "add": client.dispatch("add", 2, 3),
            "echo": client.dispatch("echo", "hi"),
            # A routine argument named like the client's own parameters travels as a kwarg.
            "kwargs": client.dispatch("echo", 1, routine="r", timeout_ms=5, args=[7]),
            "json": client.call("echo", ["via json"], encoding="json"),
            "call": client.call("add", args=[1, 2, 3], timeout_ms=5000, request_id="py-sync-1"),
            "routines": sorted(r["name"] for r in client.routines()),
            "peers": client.peers(),
            "raised": outcome(lambda: client.call("fail", ["boom"], request_id="py-raised-1")),
            "deadline": outcome(lambda: client.call("sleep", [5], timeout_ms=300)),
            "unknown": outcome(lambda: client.dispatch("no_such_routine")),
            "bad_timeout": outcome(lambda: client.call("add", [1], timeout_ms=1.5)),  # type: ignore[arg-type]
            "bad_request_id": outcome(lambda: client.call("add", [1], request_id="has space")),
            "unencodable": outcome(lambda: client.dispatch("echo", object())),
            # CBOR byte strings are bytes both ways (worker protocol v2).
            "bytes": (lambda v: {"type": type(v).__name__, "hex": v.hex()})(client.dispatch("echo", b"raw\x00\xff")),
            "after_deadline": client.dispatch("add", 40, 2),
        }


def async_basics(p: Dict[str, Any]) -> Dict[str, Any]:
    async def main() -> Dict[str, Any]:
        async with sk.AsyncClient(**p["client"]) as client:
            sums = await asyncio.gather(*(client.dispatch("add", i, 1) for i in range(20)))
            return {
                "sums": sums,
                "echo": await client.dispatch("echo", "hi", x=1),
                "routines": sorted(r["name"] for r in await client.routines()),
                "raised": await aoutcome(client.dispatch("fail", "async boom")),
                "deadline": await aoutcome(client.call("sleep", [5], timeout_ms=300)),
                "unknown": await aoutcome(client.dispatch("no_such_routine")),
            }

    return asyncio.run(main())


def cancel(p: Dict[str, Any]) -> Dict[str, Any]:
    """An asyncio task cancelled mid-call (wait_for), then more calls on the same client."""

    async def main() -> Dict[str, Any]:
        async with sk.AsyncClient(**p["client"]) as client:
            try:
                await asyncio.wait_for(client.call("sleep", [5], request_id="py-cancelled-1"), 0.5)
                cancelled = False
            except asyncio.TimeoutError:
                cancelled = True
            return {"cancelled": cancelled, "after": await client.dispatch("add", 1, 2)}

    return asyncio.run(main())


def closed(p: Dict[str, Any]) -> Dict[str, Any]:
    client = sk.Client(**p["client"])
    client.close()
    client.close()
    return outcome(lambda: client.dispatch("add", 1))


def many(p: Dict[str, Any]) -> Dict[str, Any]:
    """``n`` calls one after the other, then ``n`` at once on an AsyncClient: two clients, two connections."""
    n = p["n"]
    with sk.Client(**p["client"]) as client:
        sequential = [client.dispatch("add", i, 1) for i in range(n)]

    async def burst() -> Any:
        async with sk.AsyncClient(**p["client"]) as client:
            return await asyncio.gather(*(client.dispatch("add", i, 1) for i in range(n)))

    return {"sequential": sequential, "concurrent": asyncio.run(burst())}


def dispatch(p: Dict[str, Any]) -> Dict[str, Any]:
    """One call: ``routine``, ``args``, ``timeout_ms``; the client as built from ``client`` (often empty: SKEIN_* and profiles)."""

    def run() -> Any:
        with sk.Client(**p.get("client", {})) as client:
            return {"result": client.call(p["routine"], p.get("args", []), timeout_ms=p.get("timeout_ms")), "peer": client.target.peer}

    return outcome(run)


def mint(p: Dict[str, Any]) -> str:
    """A JWT from PyJWT (Debian's python3-jwt), the independent implementation."""
    import jwt

    claims = {"iss": "https://issuer.test", "aud": "skein", "exp": int(time.time()) + 300, **p["claims"]}
    token: str = jwt.encode(claims, p["signing_key"], algorithm="ES256")
    return token


def jwt_call(p: Dict[str, Any]) -> Dict[str, Any]:
    """Dispatches with a freshly minted JWT as token=."""
    return dispatch({**p, "client": {**p.get("client", {}), "token": mint(p)}})


def idle(p: Dict[str, Any]) -> Dict[str, Any]:
    """A call, a pause longer than the agent's idle timeout (it closes the connection), another call."""
    options = {**p["client"], "token": mint(p)}
    with sk.Client(**options) as client:
        first = client.dispatch("add", 1, 1)
        time.sleep(p["pause"])
        sync = [first, client.dispatch("add", 2, 2)]

    async def main() -> Any:
        async with sk.AsyncClient(**options) as client:
            first = await client.dispatch("add", 1, 1)
            await asyncio.sleep(p["pause"])
            return [first, *await asyncio.gather(*(client.dispatch("add", i, i) for i in range(2, 5)))]

    return {"sync": sync, "async": asyncio.run(main()), "plaintext": client.target.plaintext}


def silent(p: Dict[str, Any]) -> Dict[str, Any]:
    """A loopback server that accepts connections and never answers: the client's own waits end the calls."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held = []

    def accept() -> None:
        for _ in range(4):  # bounded: the cases below open at most this many connections
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        with sk.Client(f"http://127.0.0.1:{port}", plaintext=True, timeout=0.5) as h2c:
            started = time.monotonic()
            deadline = outcome(lambda: h2c.call("add", [1], timeout_ms=100))
            deadline["waited"] = time.monotonic() - started
            listing = outcome(h2c.routines)
        with sk.Client(f"127.0.0.1:{port}", ca=p["ca"], timeout=0.5) as tls:
            handshake = outcome(lambda: tls.dispatch("add", 1))
        return {"deadline": deadline, "routines": listing, "handshake": handshake}
    finally:
        server.close()
        for conn in held:
            conn.close()


def overloaded(p: Dict[str, Any]) -> Dict[str, Any]:
    """A one-worker agent with no queue: a second call while the first sleeps is refused at once."""

    async def main() -> Dict[str, Any]:
        async with sk.AsyncClient(**p["client"]) as client:
            busy = asyncio.ensure_future(client.dispatch("sleep", 1))
            await asyncio.sleep(0.4)
            refused = await aoutcome(client.dispatch("add", 1))
            return {"refused": refused, "busy": await busy}

    return asyncio.run(main())


def error_table(_: Dict[str, Any]) -> Dict[str, Any]:
    return {code: {"class": cls.__name__, "status": cls.HTTP_STATUS, "bases": [c.__name__ for c in cls.__mro__]} for code, cls in sk.ERRORS.items()}


def target(p: Dict[str, Any]) -> Dict[str, Any]:
    """The resolved target, or the UsageError that names the bad setting."""

    def run() -> Any:
        t = sk.resolve_target(**p.get("args", {}))
        return {
            "peer": t.peer,
            "plaintext": t.plaintext,
            "token": t.token,
            **{f: None if getattr(t, f) is None else {"value": getattr(t, f).value, "source": getattr(t, f).source} for f in ("cert", "key", "ca")},
        }

    return outcome(run)


def stream_basics(p: Dict[str, Any]) -> Dict[str, Any]:
    """Client.stream: items with the time each arrived, an error frame after items, leaving early."""
    with sk.Client(**p["client"]) as client:
        started = time.monotonic()
        timed = [(item, time.monotonic() - started) for item in client.stream("slow", [4, 0.3], encoding=p.get("encoding"))]
        raised: List[Any] = []

        def after_items() -> None:
            for item in client.stream("raises_after", [2]):
                raised.append(item)

        broke = []
        for item in client.stream("endless", [100, "py-break"]):
            broke.append(len(item))
            if len(broke) == 3:
                break
        return {
            "items": [i for i, _ in timed],
            "spread": timed[-1][1] - timed[0][1],
            "raised": {"items": raised, **outcome(after_items)},
            "broke": broke,
            "after": client.dispatch("countdown", 2),
            "unknown": outcome(lambda: list(client.stream("nope"))),
            "bad_priority": outcome(lambda: client.stream("countdown", [1], priority="urgent")),
        }


def async_stream(p: Dict[str, Any]) -> Dict[str, Any]:
    """AsyncClient.stream: items, and an aclosing block left early."""
    import contextlib

    async def main() -> Dict[str, Any]:
        async with sk.AsyncClient(**p["client"]) as client:
            items = [i async for i in client.stream("countdown", [3], encoding="json")]
            got = []
            async with contextlib.aclosing(client.stream("endless", [100, "py-abreak"])) as stream:
                async for item in stream:
                    got.append(len(item))
                    if len(got) == 2:
                        break
            return {"items": items, "got": got, "after": await client.dispatch("add", 1, 2)}

    return asyncio.run(main())


def priority(p: Dict[str, Any]) -> Dict[str, Any]:
    with sk.Client(**p["client"]) as client:
        return {
            "value": client.call("add", [1, 2], priority="low", request_id="py-prio-1"),
            "bad": outcome(lambda: client.call("add", [1], priority="urgent")),
            "json_bytes": outcome(lambda: client.call("echo", [{"blob": b"x"}], encoding="json", request_id="py-json-bytes")),
        }


def bytes_roundtrip(p: Dict[str, Any]) -> Dict[str, Any]:
    """bytes both ways in CBOR (a routine returning what it got); the JSON form of a bytes result."""
    blob = bytes(range(256)) * (p["size"] // 256)
    with sk.Client(**p["client"]) as client:
        back = client.dispatch("echo", blob)
        made = client.dispatch("blob", 300)
        return {
            "same": back == blob,
            "type": type(back).__name__,
            "len": len(back),
            "made": made == bytes(range(256)) + bytes(range(44)),
            "json": client.call("utf8", ["hé"], encoding="json"),
        }


def far_over_limit(p: Dict[str, Any]) -> Dict[str, Any]:
    """A body far past the agent's limit on a new connection: the agent answers 413 before the
    body ended, httpx cannot read it while it still sends, and the agent ends the quiet
    connection with GOAWAY — reported as a transport failure, not a refused certificate."""
    with sk.Client(**p["client"]) as client:
        started = time.monotonic()
        failed = outcome(lambda: client.dispatch("blob", b"x" * p["size"]))
        seconds = time.monotonic() - started
    with sk.Client(**p["client"]) as again:
        return {"failed": failed, "seconds": seconds, "next": list(again.dispatch("blob", 3))}


def async_calls(p: Dict[str, Any]) -> Dict[str, Any]:
    """submit → wait; submit → cancel; get with wait_ms; calls(); an unknown id."""
    with sk.Client(**p["client"]) as client:
        submitted = client.submit("add", [2, 3], priority="high")
        done = client.wait(submitted["id"], 10_000)
        slow = client.submit("sleep", [5])
        cancelled = client.cancel(slow["id"])
        listed = client.calls(limit=10)
        return {
            "submitted": submitted,
            "done": done,
            "cancelled": cancelled,
            "got": client.get(submitted["id"], wait_ms=10),
            "listed": [c["id"] for c in listed],
            "cancelled_ids": [c["id"] for c in client.calls(status="cancelled")],
            "unknown": outcome(lambda: client.get("AAAAAAAAAAAAAAAAAAAAAAAA")),
            "bad_id": outcome(lambda: client.get("../etc")),
            "timeout": outcome(lambda: client.wait(client.submit("sleep", [3])["id"], 300, slice_ms=100)),
        }


CASES: Dict[str, Callable[[Dict[str, Any]], Any]] = {
    f.__name__: f
    for f in (sync_basics, async_basics, cancel, closed, many, dispatch, jwt_call, idle, silent, overloaded, error_table, target, stream_basics, async_stream, priority, bytes_roundtrip, far_over_limit, async_calls)
}

if __name__ == "__main__":
    print(json.dumps(CASES[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})))
