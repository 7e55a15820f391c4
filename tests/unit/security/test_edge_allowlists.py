"""DICOM calling-AE and HL7 sending-facility allowlists, from settings; TLS contexts."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from caregraph.errors import ConfigError
from caregraph.settings import Settings
from devices.dicom.access import caller_policy
from security.allowlists import facility_allowlist
from security.tls import server_context
from tests.support.certs import self_signed


def test_dicom_callers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CAREGRAPH_DICOM_ALLOWED_CALLERS",
        '{"CT1": {"hosts": ["10.0.0.5"], "operations": ["store", "find"]}, "MR2": {}}',
    )
    policy = caller_policy(Settings().dicom_allowed_callers)
    assert policy.operations("CT1", "10.0.0.5") == {"echo", "store", "find"}
    assert policy.operations("CT1", "10.0.0.9") is None  # not from that host
    # defaults: any host, echo and store
    assert policy.operations("MR2", "192.168.1.1") == {"echo", "store"}
    assert policy.operations("XA3", "10.0.0.5") is None


def test_dicom_callers_in_the_compact_form_with_a_move_destination(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compact = "CT1@10.0.0.5:store;PACS@10.0.0.9/104:find,C-MOVE"
    monkeypatch.setenv("CAREGRAPH_DICOM_ALLOWED_CALLERS", compact)
    policy = caller_policy(Settings().dicom_allowed_callers)
    assert policy.operations("CT1", "10.0.0.5") == {"echo", "store"}
    assert policy.operations("PACS", "10.0.0.9") == {"echo", "find", "move"}
    assert policy.destination("PACS") == ("10.0.0.9", 104)
    assert policy.destination("CT1") is None  # no port: not a C-MOVE destination


def test_unknown_dicom_operations_are_refused_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREGRAPH_DICOM_ALLOWED_CALLERS", '{"CT1": {"operations": ["delete"]}}')
    with pytest.raises(ValueError, match="operations"):
        Settings()


def test_unset_allowlists_accept_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAREGRAPH_DICOM_ALLOWED_CALLERS", raising=False)
    monkeypatch.delenv("CAREGRAPH_HL7_ALLOWED_FACILITIES", raising=False)
    settings = Settings()
    assert settings.dicom_allowed_callers is None
    assert caller_policy(settings.dicom_allowed_callers).operations("ANY", "10.0.0.1") == {
        "echo",
        "store",
        "find",
        "get",
        "move",
    }
    assert facility_allowlist(settings.hl7_allowed_facilities) is None


def test_hl7_facilities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREGRAPH_HL7_ALLOWED_FACILITIES", "HIS, LAB")
    allowlist = facility_allowlist(Settings().hl7_allowed_facilities)
    assert allowlist is not None
    assert allowlist.allows("HIS")
    assert allowlist.allows("LAB^1.2.3^ISO")
    assert not allowlist.allows("RAD")
    assert not allowlist.allows("")


def test_tls_server_context(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = server_context(cert, key)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE
    mutual = server_context(cert, key, client_ca=cert)
    assert mutual.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ConfigError, match="CAREGRAPH_TLS_CERT_FILE"):
        server_context(tmp_path / "missing.pem", key)
