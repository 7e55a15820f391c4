"""Errors of the serial codecs, under ``MappingError`` of the one tree.

    CaregraphError
    └── MappingError
        └── WireError            bytes that do not follow the protocol
            └── UnknownProtocol  a raw.device message names no protocol we decode

Framing faults (bad checksum, garbage between frames) are not exceptions: framers report
them as ``Fault`` values, counted by the driver, because they are expected on a serial line.
"""

from __future__ import annotations

from caregraph.errors import MappingError


class WireError(MappingError):
    """A frame that passed its checksum but whose content breaks the protocol's layout."""


class UnknownProtocol(WireError):
    """A raw.device message whose protocol header names no codec here."""
