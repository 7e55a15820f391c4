from __future__ import annotations

from linkage.features import PatientFeatures, extract, normalize_date, normalize_name

from .factories import patient


def test_names_are_folded_to_ascii_letters() -> None:
    assert normalize_name("Zoë O'Brien-Smith") == "zoeobriensmith"
    assert normalize_name(None) == ""


def test_dates_keep_the_precision_given() -> None:
    assert normalize_date("1980-03-07") == "1980-03-07"
    assert normalize_date("1980-03") == "1980-03"
    assert normalize_date("1980-03-07T10:00:00Z") == "1980-03-07"
    assert normalize_date("not a date") == ""


def test_extract_reads_every_matched_field() -> None:
    p = patient(
        "José",
        "Müller",
        phone="+41 31 555 12 34",
        identifiers=[("urn:oid:1.2.3", "A-17"), ("urn:ssn", "756.1")],
    )
    p["telecom"].append({"system": "email", "value": " Jose@Example.ORG "})
    f = extract(p)
    assert (f.given, f.family) == ("jose", "muller")
    assert f.given_phonetic and f.family_phonetic
    assert f.birth_date == "1980-03-07"
    assert f.sex == "female"
    assert (f.address, f.city, f.postcode) == ("12 lake road", "bern", "3001")
    assert f.phone == "315551234"
    assert f.email == "jose@example.org"
    assert f.identifiers == ("urn:oid:1.2.3|A-17", "urn:ssn|756.1")
    assert not f.placeholder


def test_official_name_wins_over_others() -> None:
    p = patient()
    p["name"] = [
        {"use": "old", "family": "Old", "given": ["Ann"]},
        {"use": "usual", "family": "Nick", "given": ["Annie"]},
        {"use": "official", "family": "Meier", "given": ["Anna"]},
    ]
    assert extract(p).family == "meier"


def test_unknown_gender_is_missing_not_a_value() -> None:
    assert extract(patient(gender="unknown")).sex == ""


def test_placeholders_are_recognised() -> None:
    assert extract(patient("John", "Doe")).placeholder
    assert extract(patient(None, "Unknown")).placeholder
    assert extract(patient(None, None)).placeholder
    assert extract(patient("Baby", "Boy")).placeholder
    tagged = patient()
    tagged["meta"] = {"tag": [{"code": "placeholder"}]}
    assert extract(tagged).placeholder
    assert not extract(patient("Jane", "Doering")).placeholder
    assert not extract(patient("Anna", "Doe")).placeholder


def test_features_round_trip_through_json() -> None:
    f = extract(patient(identifiers=[("urn:a", "1")]))
    assert PatientFeatures.from_json(f.to_json()) == f
