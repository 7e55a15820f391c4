"""A simulated imaging modality: sends DICOM instances with C-STORE, as a CT or MR would.

It re-labels pydicom's bundled test images for a given patient (PatientID with its
issuer, name, birth date) with fresh, deterministic UIDs, so a demo or test gets new
studies for the patients an HIS feed admitted, and the patient index can link them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE

SAMPLE_FILES = ("CT_small.dcm", "MR_small.dcm")


@dataclass(frozen=True)
class PatientLabel:
    patient_id: str
    issuer_oid: str
    family: str
    given: str
    birth_date: str
    sex: str


def relabel(sample: str, patient: PatientLabel, study_key: str) -> Dataset:
    """One bundled sample image as a new instance of ``patient``'s study ``study_key``."""
    path = get_testdata_file(sample)
    if path is None:  # pragma: no cover - pydicom always ships these
        raise FileNotFoundError(sample)
    ds = dcmread(path)
    entropy = [patient.issuer_oid, patient.patient_id, study_key, sample]
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = patient.issuer_oid
    ds.PatientName = f"{patient.family}^{patient.given}"
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*entropy[:3], "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*entropy, "series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[*entropy, "instance"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstitutionName = "General Hospital"
    return ds


def send(
    host: str, port: int, called_ae: str, datasets: Iterable[Dataset], *, calling_ae: str = "SIM_CT"
) -> Sequence[int]:
    """C-STORE each dataset over one association; returns the status of each.

    Raises:
        ConnectionError: the association was rejected, aborted or never established.
    """
    items = list(datasets)
    ae = AE(ae_title=calling_ae)
    for ds in items:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise ConnectionError(f"no association with {called_ae} at {host}:{port}")
    statuses: list[int] = []
    try:
        for ds in items:
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if "Status" in status else -1)
    finally:
        assoc.release()
    return statuses
