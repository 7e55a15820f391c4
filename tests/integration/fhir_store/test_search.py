"""Search semantics over the samples, on SQLite and PostgreSQL: one table of cases."""

from __future__ import annotations

import pytest

from fhir_store.errors import InvalidSearch
from fhir_store.store import FhirStore
from tests.unit.fhir_store.samples import SAMPLES

pytestmark = pytest.mark.integration

CASES: list[tuple[str, list[tuple[str, str]], list[str]]] = [
    # token: code, system|code, |code, system|, :not, :text, :of-type, boolean
    ("Observation", [("code", "8867-4")], ["obs1"]),
    (
        "Observation",
        [("code", "http://loinc.org|8867-4,http://loinc.org|72166-2")],
        ["obs1", "obs3"],
    ),
    ("Observation", [("code", "|8867-4")], []),
    ("Observation", [("code", "http://loinc.org|")], ["obs1", "obs2", "obs3"]),
    ("Observation", [("status:not", "final")], ["obs3"]),
    ("Observation", [("code:text", "smoking")], ["obs3"]),
    (
        "Patient",
        [("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|111")],
        ["pat1"],
    ),
    ("Patient", [("active", "true")], ["pat1"]),
    ("Patient", [("deceased", "true")], ["pat2"]),
    ("Patient", [("email", "a@x.ch")], ["pat1"]),
    ("Patient", [("phone", "a@x.ch")], []),
    # string: default prefix, accents, :exact, :contains
    ("Patient", [("family", "angst")], ["pat1"]),
    ("Patient", [("family:exact", "Ångström")], ["pat1"]),
    ("Patient", [("family:exact", "angström")], []),
    ("Patient", [("name:contains", "ari")], ["pat1"]),
    ("Patient", [("address-city", "bern")], ["pat1"]),
    ("Organization", [("name", "insel")], ["org1"]),
    # date: precision, prefixes, periods, choice types, timezones
    ("Patient", [("birthdate", "1970")], ["pat1"]),
    ("Patient", [("birthdate", "1985-06-01")], []),
    ("Patient", [("birthdate", "ap1985-06-01")], ["pat2"]),
    ("Patient", [("birthdate", "gt1980")], ["pat2"]),
    ("Patient", [("birthdate", "sa1970-03-04")], ["pat2"]),
    ("Patient", [("birthdate", "eb1971")], ["pat1"]),
    ("Patient", [("birthdate", "ne1970")], ["pat2"]),
    ("Patient", [("death-date", "2020-01-01T09:00:00Z")], ["pat2"]),
    ("Observation", [("date", "2024-01-02")], ["obs2"]),
    ("Observation", [("date", "ge2024-01-01T10:00:00Z"), ("date", "lt2024-01-02")], ["obs1"]),
    ("Observation", [("date", "le2023-12-31")], ["obs3"]),
    ("Encounter", [("date", "ge2030-01-01")], ["enc1"]),
    # reference: Type/id, id, :Type, :identifier, :missing, chains, _has
    ("Observation", [("subject", "Patient/pat2")], ["obs3"]),
    ("Observation", [("subject", "pat2")], ["obs3"]),
    ("Observation", [("subject:Patient", "pat1")], ["obs1", "obs2"]),
    ("Observation", [("encounter:missing", "true")], ["obs2", "obs3"]),
    ("Observation", [("encounter:missing", "false")], ["obs1"]),
    ("Observation", [("subject:Patient.name", "berger")], ["obs3"]),
    ("Observation", [("patient.organization.name", "insel")], ["obs1", "obs2"]),
    ("Patient", [("_has:Observation:patient:code", "72166-2")], ["pat2"]),
    ("Device", [("_has:Provenance:agent:_has:AuditEvent:entity:type", "110100")], []),
    ("Patient", [("general-practitioner:Practitioner.identifier", "urn:gln|76010")], ["pat1"]),
    ("Encounter", [("participant:identifier", "urn:gln|999")], ["enc1"]),
    ("Encounter", [("participant:identifier", "urn:gln|76010")], []),
    ("Encounter", [("practitioner", "prac1")], ["enc1"]),
    # quantity and number-like, composites
    ("Observation", [("value-quantity", "72")], ["obs1"]),
    ("Observation", [("value-quantity", "ge70|http://unitsofmeasure.org|/min")], ["obs1"]),
    ("Observation", [("value-quantity", "72||mmHg")], []),
    ("Observation", [("component-value-quantity", "gt100")], ["obs2"]),
    ("Encounter", [("length", "3|http://unitsofmeasure.org|d")], ["enc1"]),
    ("Observation", [("component-code-value-quantity", "http://loinc.org|8462-4$lt90")], ["obs2"]),
    ("Observation", [("component-code-value-quantity", "http://loinc.org|8480-6$lt90")], []),
    ("Observation", [("code-value-concept", "72166-2$http://snomed.info/sct|8517006")], ["obs3"]),
    ("Observation", [("combo-code", "8480-6")], ["obs2"]),
    # uri, common parameters
    ("Device", [("url", "http://devices.example.org/mx450")], ["dev1"]),
    ("Device", [("url:below", "http://devices.example.org")], ["dev1"]),
    ("Patient", [("_tag", "urn:t|demo")], ["pat1"]),
    ("Patient", [("_profile", "http://example.org/StructureDefinition/p")], ["pat1"]),
    ("Patient", [("_id", "pat2,nope")], ["pat2"]),
    ("Patient", [("_lastUpdated", "ge2000-01-01")], ["pat1", "pat2"]),
    ("Patient", [("_lastUpdated", "lt2000-01-01")], []),
    # other types
    ("ImagingStudy", [("modality", "CT"), ("instance", "1.2.3.4.5")], ["img1"]),
    ("ImagingStudy", [("dicom-class", "urn:oid:1.2.840.10008.5.1.4.1.1.2")], ["img1"]),
    ("MessageHeader", [("event", "urn:events|ORU"), ("focus", "Observation/obs1")], ["mh1"]),
    ("Provenance", [("patient", "Patient/pat1"), ("when", "2024-01-01")], ["prov1"]),
    ("AuditEvent", [("patient", "Patient/pat1"), ("entity", "Observation/obs1")], ["aud1"]),
    ("DeviceMetric", [("source", "Device/dev1"), ("category", "measurement")], ["met1"]),
    ("DeviceUseStatement", [("patient", "pat1")], ["dus1"]),
    ("Endpoint", [("connection-type", "dicom-wado-rs")], ["ep1"]),
    ("Location", [("organization", "Organization/org1"), ("name", "icu")], ["loc1"]),
    ("PractitionerRole", [("role", "doctor"), ("practitioner.name", "house")], ["role1"]),
    (
        "Device",
        [("manufacturer", "phil"), ("udi-di", "0884"), ("device-name", "intelli")],
        ["dev1"],
    ),
]


