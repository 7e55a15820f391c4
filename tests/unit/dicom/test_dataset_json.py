"""The fast DICOM JSON encoder against pydicom's own ``to_json_dict``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydicom
import pytest

from adapters.dicom.dataset import INLINE_BINARY_LIMIT, bulk_data_uri, header_json

SHA = "ab" * 32
TEST_FILES = Path(os.path.dirname(pydicom.__file__)) / "data" / "test_files"
# Files pydicom itself cannot turn into JSON (badVR.dcm) or that have no file meta.
SKIP = {"badVR.dcm", "no_meta.dcm", "rtstruct.dcm", "ExplVR_BigEndNoMeta.dcm"}
SKIP |= {"ExplVR_LitEndNoMeta.dcm"}
FILES = sorted(p.name for p in TEST_FILES.glob("*.dcm") if p.name not in SKIP)


def normalized(value: Any) -> Any:
    """Differences that are not differences: DICOM ignores leading/trailing spaces in most
    VRs (pydicom keeps some inside multi-values), PS3.18 F.2.5 writes an empty value of a
    multi-valued element as null (pydicom writes ''), and 2.0 is the JSON number 2."""
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def reference(name: str) -> dict[str, Any]:
    ds = pydicom.dcmread(TEST_FILES / name, stop_before_pixels=True)
    return ds.to_json_dict(
        bulk_data_threshold=INLINE_BINARY_LIMIT,
        bulk_data_element_handler=lambda _: bulk_data_uri(SHA),
    )


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns on odd values in its test files
@pytest.mark.parametrize("name", FILES)
def test_same_json_as_pydicom_for_standard_elements(name: str) -> None:
    ours = header_json(pydicom.dcmread(TEST_FILES / name, stop_before_pixels=True), SHA)
    theirs = reference(name)
    assert "7FE00010" not in ours
    public = {k for k in set(ours) | set(theirs) if int(k[:4], 16) % 2 == 0}
    # Private elements: pydicom may know a private VR from its private dictionary where
    # this encoder says UN; both keep the element.
    assert set(ours) == set(theirs)
    for key in sorted(public):
        assert normalized(ours[key]) == normalized(theirs[key]), key


def test_large_binaries_become_bulk_data_references() -> None:
    ds = pydicom.Dataset()
    ds.add_new(0x00420011, "OB", b"\x01" * 4000)  # Encapsulated Document
    ds.add_new(0x00189999, "OB", b"\x02" * 10)
    ours = header_json(ds, SHA)
    assert ours["00420011"] == {"vr": "OB", "BulkDataURI": bulk_data_uri(SHA)}
    assert ours["00189999"] == {"vr": "OB", "InlineBinary": "AgICAgICAgICAg=="}
