"""The skein clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio), alike call for call.

Each holds one HTTP/2 connection to its agent (every call is a stream on it; it reconnects
when the agent closes it), authenticates with a client certificate and/or a token, and
reports every failure as a typed :class:`~skein_client.errors.SkeinError`::

    with Client("127.0.0.1:7443", cert="client.crt", key="client.key", ca="ca.crt") as client:
        client.dispatch("add", 2, 3)                                 # 5
        client.call("sleep", args=[5], timeout_ms=100)               # raises DeadlineExceeded
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type

import httpx

from . import _wire
from ._frames import CBOR_SEQ, NDJSON, FrameReader, Frames
from .errors import BadResponse, ClientTimeout, TransportError, UsageError
from .target import StrPath, Target, resolve_target

#: Largest stream frame (one item) and error body a stream holds; as the TypeScript client.
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Longest single long poll of wait(); the agent caps each at its limits.maxTimeoutMs.
WAIT_SLICE_MS = 30_000


class _Common:
    """Settings and request building shared by both clients; the I/O lives in each subclass.

    Arguments left out come from ``SKEIN_*`` variables or a client profile, as for the ``skein``
    CLI (:func:`~skein_client.target.resolve_target`). ``cert``, ``key`` and ``ca`` are PEM file
    paths (without ``ca``, the system's CAs verify the agent); ``token`` (or ``token_file``) is sent
    as ``authorization: Bearer <token>``, or verbatim when it contains a space. ``plaintext=True``
    speaks h2c to an agent with ``tls.plaintext``. ``encoding`` is the body encoding, ``"cbor"``
    or ``"json"``. ``timeout`` is seconds to connect and to wait for ``routines()``/``peers()``;
    a call waits for its deadline (``timeout_ms``) plus 2 s, or, without one, until the agent
    answers (which ends the call at its default deadline). ``max_frame_bytes`` bounds one item of
    a stream (past it: ``BadResponse``, and the stream is reset).

    Every call shape of docs/calls.md: ``call``/``dispatch`` (sync), ``stream`` (the items a
    generator routine yields, as they come), and ``submit`` then ``get``/``wait``/``cancel``/``calls``
    (async). ``bytes`` travel as CBOR byte strings both ways (JSON cannot carry them).
    """

    target: Target
    """Where calls go and with what credentials, as resolved."""

    def __init__(
        self,
        peer: Optional[str] = None,
        cert: Optional[StrPath] = None,
        key: Optional[StrPath] = None,
        ca: Optional[StrPath] = None,
        token: Optional[str] = None,
        token_file: Optional[StrPath] = None,
        profile: Optional[str] = None,
        *,
        plaintext: Optional[bool] = None,
        encoding: str = "cbor",
        timeout: Optional[float] = 10.0,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self._max_frame_bytes = max_frame_bytes
        self.target = resolve_target(peer, cert, key, ca, token, token_file, profile, plaintext)
        self._media_type = _wire.encoding_of(encoding)
        self._timeout = timeout
        self._headers = _wire.base_headers(self.target)
        self._closed = False
        # HTTP/2 only (h2c with prior knowledge in plaintext); one connection, kept without an
        # idle expiry (the agent closes idle ones); no proxy or CA variables from the
        # environment: the target alone says where calls go and whom to trust.
        ctx = _wire.ssl_context(self.target)
        self._http_options: Dict[str, Any] = {
            "base_url": self.target.origin,
            "http1": False,
            "http2": True,
            "verify": ctx if ctx is not None else False,
            "trust_env": False,
            "limits": httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=None),
            "timeout": httpx.Timeout(timeout),
        }
        self._open()

    def _open(self) -> None:
        raise NotImplementedError

    def _dispatch_call(
        self,
        routine: str,
        args: Sequence[Any],
        kwargs: Optional[Mapping[str, Any]],
        timeout_ms: Optional[int],
        request_id: Optional[str],
        encoding: Optional[str],
        priority: Optional[str] = None,
        stream: bool = False,
        path: str = "/v1/dispatch/",
    ) -> _wire.Call:
        media_type = self._media_type if encoding is None else _wire.encoding_of(encoding)
        accept = (CBOR_SEQ if media_type == _wire.CBOR else NDJSON) if stream else None
        return _wire.dispatch_call(routine, args, kwargs or {}, media_type, timeout_ms, request_id, self._headers, priority, accept, path)

    def _get(self, path: str, method: str = "GET", wait_ms: Optional[int] = None) -> _wire.Call:
        # A long poll answers after up to wait_ms: wait that long plus the usual timeout.
        wait = None if self._timeout is None else self._timeout + (wait_ms or 0) / 1000
        return _wire.Call(method, path, dict(self._headers), wait=wait)

    def _call_path(self, call_id: str, wait_ms: Optional[int] = None) -> str:
        return f"/v1/calls/{_wire.call_id(call_id)}{_wire.wait_ms_of(wait_ms)}"

    def _stream_start(self, response: httpx.Response, call: _wire.Call) -> Tuple[FrameReader, Frames]:
        """The reader of a 200 stream answer (its body unread); BadResponse for an answer that is not a stream."""
        accept = call.headers["accept"]
        media_type = (response.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if media_type != accept:
            raise BadResponse("SKEIN_ERR_BAD_RESPONSE", f"asked for a stream ({accept}), the agent answered {media_type or 'without a content-type'}: does it support streaming calls?", {"status": 200})
        request_id = response.headers.get("x-request-id") or call.headers.get("x-request-id") or ""
        return FrameReader(accept, self._max_frame_bytes), Frames(request_id)

    def _wait_turns(self, call_id: str, timeout_ms: int, slice_ms: int) -> Iterator[int]:
        """The waitMs of each long poll of wait(): slices until the timeout (bounded)."""
        _wire.call_id(call_id)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 0:
            raise UsageError("SKEIN_ERR_USAGE", f"timeout_ms must be a non-negative integer of milliseconds, got {timeout_ms!r}")
        until = time.monotonic() + timeout_ms / 1000
        while True:
            left = int((until - time.monotonic()) * 1000)
            yield max(0, min(slice_ms, left))
            if until - time.monotonic() <= 0:
                return

    @staticmethod
    def _still(call_id: str, record: Dict[str, Any], timeout_ms: int) -> ClientTimeout:
        return ClientTimeout("SKEIN_ERR_CLIENT_TIMEOUT", f"call {call_id} is still {record.get('status')} after {timeout_ms} ms", {"id": call_id, "status": record.get("status")})

    def _request_options(self, call: _wire.Call) -> Dict[str, Any]:
        if self._closed:
            raise TransportError("SKEIN_ERR_TRANSPORT", "the client is closed", {"sent": False})
        return {"content": call.content, "headers": call.headers, "timeout": httpx.Timeout(self._timeout, read=call.wait)}

    def _failure(self, err: httpx.HTTPError, call: _wire.Call) -> Exception:
        return _wire.translate(err, call, self.target, self._timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(peer={self.target.peer!r})"


class Client(_Common):
    """Blocking skein client; see :class:`_Common` for the arguments.

    >>> with Client("127.0.0.1:7443", cert="c.crt", key="c.key", ca="ca.crt") as client:
    ...     client.dispatch("add", 2, 3)
    """

    _http: httpx.Client

    def _open(self) -> None:
        self._http = httpx.Client(**self._http_options)
        self._renewing = threading.Lock()

    def _renew(self, stale: httpx.Client) -> None:
        """Replaces a connection pool whose connection the agent closed (see _wire.unprocessed):
        httpx 0.23 would keep offering the dead HTTP/2 connection."""
        with self._renewing:
            if self._http is stale and not self._closed:
                self._http = httpx.Client(**self._http_options)
                stale.close()

    def dispatch(self, routine: str, /, *args: Any, **kwargs: Any) -> Any:
        """Runs ``routine(*args, **kwargs)`` on the agent and returns its result."""
        return self.call(routine, args, kwargs)

    def call(
        self,
        routine: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        request_id: Optional[str] = None,
        encoding: Optional[str] = None,
        priority: Optional[str] = None,
    ) -> Any:
        """Runs a routine with a deadline (``timeout_ms``, capped by the agent's ``limits.maxTimeoutMs``),
        a request id of the caller's choosing (found again in the agent's log and audit lines),
        another body encoding for this call, or a queue ``priority`` (``"high"``, ``"normal"``, ``"low"``)."""
        call = self._dispatch_call(routine, args, kwargs, timeout_ms, request_id, encoding, priority)
        return _wire.field_of(self._send(call), "result")

    def stream(
        self,
        routine: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        request_id: Optional[str] = None,
        encoding: Optional[str] = None,
        priority: Optional[str] = None,
    ) -> Iterator[Any]:
        """The items a generator routine yields, as they are produced (a plain routine yields its
        result once); options as for :meth:`call`. The request goes out at the first ``next()``;
        reading is paced by the loop (HTTP/2 flow control pauses the generator), and leaving the
        loop early resets the stream, so the agent stops the generator (its ``finally`` runs)."""
        return self._stream(self._dispatch_call(routine, args, kwargs, timeout_ms, request_id, encoding, priority, stream=True))

    def submit(
        self,
        routine: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        request_id: Optional[str] = None,
        encoding: Optional[str] = None,
        priority: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Submits an async call (stored by the agent before it answers): ``{"id", "status"}``."""
        call = self._dispatch_call(routine, args, kwargs, timeout_ms, request_id, encoding, priority, path="/v1/calls/")
        return _wire.record_of(self._send(call, ok=202))

    def get(self, call_id: str, *, wait_ms: Optional[int] = None) -> Dict[str, Any]:
        """An async call as the agent keeps it (``status``, ``result`` or ``error``…); with ``wait_ms``,
        once it finished or ``wait_ms`` passed. (``call`` is the sync call, so this is ``get``.)"""
        return _wire.record_of(self._send(self._get(self._call_path(call_id, wait_ms), wait_ms=wait_ms)))

    def wait(self, call_id: str, timeout_ms: int, *, slice_ms: int = WAIT_SLICE_MS) -> Dict[str, Any]:
        """Long-polls until the call has a final status and returns it (a failed call is returned, not
        raised); ``ClientTimeout`` when it has none after ``timeout_ms``."""
        record: Dict[str, Any] = {}
        for wait_ms in self._wait_turns(call_id, timeout_ms, slice_ms):
            record = self.get(call_id, wait_ms=wait_ms)
            if record["status"] in _wire.FINAL_STATUSES:
                return record
        raise self._still(call_id, record, timeout_ms)

    def cancel(self, call_id: str) -> Dict[str, Any]:
        """Cancels an async call: the call as it ended (``cancelled``, or its final status if it had ended)."""
        return _wire.record_of(self._send(self._get(self._call_path(call_id), method="DELETE")))

    def calls(self, status: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The caller's own async calls, newest first."""
        calls: List[Dict[str, Any]] = _wire.field_of(self._send(self._get(f"/v1/calls{_wire.calls_query(status, limit)}")), "calls")
        return calls

    def _stream(self, call: _wire.Call) -> Iterator[Any]:
        options = self._request_options(call)
        http = self._http
        frames: Optional[Frames] = None
        try:
            with http.stream(call.method, call.path, extensions={"trace": call.trace}, **options) as response:
                if response.status_code != 200:
                    response.read()
                    _wire.read_answer(response, call)
                reader, frames = self._stream_start(response, call)
                try:
                    for chunk in response.iter_raw():
                        for frame in reader.push(chunk):
                            yield from frames.take(frame)
                    if not frames.finished:
                        raise frames.cut(reader.pending_bytes)
                finally:
                    if not frames.finished and not _wire.reset_stream(http, call.stream_id):
                        # No way to reset this one stream: drop the connection, which stops it too.
                        self._renew(http)
        except httpx.HTTPError as err:
            raise self._failure(err, call) from err

    def routines(self) -> List[Dict[str, Any]]:
        """The agent's routines: ``name``, ``function``, ``sha256`` and, when set, ``timeoutMs``."""
        routines: List[Dict[str, Any]] = _wire.field_of(self._send(self._get("/v1/routines")), "routines")
        return routines

    def peers(self) -> Dict[str, Any]:
        """The agent's verified peers (``GET /v1/peers``): ``enabled``, ``peers``…"""
        peers: Dict[str, Any] = self._send(self._get("/v1/peers"))
        return peers

    def close(self) -> None:
        """Closes the connection. Idempotent; calls after it raise TransportError."""
        with self._renewing:
            self._closed = True
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def _send(self, call: _wire.Call, ok: int = 200) -> Any:
        options = self._request_options(call)
        for retry in (True, False):
            http = self._http
            try:
                response = http.request(call.method, call.path, extensions={"trace": call.trace}, **options)
            except httpx.HTTPError as err:
                if retry and _wire.unprocessed(err, call):
                    # The agent had closed the connection (GOAWAY) before this call's stream: it
                    # never ran, so it goes again on a new connection.
                    self._renew(http)
                    call.restart()
                    continue
                raise self._failure(err, call) from err
            return _wire.read_answer(response, call, ok)
        raise AssertionError("unreachable")


class AsyncClient(_Common):
    """asyncio skein client: :class:`Client`'s arguments and calls, awaited. Concurrent calls share
    one HTTP/2 connection, each on its own stream.

    >>> async with AsyncClient("127.0.0.1:7443", cert="c.crt", key="c.key", ca="ca.crt") as client:
    ...     await asyncio.gather(*(client.dispatch("add", i, 1) for i in range(10)))
    """

    _http: httpx.AsyncClient

    def _open(self) -> None:
        self._http = httpx.AsyncClient(**self._http_options)

    async def _renew(self, stale: httpx.AsyncClient) -> None:
        """Like :meth:`Client._renew`; the check and swap run with no await between them."""
        if self._http is stale and not self._closed:
            self._http = httpx.AsyncClient(**self._http_options)
            await stale.aclose()

    async def dispatch(self, routine: str, /, *args: Any, **kwargs: Any) -> Any:
        """Runs ``routine(*args, **kwargs)`` on the agent and returns its result."""
        return await self.call(routine, args, kwargs)

    async def call(
        self,
        routine: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        request_id: Optional[str] = None,
        encoding: Optional[str] = None,
        priority: Optional[str] = None,
    ) -> Any:
        """Like :meth:`Client.call`."""
        call = self._dispatch_call(routine, args, kwargs, timeout_ms, request_id, encoding, priority)
        return _wire.field_of(await self._send(call), "result")

    def stream(
        self,
        routine: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        request_id: Optional[str] = None,
        encoding: Optional[str] = None,
        priority: Optional[str] = None,
    ) -> AsyncIterator[Any]:
        """Like :meth:`Client.stream`, an async generator. ``break`` does not close an async generator
        at once: leave it with ``async with contextlib.aclosing(client.stream(...)) as items:`` so the
        stream is reset (and the generator stopped on the agent) when the block ends."""
        return self._stream(self._dispatch_call(routine, args, kwargs, timeout_ms, request_id, encoding, priority, stream=True))

    async def submit(
        self,
        routine: str,
        args: Sequence[Any] = (),
        kwargs: Optional[Mapping[str, Any]] = None,
        *,
        timeout_ms: Optional[int] = None,
        request_id: Optional[str] = None,
        encoding: Optional[str] = None,
        priority: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Like :meth:`Client.submit`."""
        call = self._dispatch_call(routine, args, kwargs, timeout_ms, request_id, encoding, priority, path="/v1/calls/")
        return _wire.record_of(await self._send(call, ok=202))

    async def get(self, call_id: str, *, wait_ms: Optional[int] = None) -> Dict[str, Any]:
        """Like :meth:`Client.get`."""
        return _wire.record_of(await self._send(self._get(self._call_path(call_id, wait_ms), wait_ms=wait_ms)))

    async def wait(self, call_id: str, timeout_ms: int, *, slice_ms: int = WAIT_SLICE_MS) -> Dict[str, Any]:
        """Like :meth:`Client.wait`."""
        record: Dict[str, Any] = {}
        for wait_ms in self._wait_turns(call_id, timeout_ms, slice_ms):
            record = await self.get(call_id, wait_ms=wait_ms)
            if record["status"] in _wire.FINAL_STATUSES:
                return record
        raise self._still(call_id, record, timeout_ms)

    async def cancel(self, call_id: str) -> Dict[str, Any]:
        """Like :meth:`Client.cancel`."""
        return _wire.record_of(await self._send(self._get(self._call_path(call_id), method="DELETE")))

    async def calls(self, status: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Like :meth:`Client.calls`."""
        calls: List[Dict[str, Any]] = _wire.field_of(await self._send(self._get(f"/v1/calls{_wire.calls_query(status, limit)}")), "calls")
        return calls

    async def _stream(self, call: _wire.Call) -> AsyncIterator[Any]:
        options = self._request_options(call)
        http = self._http
        frames: Optional[Frames] = None
        try:
            async with http.stream(call.method, call.path, extensions={"trace": call.atrace}, **options) as response:
                if response.status_code != 200:
                    await response.aread()
                    _wire.read_answer(response, call)
                reader, frames = self._stream_start(response, call)
                try:
                    async for chunk in response.aiter_raw():
                        for frame in reader.push(chunk):
                            for item in frames.take(frame):
                                yield item
                    if not frames.finished:
                        raise frames.cut(reader.pending_bytes)
                finally:
                    if not frames.finished and not await _wire.areset_stream(http, call.stream_id):
                        await self._renew(http)
        except httpx.HTTPError as err:
            raise self._failure(err, call) from err

    async def routines(self) -> List[Dict[str, Any]]:
        """Like :meth:`Client.routines`."""
        routines: List[Dict[str, Any]] = _wire.field_of(await self._send(self._get("/v1/routines")), "routines")
        return routines

    async def peers(self) -> Dict[str, Any]:
        """Like :meth:`Client.peers`."""
        peers: Dict[str, Any] = await self._send(self._get("/v1/peers"))
        return peers

    async def close(self) -> None:
        """Closes the connection. Idempotent; calls after it raise TransportError."""
        self._closed = True
        await self._http.aclose()

    aclose = close  # for contextlib.aclosing

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.close()

    async def _send(self, call: _wire.Call, ok: int = 200) -> Any:
        options = self._request_options(call)
        for retry in (True, False):
            http = self._http
            try:
                response = await http.request(call.method, call.path, extensions={"trace": call.atrace}, **options)
            except httpx.HTTPError as err:
                if retry and _wire.unprocessed(err, call):
                    # The agent had closed the connection (GOAWAY) before this call's stream: it
                    # never ran, so it goes again on a new connection.
                    await self._renew(http)
                    call.restart()
                    continue
                raise self._failure(err, call) from err
            return _wire.read_answer(response, call, ok)
        raise AssertionError("unreachable")