@pytest.fixture
def loaded(store: FhirStore) -> FhirStore:
    store.upsert_many([dict(s) for s in SAMPLES])
    return store


def test_search_cases(loaded: FhirStore) -> None:
    failures = []
    for type_name, params, expected in CASES:
        got = sorted(m.id for m in loaded.searching.search(type_name, params).matches)
        if got != sorted(expected):
            failures.append(f"{type_name}?{params}: got {got}, expected {expected}")
    assert not failures, "\n".join(failures)


def test_sort_on_several_keys_and_total(loaded: FhirStore) -> None:
    page = loaded.searching.search(
        "Observation", [("_sort", "status,-date"), ("_total", "accurate")]
    )
    assert [m.id for m in page.matches] == ["obs2", "obs1", "obs3"]
    assert page.total == 3
    none = loaded.searching.search("Observation", [("_total", "none"), ("_count", "1")])
    assert none.total is None and none.has_next


def test_revinclude_iterate_follows_references(loaded: FhirStore) -> None:
    page = loaded.searching.search(
        "Patient",
        [
            ("_id", "pat1"),
            ("_revinclude", "Observation:subject"),
            ("_include:iterate", "Observation:device"),
        ],
    )
    assert sorted(i.id for i in page.included) == ["dev1", "obs1", "obs2"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ([("birthdate", "yesterday")], "birthdate"),
        ([("family:below", "x")], "modifier"),
        ([("_sort", "nonsense")], "cannot sort"),
        ([("_count", "-1")], "_count"),
        ([("general-practitioner", "")], "empty"),
        ([("identifier", "a|b|c")], "more than one"),
        ([("_include", "Patient:name")], "not a reference"),
        ([("_has:Observation:code:status", "final")], "not a reference"),
    ],
)
def test_invalid_searches_are_refused(
    loaded: FhirStore, params: list[tuple[str, str]], needle: str
) -> None:
    with pytest.raises(InvalidSearch, match=needle):
        loaded.searching.search("Patient", params)


