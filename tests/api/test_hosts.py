"""The database host allow-list (MIGRATOR_ALLOWED_HOSTS): when set, URLs to other hosts — IP
literals, names resolving elsewhere, unix sockets — are refused before any connection; when
empty (the default) every host is allowed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.core.errors import InvalidUrl
from service.core.hosts import HostPolicy
from service.core.urls import parse_url


def check(allowed: list[str], url: str) -> None:
    HostPolicy(allowed).check(parse_url(url, data_dir=Path("/tmp")), "sourceDB")


@pytest.mark.parametrize("url", [
    "postgresql://u:p@10.9.8.7:5432/db", "mongodb://elsewhere.invalid:27017/db", "postgresql:///db",
    "postgresql://u@127.0.0.1/db?host=/var/run/postgresql", "mongodb://127.0.0.1:27017,10.0.0.9:27017/db",
])
def test_hosts_outside_the_list_and_unix_sockets_are_refused(url: str) -> None:
    with pytest.raises(InvalidUrl, match="sourceDB: .*(MIGRATOR_ALLOWED_HOSTS|unix sockets)"):
        check(["127.0.0.1"], url)


@pytest.mark.parametrize("allowed, url", [
    (["127.0.0.1"], "postgresql://u:p@127.0.0.1:5432/db"),
    (["localhost"], "postgresql://u@localhost/db"),
    (["localhost"], "postgresql://u@127.0.0.1/db"),  # the address of an allowed name
    (["10.0.0.0/8"], "mongodb://10.1.2.3:27017,10.200.0.1:27018/db"),
    (["::1"], "postgresql://u@[::1]:5432/db"),
    ([], "postgresql://u@10.9.8.7/db"),  # no list: every host
    (["127.0.0.1"], "csv:///folder"),  # files are bounded by the data folder, not hosts
])
def test_listed_hosts_their_addresses_and_networks_are_allowed(allowed: list[str], url: str) -> None:
    check(allowed, url)


async def test_the_api_refuses_a_host_outside_the_list_with_400_before_connecting(
    make_api: Callable[..., Any], pg_dsn: str
) -> None:
    async with make_api(allowed_hosts=("127.0.0.1",)) as api:
        # 10.255.255.1 would time out as a 502 if the service tried to connect
        refused = await api.post("/api/migrations/initialize", {"sourceDB": "postgresql://u@10.255.255.1:5432/db",
                                                                "targetDB": pg_dsn}, status=400)
        assert "10.255.255.1" in refused["error"]["message"] and refused["error"]["details"]["field"] == "sourceDB"
        allowed = await api.post("/api/migrations/initialize", {"sourceDB": pg_dsn, "targetDB": pg_dsn})
        assert allowed["success"] is True


@pytest.mark.parametrize("url", ["postgresql://u:pw@10.9.8.7:6543,x@127.0.0.1/db",
                                 "mongodb+srv://u:pw@cluster0.example.net/db"])
def test_urls_whose_hosts_a_driver_reads_differently_are_refused(url: str) -> None:
    with pytest.raises(InvalidUrl, match="sourceDB: (more than one @|mongodb\\+srv)"):
        check(["127.0.0.1"], url)
