"""Fixtures for the DICOM gateway against real dcmtk peers on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bus.base import Message
from bus.embedded import EmbeddedBus
from bus.topics import RAW_DICOM
from devices.dicom import DicomGateway

AE_TITLE = "CAREGRAPH"


@dataclass
class Dcmtk:
    """Debian's dcmtk tools (the virtualenv's pynetdicom apps share their names)."""

    bin_dir: Path

    def run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, TCP_NODELAY="1")  # else Nagle makes loopback crawl
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="session")
def dcmtk() -> Dcmtk:
    found = shutil.which("storescu", path="/usr/bin:/usr/local/bin")
    if found is None:
        pytest.fail("dcmtk is not installed (apt-get install -y dcmtk)")
    tools = Dcmtk(Path(found).parent)
    assert "dcmtk" in tools.run("storescu", "--version").stdout.lower()
    return tools


@dataclass
class Running:
    gateway: DicomGateway
    bus: EmbeddedBus
    data_dir: Path

    @property
    def port(self) -> str:
        return str(self.gateway.port)

    def raw_messages(self) -> list[Message]:
        """Everything published to raw.dicom so far (a fresh group reads from the start)."""
        out: list[Message] = []
        with self.bus.subscribe(f"test-{uuid.uuid4().hex}", [RAW_DICOM]) as consumer:
            while batch := consumer.poll(0.2, 500):
                out += batch
        return out

    def files(self) -> list[Path]:
        """Every regular file under the data dir, outside the index and bus databases and
        the intake journal (its segments are named by number only; see test_journal)."""
        return sorted(
            p
            for p in self.data_dir.rglob("*")
            if p.is_file()
            and not p.name.startswith("index.sqlite3")
            and p.parent != self.data_dir / "journal"
        )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    bus = EmbeddedBus(tmp_path / "bus")
    data_dir = tmp_path / "dicom"
    gateway = DicomGateway(data_dir, bus, ae_title=AE_TITLE, host="127.0.0.1", port=0)
    gateway.start()
    try:
        yield Running(gateway, bus, data_dir)
    finally:
        gateway.stop()
        bus.close()
