"""The device registry as FHIR, pure (no I/O): what biomedical engineers register and how
it maps to R4 resources.

- ``device``: a ``Device`` resource <-> ``Registration`` (make, model, serial number, UDI,
  type, status, the serial connection as a caregraph extension, bed placements with their
  periods).
- ``associations``: ``DeviceUseStatement`` for a time-bounded patient attachment, and the
  index that answers "which patient was this device attached to at device time T".
- ``alerts``: the ``DetectedIssue`` raised on a device that went silent, and cleared.

The composition root (``caregraph.device_registry``) reads and writes these through the
store; the CLI, the serial role and the device normalizer share them.
"""
