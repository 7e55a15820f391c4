"""Errors of the serial edge, under the one tree.

    CaregraphError
    └── SerialLinkError      the port seam (pyserial) failed
        ├── LinkLost         the port vanished or errored mid-session (cable/USB pulled)
        └── DeviceSilent     the port is open but no good frame came in time

The driver catches both, counts them, closes the port and opens it again: a session never
ends the driver, only ``stop`` does.
"""

from __future__ import annotations

from caregraph.errors import CaregraphError


class SerialLinkError(CaregraphError):
    """The serial port seam failed."""


class LinkLost(SerialLinkError):
    """The port could not be opened, read or written (wraps ``serial.SerialException``)."""


class DeviceSilent(SerialLinkError):
    """No good frame within the silence timeout; the session is restarted."""
