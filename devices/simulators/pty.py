"""A pseudo-terminal that stands in for a device's serial port.

The driver opens a stable path (a symlink to the pty's slave), exactly as it would open
``/dev/ttyUSB0``. ``unplug()`` closes the pty, so the driver's reads fail with EIO as when a
USB-serial adapter is pulled, and the path disappears; ``plug()`` makes a new pty behind the
same path, as when the adapter is plugged back in and the udev symlink follows it.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import threading
import tty
from pathlib import Path


class PtyPort:
    """The device side of a pty, with the slave reachable at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self.plug()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> None:
        """Create a new pty and point ``path`` at its slave."""
        with self._lock:
            if self._master is not None:
                return
            master, slave = pty.openpty()
            # Raw mode: no echo, no CR/LF translation, every byte passes as sent.
            tty.setraw(slave)
            tty.setraw(master)
            # Keep the slave open ourselves so the pty survives a driver closing its side.
            self._master, self._slave = master, slave
            tmp = self.path.with_name(self.path.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(os.ttyname(slave))
            tmp.replace(self.path)

    def unplug(self) -> None:
        """Close the pty: the driver's port errors and the path vanishes."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None

    def read(self, timeout_s: float) -> bytes:
        """Bytes the driver wrote, waiting up to ``timeout_s``; empty when unplugged."""
        master = self._master
        if master is None:
            return b""
        try:
            ready, _, _ = select.select([master], [], [], timeout_s)
            if not ready:
                return b""
            return os.read(master, 65536)
        except OSError:
            return b""

    def write(self, data: bytes) -> bool:
        """Write all of ``data`` towards the driver; ``False`` if unplugged meanwhile."""
        master = self._master
        if master is None:
            return False
        view = memoryview(data)
        try:
            while view:
                _, ready, _ = select.select([], [master], [], 1.0)
                if not ready:
                    return False
                n = os.write(master, view)
                view = view[n:]
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.unplug()
