"""``caregraph up --role api`` as deployed: HTTPS from settings, every route behind a token
minted by ``caregraph token``, the token endpoint open."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.certs import self_signed
from tests.support.services import free_port, wait_for_port

pytestmark = pytest.mark.integration

CAREGRAPH = [sys.executable, "-m", "caregraph.cli"]


@pytest.fixture
def https_api(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
    env |= {"CAREGRAPH_TLS_CERT_FILE": str(cert), "CAREGRAPH_TLS_KEY_FILE": str(key)}
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [*CAREGRAPH, "up", "--role", "api", "--data-dir", str(data), "--http-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=30)
        yield f"https://127.0.0.1:{port}", cert, env | {"CAREGRAPH_DATA_DIR": str(data)}
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=15)


def test_https_api_needs_a_token(https_api: tuple[str, Path, dict[str, str]]) -> None:
    base, cert, env = https_api
    verify = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=base, verify=verify, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/app/").status_code == 200  # the console's sign-in page: no data
        assert c.get("/app/vitals.json").status_code == 401
        refused = c.get("/fhir/Patient")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Bearer realm="caregraph"')
        minted = subprocess.run(
            [*CAREGRAPH, "token", "--scope", "user/*.rs"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        auth = {"Authorization": f"Bearer {minted.stdout.strip()}"}
        searched = c.get("/fhir/Patient", headers=auth)
        assert searched.status_code == 200, searched.text
        assert searched.json()["type"] == "searchset"
        for discovery in (
            "/.well-known/smart-configuration",
            "/fhir/.well-known/smart-configuration",
        ):
            assert c.get(discovery).json()["token_endpoint"] == f"{base}/auth/token"
    with pytest.raises(httpx.TransportError):
        httpx.get(base.replace("https", "http") + "/healthz", timeout=5)
