"""What the sync and async clients share: the TLS context, request bodies and headers, reading
an answer, and turning httpx's exceptions into skein's (docs/api.md)."""

from __future__ import annotations

import json
import re
import ssl
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

import cbor2
import httpx

from .errors import BadResponse, ClientTimeout, SkeinError, TLSError, TransportError, UsageError, error_for
from .target import Target, check_token

CBOR = "application/cbor"
JSON = "application/json"
ENCODINGS = {"cbor": CBOR, "json": JSON}
#: Queue priorities, highest first (agent/workers/call.ts PRIORITIES); the agent's default is "normal".
PRIORITIES = ("high", "normal", "low")
#: Statuses of an async call, and those it does not leave (docs/calls.md, "Async").
CALL_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
_CALL_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
#: How long past a call's deadline the client still waits for the agent's answer (as the TypeScript client).
GRACE_SECONDS = 2.0
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# TLS alerts that refuse the client certificate, as OpenSSL words them, and the reason the
# agent would log (docs/api.md, "Certificates refused in the handshake").
_ALERTS: List[Tuple[str, str]] = [
    ("certificate required", "no-certificate"),
    ("unknown ca", "unknown-ca"),
    ("certificate expired", "expired"),
    ("unsupported certificate", "bad-key-usage"),
    ("bad certificate", "bad-certificate"),
    ("certificate unknown", "bad-certificate"),
    ("certificate revoked", "bad-certificate"),
]


def ssl_context(target: Target) -> Optional[ssl.SSLContext]:
    """TLS 1.2+ offering only h2 (the agent refuses HTTP/1.1), the target's CA (else the system's)
    and its client certificate; None for plaintext. Unreadable files are a UsageError naming them."""
    if target.plaintext:
        return None
    try:
        ctx = ssl.create_default_context(cafile=target.ca.value if target.ca else None)
    except (OSError, ssl.SSLError) as err:
        raise _unreadable(err, target.ca.source if target.ca else "the system CA store", target.ca.value if target.ca else "") from None
    ctx.set_alpn_protocols(["h2"])
    if target.cert and target.key:
        try:
            ctx.load_cert_chain(target.cert.value, target.key.value)
        except (OSError, ssl.SSLError) as err:
            raise _unreadable(err, f"{target.cert.source} / {target.key.source}", f"{target.cert.value}, {target.key.value}") from None
    return ctx


def _unreadable(err: Exception, source: str, path: str) -> UsageError:
    why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return UsageError("SKEIN_ERR_USAGE", f"{source}: cannot use {path}: {why}")


