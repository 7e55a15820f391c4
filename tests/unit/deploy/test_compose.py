"""deploy/compose.yaml: valid Compose, one service per caregraph role, real settings."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from caregraph.settings import ROLES
from tests.unit.deploy.files import COMPOSE, load_all, setting_names, yaml_files

# The Compose Specification's own schema (Apache-2.0), as vendored in check-jsonschema.
SCHEMA: dict[str, Any] = json.loads(
    files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = load_all(COMPOSE)
    return doc


def caregraph_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("caregraph:")
    }


def test_every_yaml_file_under_deploy_parses() -> None:
    paths = yaml_files()
    assert COMPOSE in paths and len(paths) >= 8
    for path in paths:
        assert load_all(path), f"{path} holds no document"


def test_compose_file_is_valid_against_the_compose_specification(
    compose: dict[str, Any],
) -> None:
    jsonschema.validate(compose, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_the_schema_check_catches_a_broken_service(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["healthcheck"]["intervall"] = "10s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.validate(broken, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_each_role_runs_as_its_own_service(compose: dict[str, Any]) -> None:
    services = caregraph_services(compose)
    roles = {}
    for name, svc in services.items():
        command = svc["command"]
        assert command[:2] == ["up", "--role"], name
        roles[command[2]] = name
    assert sorted(roles) == sorted(ROLES)
    assert {"kafka", "postgres"} <= set(compose["services"])


def test_kafka_runs_in_kraft_mode_and_every_role_waits_for_healthy_dependencies(
    compose: dict[str, Any],
) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert not any("ZOOKEEPER" in key for key in kafka["environment"])
    for name, svc in caregraph_services(compose).items():
        assert svc["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
        }, name
        probe = " ".join(svc["healthcheck"]["test"])
        port = svc["environment"]["CAREGRAPH_HTTP_PORT"]
        assert f"http://127.0.0.1:{port}/healthz" in probe, name


def test_every_caregraph_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = setting_names()
    for name, svc in caregraph_services(compose).items():
        env = svc["environment"]
        assert env, name
        unknown = [key for key in env if key not in known]
        assert not unknown, f"{name}: {unknown} are not caregraph settings"
        assert env["CAREGRAPH_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert "@postgres:5432/" in env["CAREGRAPH_DATABASE_URL"]


def test_gateways_publish_their_ports_and_keep_their_state(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["mllp"]["ports"] == ["2575:2575"]
    assert services["dicom"]["ports"] == ["11112:11112"]
    assert services["api"]["ports"] == ["8080:8080"]
    for name in ("mllp", "dicom"):
        (volume,) = services[name]["volumes"]
        assert volume.split(":")[0] in compose["volumes"]
