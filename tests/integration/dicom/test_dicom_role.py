"""``caregraph up --role dicom`` as deployed: the allowlist from the environment, in the
compact form, enforced per operation and per called AE title, checked with dcmtk."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import free_port, wait_for_port

pytestmark = pytest.mark.integration


@pytest.fixture
def dicom_role(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}
    env |= {
        "CAREGRAPH_DATA_DIR": str(tmp_path / "data"),
        "CAREGRAPH_DICOM_PORT": str(port),
        "CAREGRAPH_HTTP_PORT": str(free_port()),
        "CAREGRAPH_DICOM_ALLOWED_CALLERS": "STORER@127.0.0.1:store;VIEWER@127.0.0.1:find",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "caregraph.cli", "up", "--role", "dicom"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60)
        yield port
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
        assert "Traceback" not in out, out


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def _echo(port: int, calling: str, called: str = "CAREGRAPH") -> int:
    return _run("echoscu", "-aet", calling, "-aec", called, "127.0.0.1", str(port)).returncode


def _find(port: int, calling: str) -> subprocess.CompletedProcess[str]:
    return _run(
        "findscu", "-S", "-aet", calling, "-aec", "CAREGRAPH",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
        "127.0.0.1", str(port),
    )  # fmt: skip


def test_the_environment_allowlist_is_enforced(dicom_role: int) -> None:
    assert _echo(dicom_role, "STORER") == 0
    assert _echo(dicom_role, "STORER", called="NOT-US") != 0  # called AE title checked
    assert _echo(dicom_role, "STRANGER") != 0  # not allowlisted
    refused = _find(dicom_role, "STORER")  # may store, may not query
    assert refused.returncode != 0
    # dcmtk words it "No Acceptable Presentation Contexts" or "No accepted presentation
    # contexts", depending on where the refusal surfaces
    refusal = re.compile(r"(?i)no accept(able|ed) presentation contexts")
    assert refusal.search(refused.stderr), refused.stderr
    found = _find(dicom_role, "VIEWER")  # answered from the stored ImagingStudies: none yet
    assert found.returncode == 0, found.stderr
