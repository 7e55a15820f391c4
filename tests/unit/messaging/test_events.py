from __future__ import annotations

import pytest

from fhir_store.errors import ResourceNotFound
from fhir_store.store import FhirStore
from linkage.mpi import Mpi
from linkage.survivorship import GOLDEN_TAG
from messaging.envelope import parse
from messaging.errors import InvalidContent, MessageRefused, UnsupportedEvent
from messaging.events import MessageProcessor
from messaging.identity import local_id

from .conftest import HOSPITAL_PATIENT
from .messages import (
    DEVICE,
    LINK,
    OBSERVATIONS,
    PARTNER,
    UNLINK,
    device,
    message,
    patient,
    transfer,
)


def anything(resource_type: str) -> bool:
    return True


def test_a_transfer_stores_everything_and_links_the_patient_to_the_hospitals_record(
    store: FhirStore, mpi: Mpi
) -> None:
    done = MessageProcessor(store, mpi).process(parse(transfer("m1")), anything, "partner:b")
    pid = local_id(PARTNER, "Patient", "p1")
    assert len(done.stored) == 4
    assert f"Patient/{pid}" in done.stored
    stored = store.read("Patient", pid).resource()
    assert stored["meta"]["source"] == PARTNER
    encounter = store.read("Encounter", local_id(PARTNER, "Encounter", "e1")).resource()
    assert encounter["subject"]["reference"] == f"Patient/{pid}"
    hospital_golden = mpi.golden_of(HOSPITAL_PATIENT).golden_id
    assert mpi.golden_of(pid).golden_id == hospital_golden
    assert done.goldens == {f"Patient/{pid}": hospital_golden}


def test_processing_again_changes_nothing(store: FhirStore, mpi: Mpi) -> None:
    processor = MessageProcessor(store, mpi)
    processor.process(parse(transfer("m1")), anything, "partner:b")
    pid = local_id(PARTNER, "Patient", "p1")
    version = store.read("Patient", pid).version
    processor.process(parse(transfer("m1")), anything, "partner:b")
    assert store.read("Patient", pid).version == version


def test_an_unknown_event_is_unsupported(store: FhirStore, mpi: Mpi) -> None:
    data = message("m1", ("http://hl7.org/fhir/message-events", "valueset-expand"), [])
    with pytest.raises(UnsupportedEvent, match="valueset-expand"):
        MessageProcessor(store, mpi).process(parse(data), anything, "partner:b")


def test_an_event_refuses_types_it_does_not_carry_and_needs_its_own(
    store: FhirStore, mpi: Mpi
) -> None:
    processor = MessageProcessor(store, mpi)
    stray = message(
        "m1",
        OBSERVATIONS,
        [
            device("d1"),
            {
                "resourceType": "Endpoint",
                "id": "x",
                "status": "active",
                "connectionType": {"code": "hl7-fhir-rest"},
                "payloadType": [{"text": "any"}],
                "address": "https://x.example",
            },
        ],
    )
    with pytest.raises(InvalidContent, match="Endpoint"):
        processor.process(parse(stray), anything, "partner:b")
    missing = message("m2", DEVICE, [patient("p1", "A", "B", "1970-01-01", "1")])
    with pytest.raises(InvalidContent, match="needs a Device"):
        processor.process(parse(missing), anything, "partner:b")


def test_a_partner_without_write_scope_for_a_type_stores_nothing(
    store: FhirStore, mpi: Mpi
) -> None:
    processor = MessageProcessor(store, mpi)
    with pytest.raises(MessageRefused, match="Observation"):
        processor.process(parse(transfer("m1")), lambda t: t != "Observation", "partner:b")
    with pytest.raises(ResourceNotFound):
        store.read("Patient", local_id(PARTNER, "Patient", "p1"))


def test_a_device_notice_stores_the_device(store: FhirStore, mpi: Mpi) -> None:
    done = MessageProcessor(store, mpi).process(
        parse(message("m1", DEVICE, [device("d1")])), anything, "partner:b"
    )
    assert done.stored == (f"Device/{local_id(PARTNER, 'Device', 'd1')}",)
    assert (
        store.read("Device", local_id(PARTNER, "Device", "d1")).resource()["serialNumber"] == "SN-1"
    )


def test_patient_link_and_unlink_go_through_the_mpi(store: FhirStore, mpi: Mpi) -> None:
    processor = MessageProcessor(store, mpi)
    one = patient("p1", "Andersen", "Anna", "1970-01-01", "B-77")
    other = patient("p9", "Zimmer", "Zoe", "1999-09-09", "B-99")
    focus = ["Patient/p1", "Patient/p9"]
    done = processor.process(
        parse(message("m1", LINK, [one, other], focus=focus)), anything, "partner:b"
    )
    p1, p9 = (local_id(PARTNER, "Patient", p) for p in ("p1", "p9"))
    hospital_golden = mpi.golden_of(HOSPITAL_PATIENT).golden_id
    assert mpi.golden_of(p9).golden_id == hospital_golden
    assert done.linked == (f"Patient/{p1}", f"Patient/{p9}")
    assert mpi.history(source_id=p9)[-1].actor == "partner:b"

    processor.process(parse(message("m2", UNLINK, [], focus=focus)), anything, "partner:b")
    assert mpi.golden_of(p9).golden_id != hospital_golden
    assert mpi.golden_of(p1).golden_id == hospital_golden


def test_linking_patients_the_index_never_saw_is_invalid(store: FhirStore, mpi: Mpi) -> None:
    data = message("m1", LINK, [], focus=["Patient/nobody", "Patient/none"])
    with pytest.raises(InvalidContent, match="patient-link"):
        MessageProcessor(store, mpi).process(parse(data), anything, "partner:b")


def test_a_partner_links_its_patient_to_a_hospital_record_named_by_absolute_url(
    store: FhirStore, mpi: Mpi
) -> None:
    own_base = "https://a.example/fhir"
    other = patient("p9", "Zimmer", "Zoe", "1999-09-09", "B-99")
    focus = [f"{own_base}/Patient/{HOSPITAL_PATIENT}", "Patient/p9"]
    data = message("m1", LINK, [other], focus=focus)
    MessageProcessor(store, mpi).process(parse(data), anything, "partner:b", own_base)
    p9 = local_id(PARTNER, "Patient", "p9")
    assert mpi.golden_of(p9).golden_id == mpi.golden_of(HOSPITAL_PATIENT).golden_id


def test_another_caregraphs_golden_record_is_a_source_record_here(
    store: FhirStore, mpi: Mpi
) -> None:
    theirs = patient("g1", "Andersen", "Anna", "1970-01-01", "B-77")
    theirs["meta"] = {"tag": [dict(GOLDEN_TAG), {"system": "urn:x", "code": "keep"}]}
    data = message(
        "m1",
        LINK,
        [theirs, patient("p9", "Z", "Z", "1999-09-09", "9")],
        focus=["Patient/g1", "Patient/p9"],
    )
    MessageProcessor(store, mpi).process(parse(data), anything, "partner:b")
    gid = local_id(PARTNER, "Patient", "g1")
    assert store.read("Patient", gid).resource()["meta"]["tag"] == [
        {"system": "urn:x", "code": "keep"}
    ]
    assert mpi.golden_of(gid).golden_id == mpi.golden_of(HOSPITAL_PATIENT).golden_id
