"""The sample configurations: env files a shell can source into valid ``Settings``, a
device script that only uses real CLI flags and protocols, and alert rules that only name
metrics caregraph serves."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from caregraph.cli import app
from caregraph.settings import Settings
from devices.serial import PROTOCOLS
from observability.metrics import Metrics
from tests.unit.deploy.files import DEPLOY, setting_names

ENV_FILES = [DEPLOY / "caregraph.env.example", DEPLOY / "hospital" / "riverside.env"]


def sourced(path: Path) -> dict[str, str]:
    """What ``set -a; . FILE`` exports, read back from a real shell."""
    script = f"set -a; . {shlex.quote(str(path))}; env -0"
    out = subprocess.run(
        ["bash", "-c", script], env={}, check=True, capture_output=True, text=True
    ).stdout
    pairs = (entry.split("=", 1) for entry in out.split("\0") if "=" in entry)
    return {k: v for k, v in pairs if k.startswith("CAREGRAPH_")}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_sources_into_valid_settings(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = sourced(path)
    assert len(env) >= 8
    assert set(env) <= setting_names(), set(env) - setting_names()
    for key in list(setting_names()):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka_bootstrap and settings.database_url
    assert settings.database_url.startswith("postgresql://")


def test_the_hospital_sample_parses_its_allowlists(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in sourced(DEPLOY / "hospital" / "riverside.env").items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.dicom_allowed_callers is not None
    assert settings.dicom_allowed_callers["RIV_PACS"].hosts == ["10.20.0.40"]
    assert settings.hl7_allowed_facilities == ("RIV_HIS", "RIV_LIS", "RIV_PCD")
    assert settings.auth_mode == "jwks"


def test_device_script_uses_real_flags_and_protocols() -> None:
    script = (DEPLOY / "hospital" / "devices.sh").read_text()
    subprocess.run(["sh", "-n", "-c", script], check=True)
    # typer's groups are click-like (newer typer ships its own click): read them as such
    group: Any = typer.main.get_command(app)
    add = group.commands["device"].commands["add"]
    flags = {opt for p in add.params for opt in p.opts}
    assert "--protocol" in flags and "--location" in flags
    commands = [
        shlex.split(c)
        for c in script.replace("\\\n", " ").splitlines()
        if c.startswith("caregraph ")
    ]
    assert len(commands) >= 5
    for words in commands:
        assert words[1:3] == ["device", "add"], words
        used = {w for w in words if w.startswith("--")}
        assert used <= flags, used - flags
        assert words[words.index("--protocol") + 1] in PROTOCOLS


def test_alert_rules_name_only_metrics_caregraph_serves() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "caregraph-rules.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(exprs) >= 6
    metrics = Metrics()
    # one sample of each labelled family, so every series name appears in the exposition
    metrics.record_deadletter("raw.hl7v2", "x")
    metrics.record_unmatched_code("loinc")
    metrics.observe_ack("mllp", 0.01)
    metrics.observe_db_write("upsert", 0.01)
    metrics.watch_silent_devices(lambda: 0)
    metrics.watch_listener("mllp", _NoTraffic())
    served = set(re.findall(r"^(caregraph_\w+)", metrics.render().decode(), re.MULTILINE))
    served |= {"caregraph_consumer_lag"}  # a family with no sample until a source reports
    for expr in exprs:
        for name in re.findall(r"caregraph_\w+", expr):
            assert name in served, f"{name} in {expr!r} is not served"


class _NoTraffic:
    connections = frames = accepted = duplicates = errors = rejected = publish_failures = held = 0
