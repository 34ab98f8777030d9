"""The error tree of the migrator, in one place.

    MigratorError                 root; `code` is the stable machine name, `status` the HTTP status
    ├── InvalidInput (400)        the caller asked for something malformed
    │   ├── InvalidUrl            a source/target URL that cannot be understood or is not allowed
    │   ├── InvalidSpec           a migration spec with one or more problems (all listed at once)
    │   └── UnknownTable          a table/collection/file the source does not have
    ├── NotFound (404)            no such migration
    ├── WrongState (409)          e.g. resume of a migration that is not paused
    ├── ConfigError               bad settings at start-up
    ├── EndpointError (502)       a database or file could not be used
    │   ├── TransientError        worth retrying: connection reset, timeout, serialization failure
    │   ├── TerminalError         retrying will not help: auth failure, missing permission, disk full
    │   └── RetriesExhausted      a transient failure that outlasted every retry
    ├── RejectLimit (422)         more rows rejected than the spec's maxErrors allows
    └── PipelineError             a stage failed; `__cause__` holds the original error

Messages never contain passwords: URLs are always shown masked.
"""

from __future__ import annotations

from collections.abc import Sequence


class MigratorError(Exception):
    code = "error"
    status = 500

    def __init__(self, message: str, *, details: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(MigratorError):
    code = "invalid_input"
    status = 400


class InvalidUrl(InvalidInput):
    code = "invalid_url"


class InvalidSpec(InvalidInput):
    code = "invalid_spec"

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems), details=list(problems))
        self.problems = list(problems)


class UnknownTable(InvalidInput):
    code = "unknown_table"


class NotFound(MigratorError):
    code = "not_found"
    status = 404


class WrongState(MigratorError):
    code = "wrong_state"
    status = 409


class ConfigError(MigratorError):
    code = "config_error"


class EndpointError(MigratorError):
    code = "endpoint_error"
    status = 502


class TransientError(EndpointError):
    code = "transient_error"


class TerminalError(EndpointError):
    code = "terminal_error"


class RetriesExhausted(EndpointError):
    """A transient failure that outlasted every retry (spec `retryFailed`)."""

    code = "retries_exhausted"


class RejectLimit(MigratorError):
    code = "too_many_rejects"
    status = 422


class PipelineError(MigratorError):
    code = "pipeline_error"
