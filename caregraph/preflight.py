"""Checks that turn unusable settings into one clear ``ConfigError`` before anything starts."""

from __future__ import annotations

import errno
import ipaddress
import socket
import uuid
from pathlib import Path

from caregraph.errors import ConfigError


def ensure_writable_dir(path: Path, setting: str = "CAREGRAPH_DATA_DIR") -> Path:
    """Create ``path`` if needed and prove a file can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"data dir {path} is not writable ({exc.strerror or exc}); "
            f"choose another with {setting} or --data-dir, or fix its permissions"
        ) from exc
    return path.resolve()


def ensure_port_free(host: str, port: int, setting: str, flag: str) -> None:
    """Fail early with the setting's name when another process already holds the port."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} ({setting}) is already in use; stop the other "
                    f"process or choose another port with {flag}"
                ) from exc
            raise ConfigError(f"cannot listen on {host}:{port} ({setting}): {exc}") from exc


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_loopback_unless_insecure(
    host: str, insecure: bool, auth_mode: str = "development"
) -> bool:
    """Every route needs a token now (issue 7), but development mode trusts tokens anyone
    with the data dir can mint: with it, patient data is served only on loopback.

    jwks mode (tokens from a real authorization server) may listen anywhere. Returns True
    when the caller must print the insecure warning.
    """
    if is_loopback(host) or auth_mode == "jwks":
        return False
    if not insecure:
        raise ConfigError(
            f"refusing to listen on {host} in development auth mode, whose tokens anyone with "
            "the data dir can mint: use CAREGRAPH_AUTH_MODE=jwks with your authorization "
            "server, --http-host 127.0.0.1, or --insecure if you really mean it"
        )
    return True
