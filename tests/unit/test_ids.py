from adapters.ids import deterministic_id


def test_same_parts_same_id() -> None:
    assert deterministic_id("hl7", "MSG1", 3) == deterministic_id("hl7", "MSG1", "3")


def test_joining_is_unambiguous() -> None:
    assert deterministic_id("a|b", "c") != deterministic_id("a", "b|c")
    assert deterministic_id("ab", "c") != deterministic_id("a", "bc")


def test_is_a_valid_fhir_id() -> None:
    import re

    assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", deterministic_id("x"))


def test_is_the_uuid5_of_the_joined_parts() -> None:
    """Ids are stored: the fast path must keep giving exactly uuid5's."""
    import uuid

    from adapters.ids import _NAMESPACE

    cases: list[tuple[str | int, ...]] = [
        (),
        ("",),
        ("Observation", "ACME", "MSG1", "OBX", 3),
        ("Device", "urn:oid:1.0.0", "0123456789ABCDEF", "1.2.3"),
        ("Patient", "Hôpital Saint-Éloi", "患者", "😀"),
        tuple(range(50)),
        ("x" * 10_000,),
        *((f"part{i}", i) for i in range(300)),  # every value of the variant digit
    ]
    for parts in cases:
        key = "".join(f"{len(s)}:{s};" for s in map(str, parts))
        assert deterministic_id(*parts) == str(uuid.uuid5(_NAMESPACE, key))


def test_ordered_ids_sort_by_time_and_stay_deterministic() -> None:
    import re
    from datetime import UTC, datetime, timedelta, timezone

    from adapters.ids import ordered_id

    t = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    a = ordered_id(t, "reading", "dev", 1)
    assert a == ordered_id(t.astimezone(timezone(timedelta(hours=8))), "reading", "dev", 1)
    assert a.startswith("20261126T010203456-")
    assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", a)
    assert a != ordered_id(t, "reading", "dev", 2)
    later = [ordered_id(t + timedelta(milliseconds=n), "reading", "x", n) for n in range(1, 50)]
    assert sorted([*later, a]) == [a, *later]
    assert ordered_id(datetime(5, 1, 1, tzinfo=UTC), "x").startswith("00050101T000000000-")
