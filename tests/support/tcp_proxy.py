"""A TCP proxy on loopback whose connections a test can cut, for network fault tests.

Clients connect to ``proxy.port``; each connection is relayed to ``upstream``. ``cut()``
resets every open connection and refuses new ones (accepted, then reset at once, as a
firewall rejecting traffic would look to the client); ``hang()`` keeps connections open
but stops relaying bytes (a silent partition: clients only notice through their own
timeouts); ``restore()`` lets new connections through again.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN: the peer sees a broken connection, not an orderly end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Relays ``127.0.0.1:<port>`` to ``upstream``; see the module docstring."""

    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._mode = "open"  # open | cut | hang
        self._closed = threading.Event()
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def mode(self) -> str:
        return self._mode

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until ``restore``."""
        with self._lock:
            self._mode = "cut"
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _reset(a)
            _reset(b)

    def hang(self) -> None:
        """Stop relaying: connections stay open and silent until ``restore`` or ``cut``."""
        with self._lock:
            self._mode = "hang"

    def restore(self) -> None:
        with self._lock:
            self._mode = "open"

    def close(self) -> None:
        self._closed.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.2)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._mode == "cut":
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                self.refused += 1
                _reset(client)
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
                self.accepted += 1
            threading.Thread(
                target=self._relay, args=(client, server), name="tcp-proxy-relay", daemon=True
            ).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._closed.is_set():
                if self._mode == "hang":
                    self._closed.wait(0.05)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        raise ConnectionError("closed")
                    peers[src].sendall(data)
        except (OSError, ValueError, ConnectionError):
            pass
        finally:
            with self._lock:
                if (a, b) in self._pairs:
                    self._pairs.remove((a, b))
            _reset(a)
            _reset(b)


@contextmanager
def tcp_proxy(upstream: tuple[str, int], port: int = 0) -> Iterator[TcpProxy]:
    proxy = TcpProxy(upstream, port)
    try:
        yield proxy
    finally:
        proxy.close()
