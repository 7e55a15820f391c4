"""Every parameter of every served type, with hostile values: a result or a 4xx, never a crash."""

from __future__ import annotations

import contextlib

import pytest

from fhir_store.errors import FhirError
from fhir_store.store import FhirStore
from tests.unit.fhir_store.samples import SAMPLES

pytestmark = pytest.mark.integration

VALUES = [
    "",
    "%",
    "'",
    "\\",
    "x|y|z",
    "$",
    "a$b$c",
    "ge",
    "2020-13-45",
    "ap2020",
    "1e999",
    "NaN",
    "Patient/",
    "a,,b",
    "é" * 300,
    "5||",
    "http://loinc.org|8867-4$gt",
]
MODIFIERS = [
    "",
    ":missing",
    ":exact",
    ":contains",
    ":not",
    ":text",
    ":identifier",
    ":of-type",
    ":Patient",
    ":below",
    ":above",
    ":bogus",
]


def test_no_parameter_value_or_modifier_crashes(store: FhirStore) -> None:
    store.upsert_many([dict(s) for s in SAMPLES])
    crashes = []
    for type_name in store.registry.types:
        for code in store.registry.for_type(type_name):
            for modifier in MODIFIERS:
                for value in VALUES:
                    try:
                        store.searching.search(type_name, [(code + modifier, value)])
                    except FhirError:
                        pass
                    except Exception as exc:  # any other error is the bug this test looks for
                        crashes.append(f"{type_name}?{code}{modifier}={value!r}: {exc!r}")
    assert not crashes, "\n".join(crashes[:20])


@pytest.mark.parametrize(
    "name",
    [
        "subject.",
        ".name",
        "subject:Patient.",
        "_has:",
        "_has:Observation",
        "_has:Observation:subject",
        "_has:Nope:subject:code",
        "patient.nonsense",
        "code.name",
        "_include",
        "_sort",
        "_elements",
        "_summary",
        "_total",
        "_count",
        "_snapshot",
        "_revinclude",
    ],
)
def test_odd_names_are_4xx_or_ignored(store: FhirStore, name: str) -> None:
    for value in ["", "x", "Observation:subject", "-", "1"]:
        with contextlib.suppress(FhirError):
            store.searching.search("Observation", [(name, value)])
