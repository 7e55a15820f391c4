import socket
from pathlib import Path

import pytest

from caregraph.errors import ConfigError
from caregraph.preflight import (
    ensure_loopback_unless_insecure,
    ensure_port_free,
    ensure_writable_dir,
)


def test_writable_dir_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert ensure_writable_dir(target) == target.resolve()
    assert target.is_dir()
    assert list(target.iterdir()) == []


def test_unwritable_dir_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(ConfigError, match="CAREGRAPH_DATA_DIR") as info:
        ensure_writable_dir(blocker / "sub")
    assert "not writable" in str(info.value)


def test_port_in_use_names_setting_and_flag() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError, match="CAREGRAPH_HTTP_PORT") as info:
            ensure_port_free("127.0.0.1", port, "CAREGRAPH_HTTP_PORT", "--http-port")
        assert "--http-port" in str(info.value)
        assert str(port) in str(info.value)


def test_free_port_passes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ensure_port_free("127.0.0.1", port, "X", "--x")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.5"])
def test_loopback_needs_no_flag(host: str) -> None:
    assert ensure_loopback_unless_insecure(host, insecure=False) is False


def test_public_address_refused_without_insecure() -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        ensure_loopback_unless_insecure("0.0.0.0", insecure=False)
    assert ensure_loopback_unless_insecure("0.0.0.0", insecure=True) is True
