"""The DICOM edge: a pynetdicom SCP (C-ECHO, C-STORE, C-FIND) that stores received files
content-addressed under the data dir and publishes their headers to ``raw.dicom``."""

from devices.dicom.scp import DicomGateway, GatewayStats

__all__ = ["DicomGateway", "GatewayStats"]
