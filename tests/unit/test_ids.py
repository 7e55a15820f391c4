from adapters.ids import deterministic_id


def test_same_parts_same_id() -> None:
    assert deterministic_id("hl7", "MSG1", 3) == deterministic_id("hl7", "MSG1", "3")


def test_joining_is_unambiguous() -> None:
    assert deterministic_id("a|b", "c") != deterministic_id("a", "b|c")
    assert deterministic_id("ab", "c") != deterministic_id("a", "bc")


def test_is_a_valid_fhir_id() -> None:
    import re

    assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", deterministic_id("x"))
