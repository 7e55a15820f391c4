"""raw.dicom messages that pydicom or json cannot read become MappingError (a dead letter
at once), never another exception (retried as if the bus were down). Cases found by the
fuzz harness (tests/fuzz/test_dicom.py)."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from adapters.dicom.normalize import map_message
from adapters.dicom.raw import RawInstance
from bus.base import Message
from bus.topics import RAW_DICOM
from caregraph.errors import MappingError
from tests.unit.dicom.helpers import bundled_path, raw_instance


def message(value: bytes) -> Message:
    return Message(RAW_DICOM, 0, 1, b"P1", value, {"message-id": "x"}, 0)


def ct() -> pydicom.Dataset:
    return pydicom.dcmread(bundled_path("CT_small.dcm"), stop_before_pixels=True)


def nested(depth: int) -> pydicom.Dataset:
    ds = ct()
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = Sequence([inner])
    return ds


def refused(value: bytes) -> MappingError:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of what it reads; not the point here
        with pytest.raises(MappingError) as info:
            map_message(message(value))
    return info.value


def test_a_deeply_nested_value_is_not_json_for_us() -> None:
    assert "not JSON" in str(refused(b"[" * 100_000))
    with pytest.raises(MappingError):
        RawInstance.decode(b"[" * 100_000)


def test_an_item_tag_at_the_top_level() -> None:
    raw = raw_instance(ct())
    broken = dataclasses.replace(raw, header=b"\xfe\xff\x00\xe0\x00\x00\x00" + raw.header[7:])
    assert "DICOM JSON" in str(refused(broken.encode()))


def test_a_header_cut_inside_a_nested_sequence() -> None:
    raw = raw_instance(nested(200))
    refused(dataclasses.replace(raw, header=raw.header[:7202]).encode())


def test_a_header_that_is_not_ascii_is_not_base64() -> None:
    """base64 refuses non-ASCII text with a plain ValueError, not binascii.Error."""
    body = json.loads(raw_instance(ct()).encode())
    body["header"] = "\x80" + body["header"]
    assert "wrong fields" in str(refused(json.dumps(body).encode()))
