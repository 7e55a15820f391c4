"""Shared helpers for the DICOM unit tests: bundled files as DICOM JSON, FHIR validation."""

from __future__ import annotations

from typing import Any

import pydicom
from fhir.resources.R4B import get_fhir_model_class
from pydicom.data import get_testdata_file

from adapters.dicom.dataset import header_json

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


def validate(resource: dict[str, Any]) -> None:
    """Raises unless ``resource`` is valid FHIR R4 (fhir.resources R4B models)."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)


def element(vr: str, *values: Any) -> dict[str, Any]:
    """A DICOM JSON element."""
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}
