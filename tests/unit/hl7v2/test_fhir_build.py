"""Property tests: whatever the builders are given (within their types), their output
validates against the fhir.resources R4B models, so the hot path need not validate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import fhir_build as fb
from tests.unit.hl7v2.fhir_valid import assert_valid

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(max_size=20)
codes = st.text(max_size=12)
ids = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)
systems = st.one_of(st.none(), st.sampled_from(["http://loinc.org", "urn:oid:1.2.3"]), text)
aware = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(1900, 1, 2),
    max_value=datetime(2099, 12, 30),
    timezones=st.builds(lambda h: timezone(timedelta(hours=h)), st.integers(-12, 14)),
)
decimals = st.decimals(
    allow_nan=False, allow_infinity=False, places=3, min_value=-1e9, max_value=1e9
)
refs = st.builds(fb.reference, st.sampled_from(["Patient", "Device", "Organization"]), ids)
codings = st.builds(fb.coding, systems, codes, st.one_of(st.none(), text))
concepts = st.builds(fb.codeable_concept, st.lists(codings, max_size=3), st.one_of(st.none(), text))
identifiers = st.builds(fb.identifier, systems, text)
names = st.builds(
    fb.human_name,
    family=st.one_of(st.none(), text),
    given=st.lists(text, max_size=3),
    prefix=st.lists(text, max_size=2),
    use=st.sampled_from([None, "official", "usual", "maiden"]),
)
addresses = st.builds(
    fb.address, lines=st.lists(text, max_size=2), city=text, postal_code=text, country=text
)
telecoms = st.builds(
    fb.contact_point,
    st.sampled_from(["phone", "email", "fax"]),
    text,
    st.sampled_from([None, "home", "work", "mobile"]),
)
quantities = st.builds(
    fb.quantity,
    st.one_of(st.none(), decimals),
    unit=st.one_of(st.none(), text),
    system=st.sampled_from([None, "http://unitsofmeasure.org"]),
    code=st.one_of(st.none(), codes),
    comparator=st.sampled_from([None, "<", ">="]),
)


def _nonempty(concept: dict[str, Any]) -> dict[str, Any]:
    return concept or {"text": "x"}


@SETTINGS
@given(
    rid=ids,
    identifiers=st.lists(identifiers, max_size=3),
    names=st.lists(names, max_size=2),
    gender=st.sampled_from([None, "male", "female", "other", "unknown"]),
    birth=st.one_of(st.none(), st.dates().map(lambda d: d.isoformat())),
    addresses=st.lists(addresses, max_size=2),
    telecom=st.lists(telecoms, max_size=2),
    org=st.one_of(st.none(), refs),
    deceased=st.one_of(st.none(), st.booleans(), aware.map(fb.fhir_datetime)),
)
def test_patient(rid: str, **kwargs: Any) -> None:
    assert_valid(
        fb.patient(
            rid,
            identifiers=kwargs["identifiers"],
            names=kwargs["names"],
            gender=kwargs["gender"],
            birth_date=kwargs["birth"],
            addresses=kwargs["addresses"],
            telecom=kwargs["telecom"],
            managing_organization=kwargs["org"],
            deceased=kwargs["deceased"],
            source="urn:caregraph:test",
        )
    )


@SETTINGS
@given(
    rid=ids,
    status=st.sampled_from(sorted(fb.ENCOUNTER_STATUSES)),
    cls=codings.filter(bool),
    subject=st.one_of(st.none(), refs),
    start=st.one_of(st.none(), aware),
    locations=st.lists(st.tuples(refs, st.sampled_from([None, "active", "completed"])), max_size=3),
    participants=st.lists(st.tuples(st.sampled_from(["ATND", "ADM"]), refs), max_size=3),
)
def test_encounter(rid: str, status: str, cls: Any, subject: Any, start: Any, **kw: Any) -> None:
    assert_valid(
        fb.encounter(
            rid,
            status=status,
            class_code=cls,
            subject=subject,
            period_=fb.period(start) or None,
            locations=kw["locations"],
            participants=kw["participants"],
        )
    )


@SETTINGS
@given(
    rid=ids,
    name=st.one_of(st.none(), text),
    kind=st.sampled_from([None, "wa", "ro", "bd", "si"]),
    part_of=st.one_of(st.none(), refs),
    identifiers=st.lists(identifiers, max_size=2),
)
def test_location_practitioner_organization(
    rid: str, name: Any, kind: Any, part_of: Any, identifiers: Any
) -> None:
    assert_valid(
        fb.location(rid, name=name, physical_type=kind, identifiers=identifiers, part_of=part_of)
    )
    assert_valid(fb.practitioner(rid, identifiers=identifiers, names=[fb.human_name(family=name)]))
    # org-1: a name or an identifier; whitespace alone is no FHIR string, so no name
    named = name if fb.fhir_string(name) is not None else "x"
    assert_valid(fb.organization(rid, name=named, identifiers=identifiers))
    if fb.fhir_string(name) is None and not identifiers:
        with pytest.raises(ValueError, match="needs a name or an identifier"):
            fb.organization(rid, name=name, identifiers=identifiers)


values = st.one_of(
    st.tuples(st.just("valueQuantity"), quantities),
    st.tuples(st.just("valueString"), text),
    st.tuples(st.just("valueCodeableConcept"), concepts),
    st.tuples(st.just("valueDateTime"), aware.map(fb.fhir_datetime)),
    st.tuples(st.just("valueInteger"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just("valueBoolean"), st.booleans()),
    st.tuples(
        st.just("valueRange"),
        st.builds(lambda a, b: {"low": fb.quantity(a), "high": fb.quantity(b)}, decimals, decimals),
    ),
    st.tuples(st.just("valueRange"), st.just({"low": {}, "high": fb.quantity(None)})),
    st.tuples(st.none(), st.none()),
)


@SETTINGS
@given(
    rid=ids,
    status=st.sampled_from(sorted(fb.OBSERVATION_STATUSES)),
    code=concepts.map(_nonempty),
    value=values,
    categories=st.lists(st.sampled_from(["vital-signs", "laboratory"]), max_size=2),
    subject=st.one_of(st.none(), refs),
    effective=st.one_of(st.none(), aware),
    issued=st.one_of(st.none(), aware),
    interpretation=st.lists(concepts, max_size=2),
    ranges=st.lists(
        st.builds(
            fb.reference_range,
            low=st.one_of(st.none(), quantities),
            text=st.one_of(st.none(), text),
        ),
        max_size=2,
    ),
    device=st.one_of(st.none(), refs),
    components=st.lists(
        st.builds(
            fb.observation_component, concepts.map(_nonempty), st.just("valueQuantity"), quantities
        ),
        max_size=2,
    ),
)
def test_observation(rid: str, status: str, code: Any, value: Any, **kw: Any) -> None:
    assert_valid(
        fb.observation(
            rid,
            status=status,
            code=code,
            value_key=value[0],
            value=value[1],
            categories=kw["categories"],
            subject=kw["subject"],
            effective=kw["effective"],
            issued=kw["issued"],
            interpretation=kw["interpretation"],
            reference_ranges=kw["ranges"],
            device=kw["device"],
            components=kw["components"],
            data_absent_reason="unknown",
        )
    )


@SETTINGS
@given(
    rid=ids,
    identifiers=st.lists(identifiers, max_size=2),
    kind=st.one_of(st.none(), concepts),
    parent=st.one_of(st.none(), refs),
    manufacturer=st.one_of(st.none(), text),
    serial=st.one_of(st.none(), text),
    dev_names=st.lists(
        st.tuples(text, st.sampled_from(["user-friendly-name", "model-name"])), max_size=2
    ),
    category=st.sampled_from(sorted(fb.METRIC_CATEGORIES)),
    unit=st.one_of(st.none(), concepts),
)
def test_device_and_metric(rid: str, **kw: Any) -> None:
    assert_valid(
        fb.device(
            rid,
            identifiers=kw["identifiers"],
            device_type=kw["kind"] or None,
            parent=kw["parent"],
            manufacturer=kw["manufacturer"],
            serial_number=kw["serial"],
            names=kw["dev_names"],
        )
    )
    assert_valid(
        fb.device_metric(
            rid,
            metric_type=_nonempty(kw["kind"] or {}),
            category=kw["category"],
            unit=kw["unit"] or None,
            source_device=kw["parent"],
            operational_status="on",
        )
    )


@SETTINGS
@given(
    rid=ids,
    targets=st.lists(refs, min_size=1, max_size=4),
    recorded=aware,
    occurred=st.one_of(st.none(), aware),
    agent=refs,
    value=text,
)
def test_provenance(
    rid: str, targets: Any, recorded: Any, occurred: Any, agent: Any, value: str
) -> None:
    assert_valid(
        fb.provenance(
            rid,
            targets=targets,
            recorded=recorded,
            occurred=occurred,
            agents=[("author", agent)],
            entities=[("source", {"identifier": fb.identifier("urn:x", value or "v")})],
        )
    )


def test_builders_refuse_what_fhir_forbids() -> None:
    with pytest.raises(ValueError):
        fb.fhir_id("has space")
    with pytest.raises(ValueError):
        fb.fhir_datetime(datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        fb.patient("p1", gender="yes")
    with pytest.raises(ValueError):
        fb.observation("o1", status="done", code={"text": "x"})
    with pytest.raises(ValueError):
        fb.organization("o1")
    with pytest.raises(ValueError):
        fb.quantity(Decimal("NaN"))
    assert fb.fhir_code("  a \t b ") == "a b"
    assert fb.fhir_uri("urn:x y") == "urn:x%20y"


def test_strings_keep_only_the_whitespace_fhir_allows() -> None:
    assert fb.fhir_string("\x0c") is None
    assert fb.fhir_string(" a\x0bb\u2028c\td\r\ne ") == "a b c\td\r\ne"


def test_observation_string_value_of_only_odd_whitespace_is_no_value() -> None:
    obs = fb.observation(
        "o1", status="final", code={"text": "x"}, value_key="valueString", value="\x0c"
    )
    assert "valueString" not in obs
    assert_valid(obs)
