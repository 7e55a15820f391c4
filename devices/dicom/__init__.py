"""The DICOM edge: an SCP (C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE) that stores received
files content-addressed under the data dir and publishes their headers to ``raw.dicom``.

Wiring (the composition root does this once)::

    gateway = DicomGateway(data_dir / "dicom", bus, ae_title=settings.dicom_ae,
                           host="0.0.0.0", port=settings.dicom_port,
                           allowed_callers=settings.dicom_allowed_callers,
                           study_search=search_imaging_studies)
    gateway.start()   # binds, then serves in its own threads; ConfigError if it cannot
    ...
    gateway.stop()    # closes the port, waits for open associations, checkpoints the
                      # journal, closes the index

The ``raw.dicom`` messages are turned into FHIR by ``adapters.dicom.DicomNormalizer``.

Modules: ``scp`` (the gateway: what a C-STORE must achieve before success), ``ul`` (the
upper layer: associations and DIMSE over blocking sockets, C-MOVE's outgoing association),
``access`` (called AE title, calling AE allowlist with hosts and operations, move
destinations), ``dimse``, ``part10``, ``framing`` and ``pdu_guard`` (pure wire code),
``storage`` (content-addressed files) with ``journal`` (one durable append per instance),
``index`` (SQLite for C-FIND, C-GET and C-MOVE), ``catalog`` (C-FIND from ImagingStudy
resources), ``status`` (errors to DIMSE statuses).
"""

from devices.dicom.access import CallerPolicy, CallerRule, caller_policy
from devices.dicom.catalog import StudySearch
from devices.dicom.scp import DicomGateway, GatewayStats

__all__ = [
    "CallerPolicy",
    "CallerRule",
    "DicomGateway",
    "GatewayStats",
    "StudySearch",
    "caller_policy",
]
