"""The serial port seam: pyserial behind a small ``Link``; its errors become ``LinkLost``."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import serial

from devices.serial.errors import LinkLost


@dataclass(frozen=True, slots=True)
class LineSettings:
    """RS-232 line settings as the device's interface guide gives them."""

    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False


class Link:
    """An open port. ``read`` returns what arrived within ``timeout_s`` (maybe nothing)."""

    def __init__(self, port: Any) -> None:
        self._port = port

    @classmethod
    def open(cls, path: str, line: LineSettings) -> Link:
        """Open ``path`` with ``line``.

        Raises:
            LinkLost: the port does not exist or cannot be configured.
        """
        try:
            port = serial.Serial(
                path,
                baudrate=line.baudrate,
                bytesize=line.bytesize,
                parity=line.parity,
                stopbits=line.stopbits,
                rtscts=line.rtscts,
                timeout=0,
                write_timeout=2.0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkLost(f"cannot open {path}: {exc}") from exc
        return cls(port)

    def read(self, timeout_s: float) -> bytes:
        """Bytes available now, or the first bytes that arrive within ``timeout_s``.

        Raises:
            LinkLost: the port errored (on a pty: the other side hung up).
        """
        try:
            port = self._port
            port.timeout = timeout_s
            first: bytes = port.read(1)
            if not first:
                return b""
            waiting = port.in_waiting
            return first + (port.read(waiting) if waiting else b"")
        except (serial.SerialException, OSError, TypeError) as exc:
            # pyserial raises TypeError when the fd was closed under it.
            raise LinkLost(f"read failed: {exc}") from exc

    def write(self, data: bytes) -> None:
        """Write all of ``data``.

        Raises:
            LinkLost: the port errored or the write timed out.
        """
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise LinkLost(f"write failed: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):
            self._port.close()


def monotonic() -> float:
    """The clock drivers use for timeouts (never the wall clock, which may jump)."""
    return time.monotonic()
