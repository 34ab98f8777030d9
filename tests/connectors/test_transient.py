"""Which failures are retried: network trouble, timeouts, serialization failures and failovers;
not bad credentials, missing permissions, full disks or data the database refuses."""

from __future__ import annotations

import errno

import pytest
from asyncpg import exceptions as pg
from pymongo.errors import AutoReconnect, DuplicateKeyError, NotPrimaryError, OperationFailure

from service.connectors.transient import is_transient
from service.core.errors import EndpointError, TerminalError, TransientError


def wrapped(inner: BaseException) -> EndpointError:
    """As the connectors raise them: our error, from the driver's."""
    try:
        raise EndpointError("writing batch 3 failed") from inner
    except EndpointError as exc:
        return exc


@pytest.mark.parametrize("error", [
    TransientError("cannot connect"), TimeoutError(), ConnectionResetError(), BrokenPipeError(),
    OSError(errno.ECONNREFUSED, "refused"), pg.ConnectionDoesNotExistError("closed"),
    pg.SerializationError("could not serialize"), pg.DeadlockDetectedError("deadlock"),
    pg.AdminShutdownError("terminating"), pg.CannotConnectNowError("starting up"),
    AutoReconnect("reset"), NotPrimaryError("not primary"),
])
def test_network_trouble_timeouts_and_failovers_are_retried(error: BaseException) -> None:
    assert is_transient(error)
    assert is_transient(wrapped(error))


@pytest.mark.parametrize("error", [
    TerminalError("authentication failed"), pg.InsufficientPrivilegeError("permission denied"),
    pg.UniqueViolationError("duplicate key"), pg.StringDataRightTruncationError("too long"),
    OSError(errno.ENOSPC, "No space left on device"), DuplicateKeyError("E11000"),
    OperationFailure("unauthorized"), ValueError("bad data"),
])
def test_bad_credentials_permissions_full_disks_and_refused_data_are_not(error: BaseException) -> None:
    assert not is_transient(error)
    assert not is_transient(wrapped(error))


def test_a_terminal_error_raised_from_a_network_error_is_terminal() -> None:
    try:
        raise TerminalError("disk full while reconnecting") from ConnectionResetError()
    except TerminalError as exc:
        assert not is_transient(exc)
