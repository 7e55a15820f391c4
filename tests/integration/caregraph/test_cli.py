"""The ``caregraph`` command as a user runs it: a real process, real ports, real services."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.services import free_port, wait_for_port

pytestmark = pytest.mark.integration

CAREGRAPH = [sys.executable, "-m", "caregraph.cli"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
    full_env.update(env or {})
    return subprocess.run(
        [*CAREGRAPH, *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("caregraph: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_version() -> None:
    result = run("version")
    assert result.returncode == 0
    assert result.stdout.strip()[0].isdigit()


def test_check_passes_on_embedded_defaults(tmp_path: Path) -> None:
    result = run("check", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert "database      ok" in result.stdout
    assert "bus           ok" in result.stdout


def test_check_passes_on_postgres_and_kafka(
    tmp_path: Path, postgres_url: str, kafka_bootstrap: str
) -> None:
    result = run(
        "check",
        "--data-dir",
        str(tmp_path),
        "--database-url",
        postgres_url,
        "--kafka-bootstrap",
        kafka_bootstrap,
    )
    assert result.returncode == 0, result.stderr
    assert kafka_bootstrap in result.stdout


def test_unreachable_kafka(tmp_path: Path) -> None:
    closed = free_port()
    result = run("check", "--data-dir", str(tmp_path), "--kafka-bootstrap", f"127.0.0.1:{closed}")
    assert_one_clear_line(result, f"127.0.0.1:{closed}", "CAREGRAPH_KAFKA_BOOTSTRAP")


def test_unreachable_postgres(tmp_path: Path) -> None:
    closed = free_port()
    url = f"postgresql://postgres@127.0.0.1:{closed}/nothing"
    result = run("check", "--data-dir", str(tmp_path), "--database-url", url)
    assert_one_clear_line(result, "CAREGRAPH_DATABASE_URL")


def test_bad_database_url(tmp_path: Path) -> None:
    result = run("check", "--data-dir", str(tmp_path), "--database-url", "mysql://x@y/z")
    assert_one_clear_line(result, "CAREGRAPH_DATABASE_URL")


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run("check", "--data-dir", str(blocker / "data"))
    assert_one_clear_line(result, "CAREGRAPH_DATA_DIR")


def test_bad_setting_value_from_environment(tmp_path: Path) -> None:
    result = run("check", env={"CAREGRAPH_HTTP_PORT": "not-a-port"})
    assert_one_clear_line(result, "CAREGRAPH_HTTP_PORT")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run("up", "--role", "api", "--data-dir", str(tmp_path), "--http-port", str(port))
    assert_one_clear_line(result, str(port), "--http-port")


def test_public_address_needs_insecure(tmp_path: Path) -> None:
    result = run("up", "--role", "api", "--data-dir", str(tmp_path), "--http-host", "0.0.0.0")
    assert_one_clear_line(result, "--insecure")


def test_unknown_role(tmp_path: Path) -> None:
    result = run("up", "--role", "frobnicator", "--data-dir", str(tmp_path))
    assert_one_clear_line(result, "frobnicator")


@pytest.fixture
def api_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
    proc = subprocess.Popen(
        [*CAREGRAPH, "up", "--role", "api", "--data-dir", str(tmp_path), "--http-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=30)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_up_serves_health_and_stops_on_sigterm(
    api_process: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = api_process
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok"}
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.returncode == 0
