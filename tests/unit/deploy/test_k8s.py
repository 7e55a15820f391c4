"""deploy/k8s: valid against the Kubernetes schemas, one Deployment per role, probes, and
every reference (ConfigMap, Secret, HPA target, Service selector) points at something."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from caregraph.roles import AVAILABLE_ROLES
from caregraph.settings import ROLES
from tests.unit.deploy.files import K8S, k8s_objects, load_all, setting_names

# The oldest Kubernetes release these manifests are meant for (autoscaling/v2 is GA).
KUBERNETES = "1.29"
CONSUMER_ROLES = ("normalizer", "store-writer", "linkage")


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("obj", k8s_objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_every_object_is_valid_against_the_strict_kubernetes_schema(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_schema_check_catches_a_misspelt_probe() -> None:
    deployment = copy.deepcopy(by_kind("Deployment")["caregraph-api"])
    container(deployment)["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load_all(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk
    assert all(o["metadata"].get("namespace", "caregraph") == "caregraph" for o in k8s_objects())


def test_one_deployment_per_role_running_that_role() -> None:
    deployments = by_kind("Deployment")
    roles = {}
    for name, deployment in deployments.items():
        args = container(deployment)["args"]
        assert args[:2] == ["up", "--role"], name
        roles[args[2]] = name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == args[2]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
    assert sorted(roles) == sorted(ROLES) == sorted(AVAILABLE_ROLES)


def test_probes_are_on_healthz_and_readyz_of_the_http_port() -> None:
    (config,) = by_kind("ConfigMap").values()
    port = int(config["data"]["CAREGRAPH_HTTP_PORT"])
    for name, deployment in by_kind("Deployment").items():
        c = container(deployment)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["http"] == port, name
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name


def test_configuration_comes_from_the_configmap_and_secret_and_names_real_settings() -> None:
    configmaps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    known = setting_names()
    for name in configmaps:
        unknown = set(configmaps[name]["data"]) - known
        assert not unknown, f"ConfigMap {name}: {unknown} are not caregraph settings"
    assert set(secrets["caregraph-secrets"]["stringData"]) <= known
    for name, deployment in by_kind("Deployment").items():
        c = container(deployment)
        assert not c.get("env"), f"{name}: settings belong in the ConfigMap or Secret"
        for source in c["envFrom"]:
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps, name
            else:
                assert source["secretRef"]["name"] in secrets, name
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, name
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in by_kind("PersistentVolumeClaim"), name


def test_consumer_roles_autoscale_on_the_lag_caregraph_exports() -> None:
    deployments = by_kind("Deployment")
    targets = {}
    for name, hpa in by_kind("HorizontalPodAutoscaler").items():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, name
        targets[container(deployments[ref["name"]])["args"][2]] = hpa
        for metric in hpa["spec"]["metrics"]:
            assert metric["external"]["metric"]["name"] == "caregraph_consumer_lag"
        partitions = int(
            by_kind("ConfigMap")["caregraph-config"]["data"]["CAREGRAPH_KAFKA_PARTITIONS"]
        )
        assert hpa["spec"]["maxReplicas"] <= partitions, (
            f"{name}: idle replicas past the partitions"
        )
    assert sorted(targets) == sorted(CONSUMER_ROLES)


def test_services_for_api_mllp_and_dicom_select_their_deployment_and_port() -> None:
    deployments = {container(d)["args"][2]: d for d in by_kind("Deployment").values()}
    services = by_kind("Service")
    assert sorted(services) == ["caregraph-api", "caregraph-dicom", "caregraph-mllp"]
    for name, service in services.items():
        role = name.removeprefix("caregraph-")
        labels = deployments[role]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        ports = {p["name"] for p in container(deployments[role])["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, name


def test_manifests_are_yaml_files_only() -> None:
    assert all(p.suffix == ".yaml" for p in Path(K8S).iterdir())
