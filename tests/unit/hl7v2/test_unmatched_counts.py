"""Unknown codes and units are counted into adapters.codes.unmatched by the normalizer
stage, once per message, per code system and kind; the gateway's own mapping does not."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.codes import unmatched
from adapters.hl7v2 import normalize
from adapters.hl7v2.intake import judge
from adapters.hl7v2.normalizer import records_for
from bus.base import Message
from tests.unit.hl7v2 import corpus

AT = datetime(2026, 1, 5, tzinfo=UTC)


def odd_message() -> bytes:
    # ORU_LAB has a 99LOC code with the unit zz/hh; one more LOINC code nobody knows
    return corpus.ORU_LAB.replace(b"LAB0001", b"UNM0099").replace(
        b"2951-2^Sodium^LN", b"88888-8^Unknown^LN"
    )


def moved(before: dict[tuple[str, str, str], int]) -> dict[tuple[str, str, str], int]:
    after = unmatched.TALLY.snapshot()
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def test_counts_per_system_and_kind() -> None:
    raw = odd_message()
    result = normalize(raw, received_at=AT)
    # LOINC codes outside caregraph's table, a local code system, a unit without one
    assert result.unmatched == {
        ("LN", "unknown_code"): 3,
        ("99LOC", "unknown_code"): 1,
        ("", "unknown_unit"): 1,
    }
    assert sum(result.unmatched.values()) == sum(result.counters.values())
    before = unmatched.TALLY.snapshot()
    assert judge(raw, received_at=AT).outcome == "AA"
    assert moved(before) == {}  # the gateway answered; nothing counted
    records, failures, _ = records_for([Message("raw.hl7v2", 0, 0, None, raw, {}, 0)])
    assert records and not failures
    assert moved(before) == {
        ("hl7v2", "LN", "unknown_code"): 3,
        ("hl7v2", "99LOC", "unknown_code"): 1,
        ("hl7v2", unmatched.NO_SYSTEM, "unknown_unit"): 1,
    }
