"""A fleet of caregraph role processes on Kafka (a private Tansu broker per test, behind a
TCP proxy for the tests that cut the connection) and PostgreSQL, one process per role so
each can be killed alone.

Private brokers, not the shared one: the roles' consumer groups have fixed names, and a
shared broker would put another test's consumers in the same groups."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fleet import Fleet, clean_env, tansu_behind_proxy
from tests.support.services import free_port, tansu_broker, wait_for_port
from tests.support.tcp_proxy import TcpProxy

# every process on its own, so a kill -9 takes down exactly one role
LAYOUT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("front", ("api", "dicom")),
    ("mllp", ("mllp",)),
    ("normalizer", ("normalizer",)),
    ("store-writer", ("store-writer",)),
    ("linkage", ("linkage",)),
)


@dataclass
class Hospital:
    """The running fleet and how to reach it."""

    fleet: Fleet
    proxy: TcpProxy | None
    mllp_port: int
    dicom_port: int

    @property
    def front(self) -> tuple[Path, int]:
        m = self.fleet.members["front"]
        return Path(m.env["CAREGRAPH_DATA_DIR"]), m.http_port

    def wait_up(self, timeout_s: float = 90) -> None:
        for name in self.fleet.members:
            self.fleet.wait_http(name, timeout_s)
        wait_for_port("127.0.0.1", self.mllp_port, timeout_s=timeout_s)


@pytest.fixture
def broker() -> Iterator[tuple[str, None]]:
    """A private broker reached directly."""
    with tansu_broker() as bootstrap:
        yield bootstrap, None


@pytest.fixture
def proxied_broker() -> Iterator[tuple[str, TcpProxy]]:
    """A private broker reached only through a ``TcpProxy`` (it advertises the proxy)."""
    with tansu_behind_proxy() as b:
        yield b


def launch(tmp_path: Path, bootstrap: str, proxy: TcpProxy | None, database_url: str) -> Hospital:
    env = clean_env()
    env["CAREGRAPH_KAFKA_BOOTSTRAP"] = bootstrap
    env["CAREGRAPH_DATABASE_URL"] = database_url
    env["CAREGRAPH_KAFKA_PARTITIONS"] = "2"
    fleet = Fleet(env, tmp_path)
    mllp, dicom = free_port(), free_port()
    for n, (name, roles) in enumerate(LAYOUT):
        fleet.start(name, *roles, mllp_port=str(mllp), dicom_port=str(dicom))
        if n == 0:
            # the first member creates the topics; five processes creating them at once on
            # a loaded machine have timed out (caregraph up then exits: "cannot create
            # Kafka topics")
            fleet.wait_http(name)
    return Hospital(fleet, proxy, mllp, dicom)


@pytest.fixture
def hospital(tmp_path: Path, broker: tuple[str, None], postgres_url: str) -> Iterator[Hospital]:
    with running(launch(tmp_path, *broker, postgres_url)) as h:
        yield h


@pytest.fixture
def proxied_hospital(
    tmp_path: Path, proxied_broker: tuple[str, TcpProxy], postgres_url: str
) -> Iterator[Hospital]:
    with running(launch(tmp_path, *proxied_broker, postgres_url)) as h:
        yield h


@contextmanager
def running(h: Hospital) -> Iterator[Hospital]:
    """Wait until every member is up; stop them all afterwards, printing error tails."""
    try:
        h.wait_up()
        yield h
    finally:
        h.fleet.stop()
        tails = h.fleet.tails()
        if tails:
            print(tails)
