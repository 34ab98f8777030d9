"""Endpoint URLs: parsing, `${VAR}` substitution from the environment, and password masking.

File URLs follow SQLAlchemy's convention: `csv:///rel/dir` (three slashes, relative to the data
folder) and `csv:////abs/dir` (four slashes, absolute).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from service.core.errors import InvalidUrl

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Kind(StrEnum):
    POSTGRES = "postgresql"
    MONGO = "mongodb"
    CSV = "csv"
    SQLITE = "sqlite"


_SCHEMES = {
    "postgresql": Kind.POSTGRES,
    "postgres": Kind.POSTGRES,
    "mongodb": Kind.MONGO,
    "mongodb+srv": Kind.MONGO,
    "csv": Kind.CSV,
    "sqlite": Kind.SQLITE,
}


@dataclass(frozen=True)
class EndpointUrl:
    """A parsed source or target. `secret_url` carries credentials: never log or return it."""

    kind: Kind
    secret_url: str
    masked: str
    path: Path | None = None

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"EndpointUrl({self.masked!r})"

    def redact(self, text: str) -> str:
        """`text` with this URL's password (and the unmasked URL) replaced by `***`."""
        if self.secret_url in text:
            text = text.replace(self.secret_url, self.masked)
        password = urlsplit(self.secret_url).password if "://" in self.secret_url else None
        return text.replace(password, "***") if password else text


def mask(url: str) -> str:
    """The URL with any password replaced by `***` (safe to log and return)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def storable(url: str) -> str:
    """The URL as it may be kept at rest: a `${VAR}` password reference is kept (it is resolved
    again when the run resumes), a literal password is masked."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return mask(url)
    return url if password is None or _VAR.fullmatch(password) else mask(url)


def lost_password(url: str) -> bool:
    """True for a stored URL whose literal password was masked (it cannot connect as it is)."""
    try:
        return urlsplit(url).password == "***"
    except ValueError:
        return False


def substitute(url: str, env: Mapping[str, str]) -> str:
    """Replace each `${NAME}` with the environment's value; a missing variable is an error."""
    missing = [m.group(1) for m in _VAR.finditer(url) if m.group(1) not in env]
    if missing:
        raise InvalidUrl(
            f"environment variable(s) {', '.join(sorted(set(missing)))} used in URL {mask(url)} are not set"
        )
    return _VAR.sub(lambda m: env[m.group(1)], url)


def _outside_credentials(url: str, kind: Kind) -> str:
    """`url` without its user name and password (the whole URL for files)."""
    if kind not in (Kind.POSTGRES, Kind.MONGO):
        return url
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    hosts = authority.rsplit("@", 1)[-1]
    return f"{scheme}://{hosts}{slash}{path}"


def parse_url(
    url: str,
    *,
    data_dir: Path,
    restrict_to_data_dir: bool = False,
    env: Mapping[str, str] | None = None,
) -> EndpointUrl:
    """Parse a source/target URL. Relative file paths resolve inside `data_dir`.

    With `restrict_to_data_dir` (the API), a file path that leaves `data_dir` is refused.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidUrl("URL is empty")
    url = url.strip()
    masked = mask(url)
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise InvalidUrl(f"URL {masked!r} has no scheme; expected one of postgresql://, mongodb://, csv://, sqlite://")
    kind = _SCHEMES.get(scheme.lower())
    if kind is None:
        raise InvalidUrl(
            f"URL scheme {scheme!r} is not supported; expected one of postgresql://, mongodb://, csv://, sqlite://"
        )
    if restrict_to_data_dir and _VAR.search(_outside_credentials(url, kind)):
        # Over the API, ${VAR} is for credentials only: elsewhere its value would show up in
        # messages (a path, a host), and a caller could read the service's environment with it.
        raise InvalidUrl(f"URL {masked!r}: ${{VAR}} may only stand for a user name or password")
    resolved = substitute(url, os.environ if env is None else env)
    if kind in (Kind.POSTGRES, Kind.MONGO):
        try:
            parts = urlsplit(resolved)
            hosts = parts.netloc.rsplit("@", 1)[-1].split(",")  # a MongoDB seed list names several
            for host in hosts:
                _ = urlsplit(f"//{host}").port  # validates each port
        except ValueError as exc:
            raise InvalidUrl(f"URL {masked!r} is malformed: {exc}") from None
        if not parts.hostname and kind is Kind.MONGO:
            raise InvalidUrl(f"URL {masked!r} names no host")
        return EndpointUrl(kind, resolved, masked)
    return EndpointUrl(kind, resolved, masked, _file_path(resolved, masked, data_dir, restrict_to_data_dir))


def _file_path(url: str, masked: str, data_dir: Path, restrict: bool) -> Path:
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        raise InvalidUrl(f"file URL {masked!r} must look like csv:///relative/path or csv:////absolute/path")
    raw = unquote(rest[1:])  # percent-encoded, as in any URL: %20 is a space — and %2e%2e is ..
    if "\x00" in raw:
        raise InvalidUrl(f"file URL {masked!r} contains a NUL byte")
    base = data_dir.resolve()
    path = Path(raw) if raw.startswith("/") else base / raw
    path = path.resolve()
    if restrict and not path.is_relative_to(base):
        raise InvalidUrl(f"file URL {masked!r} points outside the data folder")
    return path
