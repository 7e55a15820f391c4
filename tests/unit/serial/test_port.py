"""The port seam wraps every pyserial/OS failure into ``LinkLost`` (so a driver's session
ends and reconnects instead of its thread dying)."""

from __future__ import annotations

import termios
from pathlib import Path

import pytest
import serial

from caregraph.errors import CaregraphError
from devices.serial.errors import LinkLost, SerialLinkError
from devices.serial.port import LineSettings, Link

UPSTREAM = [
    serial.SerialException("device reports readiness to read but returned no data"),
    OSError(5, "Input/output error"),
    termios.error(22, "Invalid argument"),
    TypeError("fd closed under pyserial"),
]


class _Broken:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.in_waiting = 0

    def read(self, n: int) -> bytes:
        raise self.exc

    def write(self, data: bytes) -> int:
        raise self.exc

    def close(self) -> None:
        raise self.exc


@pytest.mark.parametrize("exc", UPSTREAM, ids=lambda e: type(e).__name__)
def test_read_errors_become_link_lost(exc: Exception) -> None:
    with pytest.raises(LinkLost) as info:
        Link(_Broken(exc)).read()
    assert info.value.__cause__ is exc


@pytest.mark.parametrize("exc", UPSTREAM[:3], ids=lambda e: type(e).__name__)
def test_write_errors_become_link_lost(exc: Exception) -> None:
    with pytest.raises(LinkLost):
        Link(_Broken(exc)).write(b"x")


def test_close_never_raises_port_errors() -> None:
    Link(_Broken(OSError(9, "bad fd"))).close()
    Link(_Broken(serial.SerialException("gone"))).close()


def test_missing_port_is_link_lost(tmp_path: Path) -> None:
    with pytest.raises(LinkLost):
        Link.open(str(tmp_path / "ttyNOPE"), LineSettings(9600))


def test_errors_are_rooted_in_the_one_tree() -> None:
    assert issubclass(LinkLost, SerialLinkError)
    assert issubclass(SerialLinkError, CaregraphError)
