"""The serial port seam: pyserial behind a small ``Link``; its errors become ``LinkLost``."""

from __future__ import annotations

import contextlib
import os
import termios
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
    def open(cls, path: str, line: LineSettings, read_timeout_s: float = 0.05) -> Link:
        """Open ``path`` with ``line``; reads wait at most ``read_timeout_s``.

        A pseudo-terminal cannot do parity (``tcsetattr`` answers EINVAL), so on a pty the
        parity falls back to none: the simulators' bytes carry no parity bit anyway.

        Raises:
            LinkLost: the port does not exist or cannot be configured.
        """
        parity = line.parity
        if parity != "N" and os.path.realpath(path).startswith("/dev/pts/"):
            parity = "N"
        try:
            port = serial.Serial(
                path,
                baudrate=line.baudrate,
                bytesize=line.bytesize,
                parity=parity,
                stopbits=line.stopbits,
                rtscts=line.rtscts,
                timeout=read_timeout_s,
                write_timeout=2.0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            raise LinkLost(f"cannot open {path}: {exc}") from exc
        return cls(port)

    def read(self) -> bytes:
        """Bytes available now, or the first bytes that arrive within the read timeout.

        Raises:
            LinkLost: the port errored (on a pty: the other side hung up).
        """
        try:
            port = self._port
            first: bytes = port.read(1)
            if not first:
                return b""
            waiting = port.in_waiting
            return first + (port.read(waiting) if waiting else b"")
        except (serial.SerialException, OSError, TypeError, termios.error) as exc:
            # pyserial raises TypeError when the fd was closed under it.
            raise LinkLost(f"read failed: {exc}") from exc

    def write(self, data: bytes) -> None:
        """Write all of ``data``.

        Raises:
            LinkLost: the port errored or the write timed out.
        """
        try:
            self._port.write(data)
        except (serial.SerialException, OSError, termios.error) as exc:
            raise LinkLost(f"write failed: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):
            self._port.close()


def monotonic() -> float:
    """The clock drivers use for timeouts (never the wall clock, which may jump)."""
    return time.monotonic()