def test_unknown_parameters_strict_or_lenient(loaded: FhirStore) -> None:
    with pytest.raises(InvalidSearch, match="unknown"):
        loaded.searching.search("Patient", [("shoe-size", "9")], strict=True)
    page = loaded.searching.search("Patient", [("shoe-size", "9")])
    assert page.query.ignored == ["shoe-size"] and len(page.matches) == 2


def test_everything_is_the_patient_compartment(loaded: FhirStore) -> None:
    page = loaded.searching.everything("pat1", [])
    got = sorted(f"{m.type}/{m.id}" for m in page.matches)
    assert got == [
        "AuditEvent/aud1",
        "DeviceUseStatement/dus1",
        "Encounter/enc1",
        "ImagingStudy/img1",
        "Observation/obs1",
        "Observation/obs2",
        "Patient/pat1",
        "Provenance/prov1",
    ]
    assert page.total == 8
    typed = loaded.searching.everything("pat1", [("_type", "Observation,Encounter")])
    assert sorted(m.id for m in typed.matches) == ["enc1", "obs1", "obs2"]
    paged = loaded.searching.everything("pat1", [("_count", "3"), ("_offset", "6")])
    assert len(paged.matches) == 2 and not paged.has_next
    assert loaded.searching.everything("pat1", [("_since", "2999")]).total == 0


def test_id_and_last_updated_refuse_other_modifiers(loaded: FhirStore) -> None:
    with pytest.raises(InvalidSearch, match=":not"):
        loaded.searching.search("Patient", [("_id:not", "pat1")])
    assert len(loaded.searching.search("Patient", [("_lastUpdated:missing", "false")]).matches) == 2


def test_compound_index_answers_exactly_like_the_plain_path(
    loaded: FhirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fhir_store import combos

    extra = [
        {
            "resourceType": "Observation",
            "id": f"c{i}",
            "status": "final",
            "code": {
                "coding": [
                    {
                        "system": "http://loinc.org" if i % 3 else "urn:other",
                        "code": ["8867-4", "8310-5"][i % 2],
                    }
                ]
            },
            "subject": {"reference": f"Patient/pat{1 + i % 2}"},
            "effectiveDateTime": f"2024-02-{1 + i:02d}T12:00:00Z",
        }
        for i in range(12)
    ]
    loaded.upsert_many(extra)
    searches = [
        [("patient", p), ("code", c), ("date", d)]
        for p in ("Patient/pat1", "pat2", "Patient/nobody", "Group/pat1")
        for c in (
            "8867-4",
            "http://loinc.org|8867-4",
            "urn:other|8867-4,8310-5",
            "http://loinc.org|",
        )
        for d in ("ge2024-02-05", "lt2024-02-03", "2024-02", "ap2024-02-06", "eb2024-01-01")
    ]
    searches += [
        [
            ("patient", "pat1"),
            ("code", "8867-4"),
            ("date", "ge2024-02-01"),
            ("date", "le2024-02-09"),
            ("_sort", "-date"),
        ],
        [("patient", "pat1"), ("code", "8310-5"), ("code", "urn:other|8310-5"), ("date", "ge2024")],
    ]
    fast = [[m.id for m in loaded.searching.search("Observation", s).matches] for s in searches]
    monkeypatch.setattr(combos, "COMPOUNDS", ())
    plain = [[m.id for m in loaded.searching.search("Observation", s).matches] for s in searches]
    assert fast == plain
    assert sum(map(len, fast)) > 20  # the comparison is not between empty results


def test_compound_rows_are_written_and_replaced(loaded: FhirStore) -> None:
    query = loaded.searching.builder.build(
        "Observation", [("patient", "pat1"), ("code", "8867-4"), ("date", "2024-01-01")]
    )
    assert query.where[0].rank == -1 and "idx_compound" in query.where[0].text
    obs = loaded.read("Observation", "obs1").resource()
    obs["effectiveDateTime"] = "2025-05-05T00:00:00Z"
    loaded.update("Observation", "obs1", obs)
    assert [
        m.id
        for m in loaded.searching.search(
            "Observation", [("patient", "pat1"), ("code", "8867-4"), ("date", "2024-01-01")]
        ).matches
    ] == []
    assert [
        m.id
        for m in loaded.searching.search(
            "Observation", [("patient", "pat1"), ("code", "8867-4"), ("date", "2025-05")]
        ).matches
    ] == ["obs1"]
