"""Python client for skein agents: routine dispatch over HTTP/2 with mutual TLS and/or tokens.

    from skein_client import Client
    with Client() as client:            # peer and credentials from SKEIN_* or a client profile
        print(client.dispatch("add", 2, 3))

See docs/clients.md.
"""

from .client import AsyncClient, Client
from .errors import (
    ERRORS,
    BadRequest,
    BadResponse,
    BodyTooLarge,
    CallNotFound,
    CircuitOpen,
    ClientTimeout,
    DeadlineExceeded,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    ResultTooLarge,
    RoutineRaised,
    ShuttingDown,
    StoreFull,
    StoreWriteFailed,
    SkeinError,
    TLSError,
    TransportError,
    Unauthenticated,
    Unavailable,
    UnknownRoutine,
    UnsupportedMediaType,
    UsageError,
    WorkerCrashed,
    WorkerFailed,
    WorkerProtocolError,
    error_for,
)
from .target import DEFAULT_PORT, Target, resolve_target

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "Client", "Target", "resolve_target", "DEFAULT_PORT", "ERRORS", "error_for",
    "SkeinError", "BadRequest", "UnsupportedMediaType", "MethodNotAllowed", "BodyTooLarge", "NotFound",
    "UnknownRoutine", "CallNotFound", "StoreFull", "StoreWriteFailed", "Unauthenticated", "Forbidden", "RoutineRaised", "DeadlineExceeded", "WorkerFailed",
    "WorkerCrashed", "WorkerProtocolError", "ResultTooLarge", "Unavailable", "Overloaded", "ShuttingDown",
    "CircuitOpen", "InternalError", "TransportError", "TLSError", "ClientTimeout", "BadResponse", "UsageError",
]
