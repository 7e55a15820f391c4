"""A received pydicom data set -> the DICOM JSON header that travels on ``raw.dicom``.

Pure (no I/O). Pixel data never travels: the gateway reads the header with
``stop_before_pixels``, and any other large binary element becomes a ``BulkDataURI`` naming
the stored file by its content hash, so the message stays small and the bytes retrievable.

Why not pydicom's ``Dataset.to_json_dict``: it converts every element into a validated
``DataElement`` first and costs about 5 ms for a typical CT header (260 elements), more than
everything else the gateway does per instance together. This encoder works on the raw
element bytes pydicom leaves unconverted after reading (``Dataset.elements()``) and
produces the same DICOM JSON (``tests/unit/dicom/test_dataset_json.py`` compares the two
over pydicom's bundled files) in a fraction of the time.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from caregraph.errors import MappingError

# Binary values up to this many base64 characters travel inline (PS3.18 F.2.7 allows
# either form); larger ones are referenced.
INLINE_BINARY_LIMIT = 1024
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})
# Text VRs whose bytes follow Specific Character Set (PS3.5 6.1.2.3); the rest are ASCII.
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "PN", "LT", "UC", "UT"})
_TEXT = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)


def bulk_data_uri(sha256: str) -> str:
    """Where the binary values of a stored instance can be read: its content address."""
    return f"urn:caregraph:dicom:sha256:{sha256}"


def header_json(ds: Dataset, sha256: str) -> dict[str, Any]:
    """The data set as DICOM JSON without pixel data; large binaries become BulkDataURIs.

    Raises ``MappingError`` when an element cannot be encoded (a value that does not fit
    its VR) or read (pydicom parses sequences as they are accessed: a header cut inside
    one raises ``OSError``, an item tag at the top level ``NotImplementedError``); the
    caller treats that as data it cannot understand.
    """
    try:
        return _Encoder(bulk_data_uri(sha256)).dataset(ds, _encodings(ds, None), top=True)
    except (
        ValueError,
        TypeError,
        KeyError,
        LookupError,
        struct.error,
        NotImplementedError,
        OSError,
        RecursionError,
    ) as exc:
        raise MappingError(f"cannot encode the header as DICOM JSON: {exc}") from exc


def _encodings(ds: Dataset, inherited: list[str] | None) -> list[str]:
    """The Python codecs of a data set's Specific Character Set (items inherit it)."""
    element = ds.get_item(0x00080005)
    if element is None:
        return inherited if inherited is not None else convert_encodings(None)
    value = element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip(" \0").split("\\")
    return convert_encodings(value or None)


def _vr(element: DataElement | RawDataElement, ds: Dataset) -> str:
    vr = element.VR
    if vr is None or vr == "UN":  # implicit VR, or explicit UN for a tag the dictionary knows
        try:
            vr = dictionary_VR(element.tag)
        except KeyError:
            return "UN"
    if " or " not in vr:
        return str(vr)
    # Ambiguous VRs (PS3.6): resolved from the data set as pydicom does for the usual cases.
    if vr in ("US or SS", "US or SS or OW"):
        return "SS" if ds.get("PixelRepresentation", 0) == 1 else "US"
    if vr == "OB or OW":
        return "OW" if (ds.get("BitsAllocated") or 8) > 8 else "OB"
    if vr == "US or OW":
        return "US"
    return "UN"


class _Encoder:
    def __init__(self, uri: str) -> None:
        self.uri = uri

    def dataset(self, ds: Dataset, encodings: list[str], *, top: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for element in ds.elements():
            tag = int(element.tag)
            if top and tag in _PIXEL_TAGS:
                continue  # nested pixel data (icons) is small and travels as a reference
            out[f"{tag:08X}"] = self.element(element, ds, encodings)
        return out

    def element(
        self, element: DataElement | RawDataElement, ds: Dataset, encodings: list[str]
    ) -> dict[str, Any]:
        vr = _vr(element, ds)
        if vr == "SQ":
            # Sequences stay raw bytes until converted; converting one parses its items.
            items = ds[element.tag].value or []
            return {
                "vr": "SQ",
                "Value": [self.dataset(item, _encodings(item, encodings)) for item in items],
            }
        if isinstance(element, DataElement):
            # Already converted by someone who read it (e.g. SpecificCharacterSet).
            return element.to_json_dict(lambda _: self.uri, INLINE_BINARY_LIMIT)
        raw: bytes | None = element.value
        out: dict[str, Any] = {"vr": vr}
        if not raw:
            return out
        little = element.is_little_endian
        if vr in _BINARY:
            if len(raw) > (INLINE_BINARY_LIMIT // 4) * 3:
                out["BulkDataURI"] = self.uri
            else:
                out["InlineBinary"] = base64.b64encode(raw).decode("ascii")
            return out
        if vr in _NUMBERS:
            fmt = _NUMBERS[vr]
            size = struct.calcsize(fmt)
            count = len(raw) // size
            out["Value"] = list(
                struct.unpack(f"{'<' if little else '>'}{count}{fmt}", raw[: count * size])
            )
            return out
        if vr == "AT":
            count = len(raw) // 4
            pairs = struct.unpack(f"{'<' if little else '>'}{count * 2}H", raw[: count * 4])
            out["Value"] = [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]
            return out
        if vr not in _TEXT:
            return out  # VRs not expressible in DICOM JSON values are kept as present-but-empty
        if vr in _CHARSET_VRS:
            text = decode_bytes(raw, encodings, {0x5C, 0x3D, 0x5E} if vr == "PN" else set())
        else:
            text = raw.decode("ascii", "replace")
        parts = [text] if vr in _SINGLE_VALUED else text.split("\\")
        values = [self.value(vr, p) for p in parts]
        if any(v is not None for v in values):
            out["Value"] = values
        return out

    @staticmethod
    def value(vr: str, text: str) -> Any:
        if vr == "UI":
            text = text.rstrip("\0 ").strip()
        elif vr in ("LT", "ST", "UT", "UR"):
            text = text.rstrip("\0 ")
        else:
            text = text.strip("\0 ")
        if not text:
            return None
        if vr == "PN":
            groups = text.split("=")
            name = {"Alphabetic": groups[0]}
            for key, group in zip(("Ideographic", "Phonetic"), groups[1:], strict=False):
                name[key] = group
            return name
        if vr == "IS":
            try:
                return int(text)
            except ValueError:
                return int(float(text)) if _is_integral_float(text) else text
        if vr == "DS":
            try:
                number = float(text)
            except ValueError:
                return text
            return (
                int(number)
                if number.is_integer() and "." not in text and "e" not in text.lower()
                else number
            )
        return text


def _is_integral_float(text: str) -> bool:
    try:
        return float(text).is_integer()
    except ValueError:
        return False
