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
from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Type

import httpx

from . import _wire
from .errors import TransportError
from .target import StrPath, Target, resolve_target


class _Common:
    """Settings and request building shared by both clients; the I/O lives in each subclass.

    Arguments left out come from ``SKEIN_*`` variables or a client profile, as for the ``skein``
    CLI (:func:`~skein_client.target.resolve_target`). ``cert``, ``key`` and ``ca`` are PEM file
    paths (without ``ca``, the system's CAs verify the agent); ``token`` (or ``token_file``) is sent
    as ``authorization: Bearer <token>``, or verbatim when it contains a space. ``plaintext=True``
    speaks h2c to an agent with ``tls.plaintext``. ``encoding`` is the body encoding, ``"cbor"``
    or ``"json"``. ``timeout`` is seconds to connect and to wait for ``routines()``/``peers()``;
    a call waits for its deadline (``timeout_ms``) plus 2 s, or, without one, until the agent
    answers (which ends the call at its default deadline).
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
    ) -> None:
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
    ) -> _wire.Call:
        media_type = self._media_type if encoding is None else _wire.encoding_of(encoding)
        return _wire.dispatch_call(routine, args, kwargs or {}, media_type, timeout_ms, request_id, self._headers)

    def _get(self, path: str) -> _wire.Call:
        return _wire.Call("GET", path, dict(self._headers), wait=self._timeout)

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
    ) -> Any:
        """Runs a routine with a deadline (``timeout_ms``, capped by the agent's ``limits.maxTimeoutMs``),
        a request id of the caller's choosing (found again in the agent's log and audit lines), or
        another body encoding for this call."""
        call = self._dispatch_call(routine, args, kwargs, timeout_ms, request_id, encoding)
        return _wire.field_of(self._send(call), "result")

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

    def _send(self, call: _wire.Call) -> Any:
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
            return _wire.read_answer(response, call)
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
    ) -> Any:
        """Like :meth:`Client.call`."""
        call = self._dispatch_call(routine, args, kwargs, timeout_ms, request_id, encoding)
        return _wire.field_of(await self._send(call), "result")

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

    async def _send(self, call: _wire.Call) -> Any:
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
            return _wire.read_answer(response, call)
        raise AssertionError("unreachable")
