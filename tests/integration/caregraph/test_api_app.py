"""The api and store-writer roles as composed: the console's development sign-in, and a
device's raw frames recorded by the store-writer role and served under /devices."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.serial import headers as dh
from bus import RAW_DEVICE, fhir_topic
from bus.headers import make_headers
from caregraph import security_wiring
from caregraph.roles import build_api_app, build_services, console_sign_in
from caregraph.security_cli import mint_development_token
from caregraph.settings import Settings
from caregraph.wiring import open_context
from messaging.outbox import Outbox
from tests.support.asgi import AsgiClient

pytestmark = pytest.mark.integration


def test_signed_in_engineer_sees_the_frames_the_store_writer_role_recorded(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    ctx = open_context(settings)
    try:
        app = build_api_app(ctx, security_wiring.partners(settings), Outbox.open(ctx.db))
        client = AsgiClient(app)
        assert client.get("/devices/vent-1/frames").status_code == 401
        signed = client.post(
            "/app/sign-in/development",
            json={"subject": "biomed-engineer", "scope": "user/Device.cruds"},
        )
        assert signed.status_code == 200, signed.text
        auth = {"Authorization": f"Bearer {signed.json()['access_token']}"}

        [writer] = build_services(ctx, ["store-writer"])
        writer.start()
        try:
            headers = make_headers("serial/medibus", "vent-1/1/1", "application/octet-stream")
            headers[dh.DEVICE_ID] = "vent-1"
            headers[dh.PROTOCOL] = "medibus"
            ctx.bus.ensure_topics([RAW_DEVICE])
            ctx.bus.publish(RAW_DEVICE, b"\x01\x24\x0d", key=b"vent-1", headers=headers)
            deadline = time.monotonic() + 30
            frames: list[dict[str, object]] = []
            while not frames and time.monotonic() < deadline:
                got = client.get("/devices/vent-1/frames", headers=auth)
                assert got.status_code == 200, got.text
                frames = got.json()["frames"]
                time.sleep(0.2)
        finally:
            writer.stop()
        assert len(frames) == 1
    finally:
        ctx.close()


def test_the_console_offers_smart_sign_in_in_jwks_mode_and_says_what_is_missing() -> None:
    jwks = Settings(
        auth_mode="jwks",
        auth_jwks_issuer="https://idp.hospital.example",
        console_client_id="caregraph-console",
    )
    options = console_sign_in(jwks)
    assert options.mint is None
    assert options.smart is not None
    assert options.smart.missing == ["authorization_endpoint", "token_endpoint"]
    assert console_sign_in(Settings()).mint is not None
    # development mode served off loopback (--insecure): no token for whoever asks
    assert console_sign_in(Settings(http_host="0.0.0.0")).mint is None


def test_no_development_sign_in_off_loopback(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, http_host="0.0.0.0")
    ctx = open_context(settings)
    try:
        app = build_api_app(ctx, security_wiring.partners(settings), Outbox.open(ctx.db))
        asked = AsgiClient(app).post(
            "/app/sign-in/development", json={"subject": "x", "scope": "user/*.rs"}
        )
        assert asked.status_code == 401
    finally:
        ctx.close()


def test_golden_everything_through_the_composed_app_spans_linked_identities(
    tmp_path: Path,
) -> None:
    from tests.integration.linkage.test_everything import observation
    from tests.unit.linkage.factories import patient

    settings = Settings(data_dir=tmp_path)
    ctx = open_context(settings)
    try:
        a = patient(pid="a1", identifiers=[("urn:hosp:a", "A1")])
        b = patient(pid="b1", identifiers=[("urn:hosp:b", "B1")], phone="+41 31 555 01 01")
        for p in (a, b):
            ctx.store.update("Patient", p["id"], p)
        first, second = ctx.mpi.ingest(a), ctx.mpi.ingest(b)
        assert second.golden_id == first.golden_id and second.state == "MATCH"
        ctx.store.update("Observation", "oa", observation("oa", "a1"))
        ctx.store.update("Observation", "ob", observation("ob", "b1"))
        app = build_api_app(ctx, security_wiring.partners(settings), Outbox.open(ctx.db))
        token = mint_development_token(settings, "system/*.rs")
        got = AsgiClient(app, headers={"Authorization": f"Bearer {token}"}).get(
            f"/fhir/Patient/{first.golden_id}/$everything"
        )
        assert got.status_code == 200, got.text
        found = {e["resource"]["id"] for e in got.json().get("entry", [])}
        assert {"oa", "ob", "a1", "b1"} <= found
    finally:
        ctx.close()


def test_resources_written_over_rest_reach_the_linkage_role(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    ctx = open_context(settings)
    try:
        client = AsgiClient(
            build_api_app(ctx, security_wiring.partners(settings), Outbox.open(ctx.db))
        )
        signed = client.post(
            "/app/sign-in/development", json={"subject": "registrar", "scope": "user/*.cruds"}
        )
        auth = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        fhir = {**auth, "Content-Type": "application/fhir+json"}
        ann = {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.3.4", "value": "MRN-7"}],
            "name": [{"family": "Rest", "given": ["Ann"]}],
            "birthDate": "1970-01-01",
        }
        first = client.post("/fhir/Patient", json=ann, headers=fhir).json()["id"]
        # the same content again adds no version, and nothing is published for it
        assert (
            client.put(
                f"/fhir/Patient/{first}", json={**ann, "id": first}, headers=fhir
            ).status_code
            == 200
        )
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": ann, "request": {"method": "POST", "url": "Patient"}}],
        }
        posted = client.post("/fhir", json=bundle, headers=fhir).json()
        second = posted["entry"][0]["response"]["location"].split("/")[1]

        doctor = {
            "resourceType": "Practitioner",
            "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.6", "value": "NPI-42"}],
            "name": [{"family": "Visser", "given": ["Marta"]}],
        }
        staff = client.post("/fhir/Practitioner", json=doctor, headers=fhir).json()["id"]
        client.post("/fhir/Basic", json={"resourceType": "Basic"}, headers=fhir)  # not linked

        topics = [fhir_topic(t) for t in ("Patient", "Practitioner", "Basic")]
        with ctx.bus.subscribe("rest-test", topics) as consumer:
            sent = consumer.poll(2.0, 10)
        assert sorted((m.topic, m.key) for m in sent) == sorted(
            [
                (fhir_topic("Patient"), first.encode()),
                (fhir_topic("Patient"), second.encode()),
                (fhir_topic("Practitioner"), staff.encode()),
            ]
        )

        [linkage] = build_services(ctx, ["linkage"])
        linkage.start()
        try:
            deadline = time.monotonic() + 30
            links: dict[str, dict[str, object]] = {}
            identified = False
            while (len(links) < 2 or not identified) and time.monotonic() < deadline:
                for pid in (first, second):
                    got = client.get(f"/linkage/patients/{pid}", headers=auth)
                    if got.status_code == 200:
                        links[pid] = got.json()["link"]
                known = client.get(f"/linkage/identity/Practitioner/{staff}", headers=auth)
                identified = known.status_code == 200
                time.sleep(0.2)
        finally:
            linkage.stop()
        assert links[first]["golden_id"] == links[second]["golden_id"]
        assert links[second]["state"] == "MATCH"
        assert identified
    finally:
        ctx.close()
