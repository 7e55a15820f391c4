"""DeviceUseStatement mapping and the patient-at-device-time index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.deviceusestatement import DeviceUseStatement
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.registry.alerts import CLEARED, OPEN, silence_issue, silence_issue_id
from adapters.registry.associations import (
    AssociationIndex,
    Attachment,
    attachment_from_statement,
    ended,
    statement_resource,
)
from adapters.serial.observation import device_resource_id
from caregraph.errors import MappingError

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
DEV = f"Device/{device_resource_id('mon-1')}"
A = {"reference": "Patient/a", "display": "Ann"}
B = {"reference": "Patient/b"}


def h(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def test_statement_is_valid_r4_and_reads_back() -> None:
    s = statement_resource("mon-1", DEV, A, h(0), h(2), recorded=h(1))
    DeviceUseStatement.model_validate(s)
    assert s["status"] == "active"
    assert s["timingPeriod"] == {
        "start": "2026-11-25T08:00:00.000Z",
        "end": "2026-11-25T10:00:00.000Z",
    }
    a = attachment_from_statement(s, {DEV: "mon-1"})
    assert a == Attachment("mon-1", A, h(0), h(2), s["id"], "active")
    # The same attachment registered twice is one statement.
    assert statement_resource("mon-1", DEV, A, h(0), h(2), recorded=h(3))["id"] == s["id"]
    assert statement_resource("mon-1", DEV, A, h(0), h(2), recorded=h(3))["status"] == "completed"


def test_statement_refuses_an_empty_period() -> None:
    with pytest.raises(MappingError, match="before it starts"):
        statement_resource("mon-1", DEV, A, h(1), h(1), recorded=h(0))


def test_ended_closes_an_open_statement() -> None:
    s = statement_resource("mon-1", DEV, A, h(0), None, recorded=h(0))
    closed = ended({**s, "meta": {"versionId": "1"}}, h(3), recorded=h(4))
    DeviceUseStatement.model_validate(closed)
    assert closed["timingPeriod"]["end"] == "2026-11-25T11:00:00.000Z"
    assert closed["status"] == "completed"
    assert "meta" not in closed


def test_statements_that_do_not_count_and_by_identifier() -> None:
    s = statement_resource("mon-1", DEV, A, h(0), None, recorded=h(0))
    assert attachment_from_statement({**s, "status": "entered-in-error"}, {}) is None
    assert attachment_from_statement({**s, "status": "intended"}, {}) is None
    # A client may name the device only by its caregraph identifier.
    by_ident = {**s, "device": {"identifier": s["device"]["identifier"]}}
    assert attachment_from_statement(by_ident, {}).device_id == "mon-1"  # type: ignore[union-attr]
    with pytest.raises(MappingError, match="device"):
        attachment_from_statement({**s, "device": {"reference": "Device/unknown"}}, {})
    with pytest.raises(MappingError, match="timingPeriod"):
        attachment_from_statement({**s, "timingPeriod": {}}, {DEV: "mon-1"})


def test_index_resolves_at_device_time() -> None:
    index = AssociationIndex(
        [
            Attachment("mon-1", A, h(0), h(2), "1"),
            Attachment("mon-1", B, h(2), None, "2"),
            Attachment("mon-2", B, h(5), h(6), "3"),
        ]
    )
    assert index.subject_at("mon-1", h(-0.01)) is None
    assert index.subject_at("mon-1", h(0)) == A  # start inclusive
    assert index.subject_at("mon-1", h(1.99)) == A
    assert index.subject_at("mon-1", h(2)) == B  # end exclusive, next one starts
    assert index.subject_at("mon-1", h(100)) == B
    assert index.subject_at("mon-2", h(4)) is None
    assert index.subject_at("mon-2", h(5.5)) == B
    assert index.subject_at("mon-2", h(6)) is None
    assert index.subject_at("unknown", h(1)) is None
    assert len(index) == 3


def test_overlap_latest_start_wins_then_the_earlier_resumes() -> None:
    index = AssociationIndex(
        [Attachment("m", A, h(0), None, "open"), Attachment("m", B, h(2), h(3), "short")]
    )
    assert index.subject_at("m", h(1)) == A
    assert index.subject_at("m", h(2.5)) == B
    assert index.subject_at("m", h(3)) == A


periods = st.lists(
    st.tuples(st.integers(0, 100), st.one_of(st.none(), st.integers(1, 50))), max_size=8
)


@settings(max_examples=200, deadline=None)
@given(periods, st.integers(-5, 160))
def test_index_agrees_with_a_linear_scan(spans: list[tuple[int, int | None]], at: int) -> None:
    attachments = [
        Attachment(
            "m", {"reference": f"Patient/{i}"}, h(s), None if d is None else h(s + d), str(i)
        )
        for i, (s, d) in enumerate(spans)
    ]
    valid = [a for a in attachments if a.valid_at(h(at))]
    got = AssociationIndex(attachments).subject_at("m", h(at))
    if not valid:
        assert got is None
    else:
        latest = max(a.start for a in valid)
        assert got in [a.subject for a in valid if a.start == latest]


def test_silence_issue_raised_and_cleared() -> None:
    raised = silence_issue("mon-1", DEV, h(0), 30, detected=h(0.01))
    DetectedIssue.model_validate(raised)
    assert raised["status"] == OPEN
    assert raised["implicated"][0]["reference"] == DEV
    assert "end" not in raised["identifiedPeriod"]
    cleared = silence_issue("mon-1", DEV, h(0), 30, detected=h(0.5), cleared=h(0.5))
    DetectedIssue.model_validate(cleared)
    assert cleared["status"] == CLEARED
    assert cleared["identifiedPeriod"]["end"] == "2026-11-25T08:30:00.000Z"
    assert cleared["id"] == raised["id"] == silence_issue_id("mon-1", h(0))
    assert silence_issue_id("mon-1", h(1)) != raised["id"]
