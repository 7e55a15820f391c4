"""A fleet of caregraph role processes on Kafka (a private Tansu behind a TCP proxy) and
PostgreSQL, one process per role so each can be killed alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fleet import Fleet, clean_env, tansu_behind_proxy
from tests.support.services import free_port, wait_for_port
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
    proxy: TcpProxy
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
def broker() -> Iterator[tuple[str, TcpProxy]]:
    with tansu_behind_proxy() as b:
        yield b


def launch(tmp_path: Path, bootstrap: str, proxy: TcpProxy, database_url: str) -> Hospital:
    env = clean_env()
    env["CAREGRAPH_KAFKA_BOOTSTRAP"] = bootstrap
    env["CAREGRAPH_DATABASE_URL"] = database_url
    env["CAREGRAPH_KAFKA_PARTITIONS"] = "2"
    fleet = Fleet(env, tmp_path)
    mllp, dicom = free_port(), free_port()
    for name, roles in LAYOUT:
        fleet.start(name, *roles, mllp_port=str(mllp), dicom_port=str(dicom))
    return Hospital(fleet, proxy, mllp, dicom)


@pytest.fixture
def hospital(tmp_path: Path, broker: tuple[str, TcpProxy], postgres_url: str) -> Iterator[Hospital]:
    h = launch(tmp_path, *broker, postgres_url)
    try:
        h.wait_up()
        yield h
    finally:
        h.fleet.stop()
        tails = h.fleet.tails()
        if tails:
            print(tails)