def encoding_of(encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise UsageError("SKEIN_ERR_USAGE", f'encoding={encoding!r}: use "cbor" or "json"')
    return ENCODINGS[encoding]


def base_headers(target: Target) -> Dict[str, str]:
    return {"authorization": check_token(target.token)} if target.token is not None else {}


@dataclass
class Call:
    """One request: what to send, and what its trace saw (to tell a refused certificate from a dead link)."""

    method: str
    path: str
    headers: Dict[str, str]
    content: Optional[bytes] = None
    #: Seconds to wait for the answer after sending; None: until the agent answers.
    wait: Optional[float] = None
    #: This call opened a fresh connection and its TLS handshake finished.
    handshake: bool = False
    #: Response headers arrived.
    answered: bool = False
    #: The HTTP/2 stream the request went out on.
    stream_id: Optional[int] = None

    def restart(self) -> None:
        """Forgets what the trace saw, before the call is sent again."""
        self.handshake = self.answered = False
        self.stream_id = None

    def trace(self, name: str, info: Mapping[str, Any]) -> None:
        if name == "connection.start_tls.complete":
            self.handshake = True
        elif name == "http2.send_request_headers.started":
            self.stream_id = info.get("stream_id")
        elif name.endswith("receive_response_headers.complete"):
            self.answered = True

    async def atrace(self, name: str, info: Mapping[str, Any]) -> None:
        self.trace(name, info)


def dispatch_call(
    routine: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    media_type: str,
    timeout_ms: Optional[int],
    request_id: Optional[str],
    headers: Mapping[str, str],
    priority: Optional[str] = None,
    accept: Optional[str] = None,
    path: str = "/v1/dispatch/",
) -> Call:
    """A call of ``routine`` (sync, or with ``accept`` a stream, or with path ``/v1/calls/`` an async submission)."""
    if not isinstance(routine, str) or routine == "":
        raise UsageError("SKEIN_ERR_USAGE", f"routine must be a non-empty string, got {routine!r}")
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise UsageError("SKEIN_ERR_USAGE", f"args must be a list or tuple, got {type(args).__name__}")
    if not isinstance(kwargs, Mapping):
        raise UsageError("SKEIN_ERR_USAGE", f"kwargs must be a mapping, got {type(kwargs).__name__}")
    out = {**headers, "content-type": media_type}
    wait = None
    if timeout_ms is not None:
        # The agent refuses anything but a positive integer; bool is an int in Python.
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1:
            raise UsageError("SKEIN_ERR_USAGE", f"timeout_ms must be a positive integer of milliseconds, got {timeout_ms!r}")
        out["x-skein-timeout-ms"] = str(timeout_ms)
        wait = timeout_ms / 1000 + GRACE_SECONDS
    if request_id is not None:
        # The agent would silently replace an invalid id, and the caller could not find its call.
        if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
            raise UsageError("SKEIN_ERR_USAGE", f"request_id must match [A-Za-z0-9._:-]{{1,128}}, got {request_id!r}")
        out["x-request-id"] = request_id
    if priority is not None:
        if priority not in PRIORITIES:
            raise UsageError("SKEIN_ERR_USAGE", f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        out["x-skein-priority"] = priority
    if accept is not None:
        out["accept"] = accept
    body = encode(media_type, {"args": list(args), "kwargs": dict(kwargs)})
    return Call("POST", f"{path}{quote(routine, safe='')}", out, body, wait)


def call_id(value: str) -> str:
    """Refuses an id that could not name a call (empty, or one that would change the path)."""
    if not isinstance(value, str) or not _CALL_ID.match(value):
        raise UsageError("SKEIN_ERR_USAGE", f'a call id is 1 to 128 letters, digits, ".", "_", "~" or "-", got {value!r}')
    return value


def wait_ms_of(wait_ms: Optional[int]) -> str:
    if wait_ms is None:
        return ""
    if isinstance(wait_ms, bool) or not isinstance(wait_ms, int) or wait_ms < 0:
        raise UsageError("SKEIN_ERR_USAGE", f"wait_ms must be a non-negative integer of milliseconds, got {wait_ms!r}")
    return f"?waitMs={wait_ms}"


def calls_query(status: Optional[str], limit: Optional[int]) -> str:
    params = []
    if status is not None:
        if status not in CALL_STATUSES:
            raise UsageError("SKEIN_ERR_USAGE", f"status must be one of {', '.join(CALL_STATUSES)}, got {status!r}")
        params.append(f"status={status}")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise UsageError("SKEIN_ERR_USAGE", f"limit must be an integer from 1 to 1000, got {limit!r}")
        params.append(f"limit={limit}")
    return "?" + "&".join(params) if params else ""


def record_of(value: Any) -> Dict[str, Any]:
    """An async call's record from a 200/202 answer; BadResponse when it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not isinstance(value.get("status"), str):
        raise BadResponse("SKEIN_ERR_BAD_RESPONSE", "the answer is not an async call (no id and status)")
    return value


def _bytes_path(value: Any, at: str, depth: int) -> Optional[str]:
    """Where the first bytes value is (JSON cannot carry it); bounded by depth."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{at} ({type(value).__name__})"
    if depth > 64:
        return None
    items = enumerate(value) if isinstance(value, (list, tuple)) else value.items() if isinstance(value, dict) else ()
    for key, item in items:
        hit = _bytes_path(item, f"{at}[{key!r}]", depth + 1)
        if hit:
            return hit
    return None


def encode(media_type: str, value: Any) -> bytes:
    if media_type == JSON:
        where = _bytes_path(value.get("args"), "args", 0) or _bytes_path(value.get("kwargs"), "kwargs", 0)
        if where:
            raise UsageError("SKEIN_ERR_USAGE", f'{where} is bytes, which JSON cannot carry: send the call with encoding="cbor" (the default), where it travels as a CBOR byte string')
    try:
        if media_type == CBOR:
            encoded: bytes = cbor2.dumps(value)
            return encoded
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, cbor2.CBOREncodeError) as err:
        raise UsageError("SKEIN_ERR_USAGE", f"arguments cannot be encoded as {media_type}: {err}") from None


def read_answer(response: httpx.Response, call: Call, ok: int = 200) -> Any:
    """The decoded body of a 200 (or ``ok``); else the typed error the agent's body names."""
    status = response.status_code
    request_id = response.headers.get("x-request-id") or call.headers.get("x-request-id") or ""
    media_type = (response.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type not in (CBOR, JSON):
        raise BadResponse("SKEIN_ERR_BAD_RESPONSE", f"HTTP {status} with content-type {media_type or 'none'} is not a skein response", {"status": status})
    try:
        value = (cbor2.loads(response.content) if media_type == CBOR else json.loads(response.content)) if response.content else None
    except (ValueError, cbor2.CBORDecodeError):
        raise BadResponse("SKEIN_ERR_BAD_RESPONSE", f"HTTP {status}: undecodable {media_type} body", {"status": status}) from None
    if status == ok:
        return value
    body = value if isinstance(value, dict) else {}
    code, meta = body.get("code"), body.get("meta")
    if not isinstance(code, str) or not code.startswith("SKEIN_ERR_"):
        raise BadResponse("SKEIN_ERR_BAD_RESPONSE", f"unexpected HTTP {status} response", {"status": status, "requestId": request_id})
    details: Dict[str, Any] = {"status": status, "requestId": body.get("requestId", request_id), **(meta if isinstance(meta, dict) else {})}
    retry_after = response.headers.get("retry-after")
    if retry_after and retry_after.isdigit():
        details["retryAfterSeconds"] = int(retry_after)
    raise error_for(code, str(body.get("message") or code), details)


def field_of(value: Any, name: str) -> Any:
    """``value[name]`` of a 200 answer (``result``, ``routines``); BadResponse when it is missing."""
    if not isinstance(value, dict) or name not in value:
        raise BadResponse("SKEIN_ERR_BAD_RESPONSE", f'HTTP 200 without "{name}"', {"status": 200})
    return value[name]


def translate(err: httpx.HTTPError, call: Call, target: Target, connect_timeout: Optional[float]) -> SkeinError:
    """The skein error for an httpx failure: TLS, transport, or the client's own timeout."""
    tls = _ssl_error(err)
    if isinstance(err, httpx.ConnectTimeout):
        return TransportError("SKEIN_ERR_TRANSPORT", f"no connection to {target.peer} within {connect_timeout} s", {"sent": False})
    if isinstance(err, httpx.TimeoutException):
        wait = call.wait if call.wait is not None else connect_timeout
        deadline = call.headers.get("x-skein-timeout-ms")
        waited = f"{wait:g} s ({deadline} ms deadline + {GRACE_SECONDS:g} s)" if deadline else f"{wait:g} s"
        return ClientTimeout("SKEIN_ERR_CLIENT_TIMEOUT", f"no response from {target.peer} within {waited}")
    if tls is not None:
        text = str(tls).lower()
        reason = next((r for alert, r in _ALERTS if "alert " + alert in text), None)
        if reason is not None:
            return TLSError("SKEIN_ERR_TLS", f"the agent refused the client certificate: {reason} ({tls})", {"reason": reason, "sent": False})
        return TLSError("SKEIN_ERR_TLS", f"TLS with {target.peer} failed: {tls}", {"cause": getattr(tls, "reason", None) or type(tls).__name__, "sent": False})
    goaway = _goaway(err)
    if goaway is not None:
        # The agent spoke HTTP/2 and ended the connection (GOAWAY): not a refused certificate,
        # even on a connection this call opened — e.g. a request it answered before the body
        # ended (413, docs/api.md), whose answer httpx does not read while it still sends.
        code = getattr(goaway, "error_code", None)
        return TransportError(
            "SKEIN_ERR_TRANSPORT",
            f"{target.peer}: the agent closed the connection (GOAWAY {getattr(code, 'name', code)}) before this call was answered",
            {"sent": not unprocessed(err, call), "goaway": True},
        )
    if isinstance(err, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)) and call.handshake and not call.answered and not target.plaintext:
        # An agent checks the client certificate after the TLS 1.3 handshake and then drops the
        # connection without an alert (agent/client/tls-refusal.ts). A connection this call
        # just opened, closed before any answer, is that refusal.
        if target.cert is None:
            return TLSError("SKEIN_ERR_TLS", "the agent refused the connection: it requires a client certificate and none was given (cert=, key= / SKEIN_CERT, SKEIN_KEY)", {"reason": "no-certificate", "sent": False})
        return TLSError(
            "SKEIN_ERR_TLS",
            "the agent refused the client certificate: it closed the connection right after the TLS handshake, without a reason "
            '(expired, or not issued by its CA?): its "TLS handshake refused" log line says why',
            {"reason": "other", "sent": False},
        )
    sent = not isinstance(err, httpx.ConnectError)
    return TransportError("SKEIN_ERR_TRANSPORT", f"{target.peer}: {type(err).__name__}: {err or 'connection closed'}", {"sent": sent})


def unprocessed(err: httpx.HTTPError, call: Call) -> bool:
    """True when the agent had closed the connection (GOAWAY, e.g. after limits.idleTimeoutMs)
    before this call's stream: a stream above GOAWAY's last stream id was never processed and
    may be sent again on a new connection (RFC 9113 section 6.8)."""
    if call.stream_id is None or call.answered:
        return False
    goaway = _goaway(err)
    return goaway is not None and call.stream_id > goaway.last_stream_id


def _goaway(err: BaseException) -> Optional[Any]:
    """The h2 ConnectionTerminated event (a GOAWAY from the agent) behind ``err``, if any."""
    if not isinstance(err, httpx.RemoteProtocolError):
        return None
    for cause in _chain(err):
        for arg in cause.args:
            if type(arg).__name__ == "ConnectionTerminated" and isinstance(getattr(arg, "last_stream_id", None), int):
                return arg
    return None


def _chain(err: BaseException) -> List[BaseException]:
    """``err`` and its causes, innermost last."""
    out: List[BaseException] = []
    cur: Optional[BaseException] = err
    while cur is not None and all(cur is not seen for seen in out):
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _ssl_error(err: BaseException) -> Optional[ssl.SSLError]:
    """The ssl.SSLError behind an httpx error, if any (EOFs are not TLS verdicts)."""
    for cause in _chain(err):
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return cause
    return None


class _NoTimeout:
    """What httpcore's write path reads from a request: its timeouts (none for a reset frame)."""

    extensions: Dict[str, Any] = {"timeout": {}}


def _stream_owner(http: Any, stream_id: int) -> Any:
    """The httpcore HTTP/2 connection carrying ``stream_id``, or None where httpcore hides it.

    httpcore (0.16, Debian 12) ends an unfinished response stream without RST_STREAM: the agent
    would keep the generator paused until its deadline. So a stream left early is reset here,
    through httpcore's connection objects."""
    pool = getattr(getattr(http, "_transport", None), "_pool", None)
    for conn in list(getattr(pool, "connections", None) or []):
        h2conn = getattr(conn, "_connection", None)
        if stream_id in (getattr(h2conn, "_events", None) or {}) and hasattr(h2conn, "_h2_state") and hasattr(h2conn, "_write_outgoing_data"):
            return h2conn
    return None


def reset_stream(http: Any, stream_id: Optional[int]) -> bool:
    """Sends RST_STREAM(CANCEL) for a stream left before its last frame; False when it cannot."""
    owner = _stream_owner(http, stream_id) if stream_id is not None else None
    if owner is None:
        return False
    try:
        owner._h2_state.reset_stream(stream_id, error_code=0x8)
        owner._write_outgoing_data(_NoTimeout())
    except Exception:  # the connection is gone: nothing left to stop
        return False
    return True


async def areset_stream(http: Any, stream_id: Optional[int]) -> bool:
    """Like :func:`reset_stream`, for httpx.AsyncClient."""
    owner = _stream_owner(http, stream_id) if stream_id is not None else None
    if owner is None:
        return False
    try:
        owner._h2_state.reset_stream(stream_id, error_code=0x8)
        await owner._write_outgoing_data(_NoTimeout())
    except Exception:  # the connection is gone: nothing left to stop
        return False
    return True
