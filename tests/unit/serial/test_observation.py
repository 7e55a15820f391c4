"""Measurement -> Observation: valid against the fhir.resources R4B models for generated
inputs, deterministic ids, sentinels never stored as numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from fhir.resources.R4B.observation import Observation
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.serial import codes
from adapters.serial.measurement import Measurement, Unit
from adapters.serial.observation import (
    MDC_SYSTEM,
    device_resource_id,
    observation_from_measurement,
)

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

units = st.sampled_from(
    [codes.MMHG, codes.PERCENT, codes.BEAT_PER_MIN, codes.MBAR, Unit("U/L", None, "U/L"), None]
)
decimals = st.decimals(min_value=-1000, max_value=100000, allow_nan=False, places=3)
zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])


@st.composite
def measurements(draw: st.DrawFn) -> Measurement:
    value = draw(st.one_of(st.none(), decimals))
    reason = (
        None
        if value is not None
        else draw(st.sampled_from(["positive-infinity", "negative-infinity", "error", "unknown"]))
    )
    device_time = draw(
        st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=zones
            ),
        )
    )
    return Measurement(
        device_id=draw(st.text("abcdef0123456789-", min_size=1, max_size=20)),
        protocol=draw(st.sampled_from(["astm", "intellivue", "datex", "medibus"])),
        vendor_code=draw(st.text("ABCDEF0123456789", min_size=1, max_size=6)),
        label=draw(st.text(min_size=1, max_size=20).filter(str.strip)),
        value=value,
        absent_reason=reason,
        unit=draw(units),
        device_time=device_time,
        received_at=RECEIVED,
        message_id=draw(st.text(min_size=1, max_size=30)),
        position=draw(st.integers(0, 500)),
        mdc_code=draw(st.one_of(st.none(), st.integers(1, 2**31))),
        loinc=draw(st.one_of(st.none(), st.sampled_from(["8867-4", "59408-5"]))),
        comparator=draw(st.sampled_from([None, "<", ">="])) if value is not None else None,
        status=draw(st.sampled_from(["final", "preliminary", "corrected"])),
        category=draw(st.sampled_from(["vital-signs", "laboratory"])),
        specimen_id=draw(st.one_of(st.none(), st.just("SPEC1"))),
    )


@settings(max_examples=150, deadline=None)
@given(measurements())
def test_observation_is_valid_r4(m: Measurement) -> None:
    obs = observation_from_measurement(m)
    model = Observation.model_validate(obs)
    assert model.id == obs["id"]
    assert ("valueQuantity" in obs) != ("dataAbsentReason" in obs)
    if m.value is None:
        assert "valueQuantity" not in obs
    else:
        assert Decimal(str(obs["valueQuantity"]["value"])) == m.value


def _m(**kw: object) -> Measurement:
    base: dict[str, object] = dict(
        device_id="mon-1",
        protocol="intellivue",
        vendor_code="0x4182",
        label="Heart rate",
        value=Decimal("72"),
        absent_reason=None,
        unit=codes.BEAT_PER_MIN,
        device_time=datetime(2026, 3, 1, 11, 59, 58, tzinfo=UTC),
        received_at=RECEIVED,
        message_id="mon-1/abc/1",
        position=0,
        mdc_code=codes.HEART_RATE.mdc,
        loinc="8867-4",
    )
    base.update(kw)
    return Measurement(**base)  # type: ignore[arg-type]


def test_ids_are_deterministic_and_positional() -> None:
    a, b = observation_from_measurement(_m()), observation_from_measurement(_m())
    assert a["id"] == b["id"]
    assert observation_from_measurement(_m(position=1))["id"] != a["id"]
    assert a["device"]["reference"] == f"Device/{device_resource_id('mon-1')}"


def test_effective_is_device_time_issued_is_receipt() -> None:
    obs = observation_from_measurement(_m())
    assert obs["effectiveDateTime"] == "2026-03-01T11:59:58.000Z"
    assert obs["issued"] == "2026-03-01T12:00:00.000Z"
    assert obs["code"]["coding"][0] == {
        "system": MDC_SYSTEM,
        "code": "147842",
        "display": "Heart rate",
    }
    assert obs["valueQuantity"] == {
        "value": 72.0,
        "unit": "bpm",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }


def test_absent_value_has_reason_not_number() -> None:
    obs = observation_from_measurement(_m(value=None, absent_reason="positive-infinity"))
    assert "valueQuantity" not in obs
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "positive-infinity"


def test_measurement_rejects_value_and_reason_together() -> None:
    import pytest

    with pytest.raises(ValueError):
        _m(absent_reason="error")
    with pytest.raises(ValueError):
        _m(value=None)
    with pytest.raises(ValueError):
        _m(received_at=datetime(2026, 1, 1))
