"""``raw.dicom`` ingestion from bytes: mutated headers of pydicom's bundled files (and of the
message around them) map to FHIR or raise ``MappingError``, nothing else, and in bounded
time. Seeded with the inputs that break DICOM readers: undefined and huge lengths, deep
sequence nesting, odd character sets and invalid bytes in text, huge and odd numbers."""

from __future__ import annotations

import dataclasses
import json
import struct
import warnings
from typing import Any

import pydicom
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from adapters.dicom.normalize import map_message
from adapters.dicom.raw import RawInstance
from bus.base import Message
from bus.topics import RAW_DICOM
from caregraph.errors import MappingError
from tests.fuzz.support import budget, mutated, time_limit
from tests.unit.dicom.helpers import bundled_path, raw_instance


def _base(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(bundled_path(name), stop_before_pixels=True)


def _odd(ds: pydicom.Dataset, **changes: Any) -> RawInstance:
    ds = pydicom.Dataset(ds)
    with warnings.catch_warnings():  # pydicom warns of the invalid values we want
        warnings.simplefilter("ignore")
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        return raw_instance(ds)


def _recharset(raw: RawInstance, charset: bytes) -> RawInstance:
    """An unknown character set, written into the bytes (pydicom will not encode one)."""
    assert raw.header.count(b"ISO_IR 100") == 1
    return dataclasses.replace(raw, header=raw.header.replace(b"ISO_IR 100", charset))


def _nested(depth: int) -> pydicom.Dataset:
    ds = _base("CT_small.dcm")
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = Sequence([inner])
    return ds


CT = _base("CT_small.dcm")
SEEDS = [
    raw_instance(CT),
    raw_instance(_base("MR_small.dcm")),
    raw_instance(_base("rtplan.dcm")),
    _odd(CT, PatientName="Ab^C\\D=E^F", SpecificCharacterSet="ISO_IR 192"),
    _recharset(_odd(CT, SpecificCharacterSet="ISO_IR 100"), b"ISO_IR 999"),
    _odd(CT, SeriesNumber="9" * 12, InstanceNumber="-2147483649"),
    _odd(CT, StudyDate="20241399", StudyTime="256161.9999999"),
    raw_instance(_nested(200)),
]
HEADERS = [s.header for s in SEEDS]
# Undefined length, a length past the end, a big-endian-looking tag, an SQ delimiter,
# invalid UTF-8, a huge decimal string.
INTERESTING = [
    b"\xff\xff\xff\xff",
    struct.pack("<HH2sHI", 0x0010, 0x0010, b"PN", 0, 0x7FFFFFF0)[:8],
    b"\x08\x00\x20\x00DA\x08\x00",
    b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
    b"\xfe\xff\x00\xe0\xff\xff\xff\xff",
    b"\xc3\x28\xff\xfe",
    b"9" * 300,
    b"SQ\x00\x00\xff\xff\xff\xff",
]


def _message(value: bytes) -> Message:
    return Message(RAW_DICOM, 0, 1, b"P1", value, {"message-id": "x"}, 0)


def _mapped(value: bytes) -> None:
    # pydicom warns of invalid values as it reads them; in production a warning is a log
    # line, not the exception the test configuration (filterwarnings = error) makes of it
    with time_limit(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mapped = map_message(_message(value))
        except MappingError as exc:
            event(f"MappingError: {str(exc)[:40]}")
            return
        event("mapped")
        for resource in mapped.all():
            json.dumps(resource)  # what the normalizer publishes


def _refused(value: bytes) -> None:
    """One known bad input: a ``MappingError`` (dead-lettered at once), in bounded time."""
    with time_limit(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MappingError):
            map_message(_message(value))


@budget(200)
@given(st.sampled_from(range(len(SEEDS))), mutated(HEADERS, INTERESTING))
@example(0, HEADERS[0][:7])  # truncated inside an element header
@example(0, HEADERS[0][: len(HEADERS[0]) // 2])
@example(0, HEADERS[0] + b"\x10\x00\x10\x00PN\xff\xff")
@example(7, HEADERS[7])
def test_mutated_headers_map_or_raise_mapping_error(which: int, header: bytes) -> None:
    raw = dataclasses.replace(SEEDS[which], header=header)
    _mapped(raw.encode())


ENVELOPES = [s.encode() for s in SEEDS[:2]]


@budget(100)
@given(mutated(ENVELOPES, [b'"', b"{", b"[" * 50, b"null", b"1e999", b"\\u0000", b"\xff"]))
@example(b"{}")
@example(b"[]")
@example(b'{"header": "!!!", "header_syntax": "1.2.840.10008.1.2.1"}')
@example(json.dumps({**json.loads(ENVELOPES[0]), "header_syntax": "1.2.3"}).encode())
@example(json.dumps({**json.loads(ENVELOPES[0]), "omitted": 5}).encode())
@example(json.dumps({**json.loads(ENVELOPES[0]), "sha256": ["x"]}).encode())
def test_mutated_messages_raise_only_mapping_error(value: bytes) -> None:
    _mapped(value)


ITEM_AT_TOP = b"\xfe\xff\x00\xe0\x00\x00\x00" + HEADERS[0][7:]


# Found by these harnesses: pydicom's NotImplementedError, OSError and json's RecursionError
# escaped as crashes before the mapping turned them into MappingError.
def test_an_item_tag_at_the_top_level_raises_mapping_error() -> None:
    _refused(dataclasses.replace(SEEDS[0], header=ITEM_AT_TOP).encode())


def test_a_header_cut_inside_a_nested_sequence_raises_mapping_error() -> None:
    _refused(dataclasses.replace(SEEDS[7], header=HEADERS[7][:7202]).encode())


def test_a_deeply_nested_message_raises_mapping_error() -> None:
    _refused(b"[" * 100_000)
