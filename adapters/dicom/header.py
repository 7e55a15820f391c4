"""A read-only, typed view over a DICOM JSON data set (PS3.18 Annex F.2).

The mapping reads DICOM JSON, the standard's own text form of a data set: the normalizer
turns each ``raw.dicom`` header into it once (``adapters.dicom.raw.header_of``). Reading it
through this view instead of through pydicom keeps the mapping independent of how the
header was parsed, and lets tests build headers as plain dicts.

A DICOM JSON data set maps an 8-hex-digit tag to ``{"vr": ..., "Value": [...]}``; ``Value``
is absent for an empty element. Person names are ``{"Alphabetic": "Family^Given..."}``;
sequences hold nested data sets; IS and DS values are JSON numbers (strings from some
writers, accepted too).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from caregraph.errors import MappingError

JsonDataset = Mapping[str, Any]


def tag_label(tag: str) -> str:
    """``0020000D`` -> ``(0020,000D)``, the way DICOM people write tags in messages."""
    return f"({tag[:4]},{tag[4:]})"


@dataclass(frozen=True, slots=True)
class DicomHeader:
    """Typed accessors over one DICOM JSON data set; ``MappingError`` names the tag."""

    data: JsonDataset

    def _values(self, tag: str) -> list[Any]:
        element = self.data.get(tag)
        if element is None:
            return []
        if not isinstance(element, Mapping):
            raise MappingError("element is not a JSON object", tag_label(tag))
        values = element.get("Value")
        if values is None:
            return []
        if not isinstance(values, list):
            raise MappingError("Value is not a JSON array", tag_label(tag))
        return values

    def texts(self, tag: str) -> list[str]:
        """All non-empty string values of ``tag``, stripped of DICOM's padding."""
        out: list[str] = []
        for value in self._values(tag):
            if value is None:
                continue
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise MappingError(f"expected a string, got {type(value).__name__}", tag_label(tag))
            text = str(value).strip(" \x00")
            if text:
                out.append(text)
        return out

    def text(self, tag: str) -> str | None:
        """The first non-empty string value of ``tag``, or ``None``."""
        texts = self.texts(tag)
        return texts[0] if texts else None

    def integer(self, tag: str) -> int | None:
        """The first value of an IS/US/UL element as an int; ``None`` if absent."""
        for value in self._values(tag):
            if value is None or value == "":
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    pass
            raise MappingError(f"not an integer: {value!r}", tag_label(tag))
        return None

    def person_names(self, tag: str) -> list[str]:
        """The names of a PN element in DICOM's ``Family^Given^Middle^Prefix^Suffix`` form.

        The alphabetic representation is preferred; ideographic or phonetic is used only
        when it is the sole one given.
        """
        names: list[str] = []
        for value in self._values(tag):
            if value is None:
                continue
            if isinstance(value, str):  # a few writers put the bare string here
                names.append(value)
                continue
            if not isinstance(value, Mapping):
                raise MappingError("person name is not a JSON object", tag_label(tag))
            for group in ("Alphabetic", "Ideographic", "Phonetic"):
                name = value.get(group)
                if isinstance(name, str) and name.strip(" ^="):
                    names.append(name)
                    break
        return names

    def sequence(self, tag: str) -> Iterator[DicomHeader]:
        """The items of an SQ element, each as a ``DicomHeader``."""
        for item in self._values(tag):
            if not isinstance(item, Mapping):
                raise MappingError("sequence item is not a JSON object", tag_label(tag))
            yield DicomHeader(item)
