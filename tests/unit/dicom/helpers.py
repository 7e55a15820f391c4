"""Shared helpers for the DICOM unit tests: bundled files as DICOM JSON, FHIR validation."""

from __future__ import annotations

from typing import Any

import pydicom
from fhir.resources.R4B import get_fhir_model_class
from pydicom.data import get_testdata_file
from pynetdicom.dsutils import encode

from adapters.dicom.dataset import header_json
from adapters.dicom.raw import RawInstance

# pydicom's bundled files (shipped in the wheel, no download) that the tests map.
BUNDLED = (
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "image_dfl.dcm",
)


def bundled_path(name: str) -> str:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not bundled with this pydicom"
    return str(path)


def bundled_header(name: str, sha256: str = "0" * 64) -> dict[str, Any]:
    ds = pydicom.dcmread(bundled_path(name), stop_before_pixels=True)
    return header_json(ds, sha256)


def raw_instance(ds: pydicom.Dataset, sha256: str = "0" * 64) -> RawInstance:
    """A raw.dicom message body for a data set, as the gateway would publish it."""
    header = pydicom.Dataset(ds)
    for tag in (0x7FE00008, 0x7FE00009, 0x7FE00010):
        if tag in header:
            del header[tag]
    encoded = encode(header, False, True)
    assert encoded is not None
    return RawInstance(
        sha256=sha256,
        size=100,
        transfer_syntax="1.2.840.10008.1.2.1",
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        calling_ae="MODALITY",
        called_ae="CAREGRAPH",
        peer_host="127.0.0.1",
        header_syntax="1.2.840.10008.1.2.1",
        header=encoded,
    )


def validate(resource: dict[str, Any]) -> None:
    """Raises unless ``resource`` is valid FHIR R4 (fhir.resources R4B models)."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)


def element(vr: str, *values: Any) -> dict[str, Any]:
    """A DICOM JSON element."""
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}
