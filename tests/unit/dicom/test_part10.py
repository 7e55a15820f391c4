from __future__ import annotations

from io import BytesIO

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom.dsutils import create_file_meta

from devices.dicom.part10 import file_header
from tests.unit.dicom.helpers import bundled_path


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "ts", "ae"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1", "MODALITY"),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2.3.45", "1.2.840.10008.1.2", "ODD"),
        ("1.2.840.10008.5.1.4.1.1.7", "9", "1.2.840.10008.1.2.4.91", ""),
    ],
)
def test_same_bytes_as_pydicom(sop_class: str, sop_instance: str, ts: str, ae: str) -> None:
    meta = create_file_meta(
        sop_class_uid=UID(sop_class), sop_instance_uid=UID(sop_instance), transfer_syntax=UID(ts)
    )
    if ae:
        meta.SourceApplicationEntityTitle = ae
    theirs = DicomBytesIO()
    write_file_meta_info(theirs, meta, enforce_standard=True)
    assert file_header(sop_class, sop_instance, ts, ae) == b"\0" * 128 + b"DICM" + theirs.getvalue()


def test_a_stored_file_reads_back() -> None:
    original = pydicom.dcmread(bundled_path("CT_small.dcm"))
    with open(bundled_path("CT_small.dcm"), "rb") as fh:
        raw = fh.read()
    data_set = raw[raw.index(b"\x08\x00\x05\x00") :]  # from (0008,0005) on
    header = file_header(original.SOPClassUID, original.SOPInstanceUID, "1.2.840.10008.1.2.1", "X")
    again = pydicom.dcmread(BytesIO(header + data_set))
    assert again.SOPInstanceUID == original.SOPInstanceUID
    assert again.file_meta.SourceApplicationEntityTitle == "X"
    assert again.PixelData == original.PixelData
