"""The database host allow-list (`MIGRATOR_ALLOWED_HOSTS`, config `allowed_hosts`).

Empty (the default) allows every host: most users migrate between their own internal servers.
When set — names, IP addresses or CIDR networks, comma-separated — a PostgreSQL or MongoDB URL
is refused, before any connection is made, unless every address its host(s) resolve to is an
address of an allowed name, an allowed IP or inside an allowed network. So an IP literal of
another machine, a name that resolves elsewhere, and a unix socket are all refused. File URLs
(CSV, SQLite) are not concerned: `MIGRATOR_DATA_DIR` bounds them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from service.core.errors import InvalidUrl
from service.core.urls import EndpointUrl, Kind

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class HostPolicy:
    def __init__(self, allowed: Sequence[str]) -> None:
        self.allowed = tuple(a.strip() for a in allowed if a.strip())
        self._networks: list[Network] = []
        self._names: list[str] = []
        for entry in self.allowed:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._names.append(entry.lower())

    @property
    def active(self) -> bool:
        return bool(self.allowed)

    def check(self, url: EndpointUrl, field: str = "URL") -> None:
        """Raise InvalidUrl naming the host when `url` may not be used."""
        if not self.active or url.kind not in (Kind.POSTGRES, Kind.MONGO):
            return
        parts = urlsplit(url.secret_url)
        if parts.netloc.count("@") > 1:  # drivers and urlsplit disagree on where the hosts start
            raise InvalidUrl(f"{field}: more than one @ in the URL's authority ({url.masked}): write the "
                             "password's @ as %40", details={"field": field})
        if parts.scheme == "mongodb+srv":  # the hosts come from DNS at connect time: they cannot be checked here
            raise InvalidUrl(f"{field}: mongodb+srv:// URLs are refused when MIGRATOR_ALLOWED_HOSTS is set (their "
                             "hosts come from DNS when connecting); list the hosts in a mongodb:// URL",
                             details={"field": field})
        allowed = self._allowed_addresses()  # (resolved once for all the URL's hosts)
        for host in _hosts(url):
            if not host or host.startswith("/") or host.startswith("@"):
                raise InvalidUrl(f"{field}: unix sockets are not allowed when MIGRATOR_ALLOWED_HOSTS is set "
                                 f"({url.masked})", details={"field": field})
            found = _addresses(host)
            if not found:
                raise InvalidUrl(f"{field}: host {host!r} does not resolve (MIGRATOR_ALLOWED_HOSTS is set)",
                                 details={"field": field})
            outside = [a for a in found if a not in allowed and not any(a in n for n in self._networks)]
            if outside:
                raise InvalidUrl(f"{field}: host {host!r} ({', '.join(map(str, outside))}) is not in "
                                 f"MIGRATOR_ALLOWED_HOSTS ({', '.join(self.allowed)})", details={"field": field})

    def _allowed_addresses(self) -> set[Address]:
        found: set[Address] = set()
        for name in self._names:
            found.update(_addresses(name))
        return found


def _hosts(url: EndpointUrl) -> list[str]:
    """The host names of a URL: every host of a MongoDB seed list; a PostgreSQL URL's host and
    any `host=` query parameter (libpq's, possibly a socket folder)."""
    parts = urlsplit(url.secret_url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    hosts = []
    for item in netloc.split(","):
        item = unquote(item)
        if item.startswith("["):  # [IPv6]:port
            hosts.append(item[1:item.index("]")] if "]" in item else item)
        else:
            hosts.append(item.rsplit(":", 1)[0] if item.count(":") == 1 else item)
    query = parse_qs(parts.query)
    hosts += [h for value in query.get("host", []) for h in value.split(",")]
    return hosts


def _addresses(host: str) -> set[Address]:
    try:
        return {ipaddress.ip_address(host)}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return set()
    return {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}
