"""A blocking MLLP client: send a message, wait for its ACK. For tests, benchmarks and
tools that feed caregraph; a sender in production is the hospital's interface engine."""

from __future__ import annotations

import contextlib
import socket
import ssl

from devices.mllp.framing import Frame, FramingError, MllpDecoder, encode_frame


class MllpClient:
    """One connection; ``send`` returns the ACK payload (raises on framing errors)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock: socket.socket = (
            tls.wrap_socket(sock, server_hostname=server_hostname or host) if tls else sock
        )
        self._decoder = MllpDecoder()
        self._ready: list[bytes] = []

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (for tests of broken framing)."""
        self._sock.sendall(data)

    def receive(self) -> bytes:
        """The next ACK payload.

        Raises:
            ConnectionError: the server closed the connection first.
            ValueError: the server's framing is broken.
        """
        while not self._ready:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for event in self._decoder.feed(data):
                if isinstance(event, FramingError):
                    raise ValueError(f"bad framing from the server: {event.reason}")
                assert isinstance(event, Frame)
                self._ready.append(event.payload)
        return self._ready.pop(0)

    def send(self, message: bytes) -> bytes:
        """Frame ``message``, send it, return its ACK."""
        self._sock.sendall(encode_frame(message))
        return self.receive()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
