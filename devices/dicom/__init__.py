"""The DICOM edge: an SCP (C-ECHO, C-STORE, C-FIND, C-GET) that stores received files
content-addressed under the data dir and publishes their headers to ``raw.dicom``.

Wiring (the composition root does this once)::

    gateway = DicomGateway(data_dir / "dicom", bus, ae_title=settings.dicom_ae,
                           host="0.0.0.0", port=settings.dicom_port)
    gateway.start()   # binds, then serves in its own threads; ConfigError if it cannot
    ...
    gateway.stop()    # closes the port, waits for open associations, closes the index

The ``raw.dicom`` messages are turned into FHIR by ``adapters.dicom.DicomNormalizer``.

Modules: ``scp`` (the gateway: what a C-STORE must achieve before success), ``ul`` (the
upper layer: associations and DIMSE over blocking sockets), ``dimse``, ``part10``,
``framing`` and ``pdu_guard`` (pure wire code), ``storage`` (content-addressed files),
``index`` (SQLite for C-FIND and C-GET), ``status`` (errors to DIMSE statuses).
"""

from devices.dicom.scp import DicomGateway, GatewayStats

__all__ = ["DicomGateway", "GatewayStats"]
