"""Which failures a retry may cure: a connection reset or refused, a timeout, a serialization
failure or deadlock, a server shutting down or failing over (MongoDB NotWritablePrimary, network
errors). Everything else — bad credentials, a missing permission, a full disk, a constraint the
data breaks — is terminal. The drivers' own exception types are known here, and only here."""

from __future__ import annotations

import errno

from service.core.errors import TerminalError, TransientError

_NETWORK_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT,
                   errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN}


def is_transient(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, is worth retrying."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TerminalError):
            return False
        if isinstance(current, TransientError | TimeoutError | ConnectionError):
            return True
        if isinstance(current, OSError) and current.errno in _NETWORK_ERRNOS:
            return True
        if _postgres(current) or _mongo(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _postgres(exc: BaseException) -> bool:
    try:
        import asyncpg
        from asyncpg import exceptions as pg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    if isinstance(exc, pg.PostgresConnectionError | pg.SerializationError | pg.DeadlockDetectedError
                  | pg.AdminShutdownError | pg.CrashShutdownError | pg.CannotConnectNowError
                  | pg.TooManyConnectionsError | pg.QueryCanceledError | pg.ConnectionDoesNotExistError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def _mongo(exc: BaseException) -> bool:
    try:
        from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout
    except ImportError:  # pragma: no cover - pymongo is a dependency
        return False
    return isinstance(exc, AutoReconnect | ConnectionFailure | NetworkTimeout)
