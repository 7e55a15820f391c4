from __future__ import annotations

import struct
import zlib
from io import BytesIO

import pydicom
import pytest
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble

from devices.dicom.framing import IncompleteDataset, check_complete, scan
from tests.unit.dicom.helpers import BUNDLED, bundled_path


def dataset_bytes(name: str) -> tuple[bytes, str]:
    """The data set part of a bundled file (file meta stripped) and its transfer syntax."""
    with open(bundled_path(name), "rb") as fh:
        raw = fh.read()
    fp = BytesIO(raw)
    read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    return raw[fp.tell() :], str(meta.TransferSyntaxUID)


@pytest.mark.parametrize("name", BUNDLED)
def test_whole_bundled_files_pass(name: str) -> None:
    data, ts = dataset_bytes(name)
    check_complete(data, ts)


@pytest.mark.parametrize(
    ("name", "where"),
    [("MR_truncated.dcm", "(7FE0,0010)"), ("rtplan_truncated.dcm", "(300A,00B0)")],
)
def test_pydicoms_truncated_files_are_caught(name: str, where: str) -> None:
    data, ts = dataset_bytes(name)
    # pydicom itself reads this file without complaint: that is why the check exists.
    assert pydicom.dcmread(BytesIO(data), force=True) is not None
    with pytest.raises(IncompleteDataset, match=rf"{where[1:5]},{where[6:10]}"):
        check_complete(data, ts)


@pytest.mark.parametrize("cut", [1, 7, 100])
def test_any_cut_of_a_whole_file_is_caught(cut: int) -> None:
    data, ts = dataset_bytes("CT_small.dcm")
    with pytest.raises(IncompleteDataset):
        check_complete(data[:-cut], ts)


def test_encapsulated_pixel_data_needs_its_sequence_delimiter() -> None:
    data, ts = dataset_bytes("JPEG2000.dcm")
    assert data.endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    with pytest.raises(IncompleteDataset):
        check_complete(data[:-8], ts)


def test_deflated_stream_must_end_and_is_bounded() -> None:
    data, ts = dataset_bytes("image_dfl.dcm")
    with pytest.raises(IncompleteDataset, match="ends before"):
        check_complete(data[: len(data) // 2], ts)
    with pytest.raises(IncompleteDataset, match="beyond"):
        check_complete(data, ts, max_inflated=1000)
    bomb = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = bomb.compress(b"\0" * (8 << 20)) + bomb.flush()
    assert len(payload) < 20_000
    with pytest.raises(IncompleteDataset, match="beyond"):
        check_complete(payload, ts, max_inflated=1 << 20)


def test_nesting_depth_is_bounded() -> None:
    # (0008,1115) SQ undefined length, one undefined-length item, repeated 40 deep.
    opener = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
    opener += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    with pytest.raises(IncompleteDataset, match="deeper"):
        check_complete(opener * 40, "1.2.840.10008.1.2.1")


def test_stray_delimiter_is_refused() -> None:
    with pytest.raises(IncompleteDataset, match="unexpected delimiter"):
        check_complete(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0), "1.2.840.10008.1.2")


def test_scan_finds_the_header_end_and_the_values_asked_for() -> None:
    data, ts = dataset_bytes("CT_small.dcm")
    found = scan(data, ts, wanted=frozenset({0x00100020, 0x0020000D, 0x00400275}))
    assert found.syntax == ts
    assert data[found.header_end : found.header_end + 4] == b"\xe0\x7f\x10\x00"  # (7FE0,0010)
    assert found.values[0x00100020] == b"1CT1"
    assert found.values[0x0020000D].rstrip(b"\0").endswith(b".12322")
    assert 0x00400275 not in found.values  # asked for, not present
    header = pydicom.dcmread(BytesIO(data[: found.header_end]), force=True)
    assert "PixelData" not in header and header.PatientID == "1CT1"


def test_scan_inflates_deflated_data_sets() -> None:
    data, ts = dataset_bytes("image_dfl.dcm")
    found = scan(data, ts, wanted=frozenset({0x00080016}))
    assert found.syntax == "1.2.840.10008.1.2.1" and len(found.data) > len(data)
    assert found.values[0x00080016].rstrip(b"\0") == b"1.2.840.10008.5.1.4.1.1.7"


def test_scan_of_implicit_data_under_an_explicit_syntax() -> None:
    data, _ = dataset_bytes("rtplan.dcm")  # implicit VR little endian
    found = scan(data, "1.2.840.10008.1.2.1")
    assert found.syntax == "1.2.840.10008.1.2"


@pytest.mark.parametrize("name", BUNDLED)
def test_scan_takes_the_receive_buffer_as_is(name: str) -> None:
    data, ts = dataset_bytes(name)  # the upper layer hands over its bytearray, uncopied
    assert scan(bytearray(data), ts).values == scan(data, ts).values
    with pytest.raises(IncompleteDataset):
        check_complete(bytearray(data[:-9]), ts)


def test_a_long_header_loses_its_largest_elements_first() -> None:
    data, ts = dataset_bytes("CT_small.dcm")
    found = scan(data, ts)
    whole, none = found.header(1 << 20)
    assert none == [] and whole == data[: found.header_end]
    keep = frozenset({0x00080016, 0x00080018, 0x00100020, 0x0020000D, 0x0020000E})
    cut, omitted = found.header(3000, keep)
    assert len(cut) <= 3000 and omitted and not keep & set(omitted)
    sizes = {tag: end - start for tag, start, end in found.spans if tag not in keep}
    smallest_dropped = min(sizes[t] for t in omitted)
    assert all(size <= smallest_dropped for t, size in sizes.items() if t not in omitted)
    header = read_dataset(BytesIO(cut), False, True)
    assert header.PatientID == "1CT1" and header.SOPInstanceUID.endswith(".12322")
