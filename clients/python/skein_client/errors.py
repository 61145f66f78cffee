"""Typed errors: one class per ``SKEIN_ERR_*`` code of skein's error table (common/errors/index.ts).

Every failure the client reports is a :class:`SkeinError` carrying the stable ``code`` (match on
it, or on the class; messages may change), the ``message`` and the server's ``details`` (the
error body's ``meta``: ``peer``, ``reason``, ``exception``, ``routine``… plus ``status`` and
``requestId``). Rejections, routine errors, deadlines and transport failures never look alike::

    try:
        client.dispatch("fail")
    except RoutineRaised as err:
        print(err.exception_type, err.exception_message)  # ValueError this routine always fails
    except Unauthenticated as err:
        print(err.reason)                                  # e.g. JWT_EXPIRED
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, Mapping, Optional, Type


class SkeinError(Exception):
    """Base of every skein error: ``code`` (``SKEIN_ERR_*``), ``message`` and ``details``."""

    #: The code of the class's table row; None on bases that group several codes.
    CODE: ClassVar[Optional[str]] = None
    #: HTTP status the agent answers with (0: raised by the client, never sent by a server).
    HTTP_STATUS: ClassVar[int] = 0

    def __init__(self, code: str, message: str, details: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: Dict[str, Any] = dict(details or {})

    @property
    def status(self) -> Optional[int]:
        """HTTP status of the agent's answer; None when no answer arrived."""
        status = self.details.get("status")
        return status if isinstance(status, int) else None

    @property
    def request_id(self) -> Optional[str]:
        """The call's request id, to find its lines in the agent's log and audit stream."""
        rid = self.details.get("requestId")
        return rid if isinstance(rid, str) else None

    @property
    def peer(self) -> Optional[str]:
        """The identity the agent saw for the caller (``meta.peer``), when it answered."""
        peer = self.details.get("peer")
        return peer if isinstance(peer, str) else None

    def _detail(self, key: str) -> Optional[str]:
        value = self.details.get(key)
        return value if isinstance(value, str) else None


# Request problems: the caller can fix them.
class BadRequest(SkeinError):
    """Malformed body or header (e.g. a value JSON cannot carry, a bad x-skein-timeout-ms)."""

    CODE, HTTP_STATUS = "SKEIN_ERR_BAD_REQUEST", 400


class UnsupportedMediaType(BadRequest):
    CODE, HTTP_STATUS = "SKEIN_ERR_UNSUPPORTED_MEDIA_TYPE", 415


class MethodNotAllowed(BadRequest):
    CODE, HTTP_STATUS = "SKEIN_ERR_METHOD_NOT_ALLOWED", 405


class BodyTooLarge(BadRequest):
    """The request body is over the agent's ``limits.maxBodyBytes`` (``details["limit"]``)."""

    CODE, HTTP_STATUS = "SKEIN_ERR_BODY_TOO_LARGE", 413


class NotFound(SkeinError):
    """No such endpoint."""

    CODE, HTTP_STATUS = "SKEIN_ERR_NOT_FOUND", 404


class UnknownRoutine(NotFound):
    """No routine of that name is configured on the agent."""

    CODE, HTTP_STATUS = "SKEIN_ERR_UNKNOWN_ROUTINE", 404

    @property
    def routine(self) -> Optional[str]:
        return self._detail("routine")


class CallNotFound(NotFound):
    """No async call with that id is visible to this caller: unknown, expired, or another caller's
    (the agent answers the same for all three, so ids cannot be probed)."""

    CODE, HTTP_STATUS = "SKEIN_ERR_CALL_NOT_FOUND", 404


# Identity.
class _Refusal(SkeinError):
    """A decision against the caller: the ``reason`` code and the ``plugin`` that made it, when given."""

    @property
    def reason(self) -> Optional[str]:
        return self._detail("reason")

    @property
    def plugin(self) -> Optional[str]:
        """The plugin that refused, when one did."""
        return self._detail("plugin")


class Unauthenticated(_Refusal):
    """No valid credential; ``reason`` says which (CREDENTIAL_REQUIRED, JWT_EXPIRED…; docs/api.md)."""

    CODE, HTTP_STATUS = "SKEIN_ERR_UNAUTHENTICATED", 401


class Forbidden(_Refusal):
    """An authorization hook denied the routine to this identity."""

    CODE, HTTP_STATUS = "SKEIN_ERR_FORBIDDEN", 403


# Routine outcomes.
class RoutineRaised(SkeinError):
    """The Python routine raised: its exception's type and message (the traceback stays in the agent's log)."""

    CODE, HTTP_STATUS = "SKEIN_ERR_ROUTINE_RAISED", 422

    def _exception(self) -> Mapping[str, Any]:
        exc = self.details.get("exception")
        return exc if isinstance(exc, Mapping) else {}

    @property
    def exception_type(self) -> Optional[str]:
        value = self._exception().get("type")
        return value if isinstance(value, str) else None

    @property
    def exception_message(self) -> Optional[str]:
        value = self._exception().get("message")
        return value if isinstance(value, str) else None


