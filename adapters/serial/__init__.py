"""Pure codecs for bedside serial protocols and the mapping of their readings to FHIR.

Nothing here opens a port: ``devices.serial`` moves the bytes, these modules give them
meaning. Each protocol module exposes a framer (bytes in, frames or faults out, resyncing
after garbage) and a decoder (a frame in, ``Measurement`` values out).
"""

from adapters.serial.measurement import Measurement, Unit
from adapters.serial.observation import device_resource_id, observation_from_measurement

__all__ = ["Measurement", "Unit", "device_resource_id", "observation_from_measurement"]