class DeadlineExceeded(SkeinError):
    """The call ran past its deadline; the agent killed its worker."""

    CODE, HTTP_STATUS = "SKEIN_ERR_DEADLINE_EXCEEDED", 504


class WorkerFailed(SkeinError):
    """The routine's worker died or misbehaved during the call (the call may have run)."""


class WorkerCrashed(WorkerFailed):
    CODE, HTTP_STATUS = "SKEIN_ERR_WORKER_CRASHED", 502


class WorkerProtocolError(WorkerFailed):
    CODE, HTTP_STATUS = "SKEIN_ERR_WORKER_PROTOCOL", 502


class ResultTooLarge(WorkerFailed):
    CODE, HTTP_STATUS = "SKEIN_ERR_RESULT_TOO_LARGE", 502


# Capacity and lifecycle.
class Unavailable(SkeinError):
    """The agent refused the call for now; ``retry_after`` (seconds, from Retry-After) says when to retry."""

    @property
    def retry_after(self) -> Optional[float]:
        value = self.details.get("retryAfterSeconds")
        return float(value) if isinstance(value, (int, float)) else None


class Overloaded(Unavailable):
    """Every worker busy and the queue full."""

    CODE, HTTP_STATUS = "SKEIN_ERR_OVERLOADED", 503


class StoreFull(Unavailable):
    """The agent's async results store is full (calls.maxStored / calls.maxBytes): submit again later."""

    CODE, HTTP_STATUS = "SKEIN_ERR_STORE_FULL", 503


class StoreWriteFailed(Unavailable):
    """The agent's async results store could not commit (disk full, I/O error): the request had no effect; submit again later."""

    CODE, HTTP_STATUS = "SKEIN_ERR_STORE_WRITE", 503


class ShuttingDown(Unavailable):
    CODE, HTTP_STATUS = "SKEIN_ERR_SHUTTING_DOWN", 503


class CircuitOpen(Unavailable):
    """This routine kept killing its workers; refused until the cool-down passes."""

    CODE, HTTP_STATUS = "SKEIN_ERR_CIRCUIT_OPEN", 503


class InternalError(SkeinError):
    """A bug in the agent: please report it with the request id."""

    CODE, HTTP_STATUS = "SKEIN_ERR_INTERNAL", 500


# Client side: raised here, never sent by a server.
class TransportError(SkeinError):
    """Connection refused, reset or closed before an answer. ``details["sent"]`` is False when nothing was sent."""

    CODE = "SKEIN_ERR_TRANSPORT"


class TLSError(TransportError):
    """TLS failed: the agent refused the client certificate (``reason``), or its own was not trusted."""

    CODE = "SKEIN_ERR_TLS"

    @property
    def reason(self) -> Optional[str]:
        """no-certificate, unknown-ca, expired, bad-key-usage, bad-certificate or other; None for the agent's certificate."""
        return self._detail("reason")


class ClientTimeout(SkeinError):
    """No answer within the client's own wait (the call's deadline plus a grace period)."""

    CODE = "SKEIN_ERR_CLIENT_TIMEOUT"


class BadResponse(SkeinError):
    """The server answered with something that is not a skein response."""

    CODE = "SKEIN_ERR_BAD_RESPONSE"


class UsageError(SkeinError, ValueError):
    """The client was set up or called wrongly; the message names the argument, variable or profile key."""

    CODE = "SKEIN_ERR_USAGE"


ERRORS: Dict[str, Type[SkeinError]] = {
    cls.CODE: cls
    for cls in (
        BadRequest, UnsupportedMediaType, MethodNotAllowed, BodyTooLarge, NotFound, UnknownRoutine, CallNotFound,
        Unauthenticated, Forbidden, RoutineRaised, DeadlineExceeded, WorkerCrashed,
        WorkerProtocolError, ResultTooLarge, Overloaded, StoreFull, StoreWriteFailed, ShuttingDown, CircuitOpen, InternalError,
        TransportError, TLSError, ClientTimeout, BadResponse, UsageError,
    )
    if cls.CODE is not None
}
"""Code → class. A code this version does not know (a newer agent) becomes a plain SkeinError."""


def error_for(code: str, message: str, details: Optional[Mapping[str, Any]] = None) -> SkeinError:
    """The typed error for ``code``, e.g. ``error_for("SKEIN_ERR_OVERLOADED", "busy")`` is an :class:`Overloaded`."""
    return ERRORS.get(code, SkeinError)(code, message, details)
