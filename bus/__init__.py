"""The bus seam: one small interface, a Kafka implementation and an embedded durable one."""

from bus.base import Bus, Consumer, Message, Record
from bus.headers import Headers
from bus.topics import DEADLETTER, RAW_DEVICE, RAW_DICOM, RAW_HL7V2, fhir_topic

__all__ = [
    "DEADLETTER",
    "RAW_DEVICE",
    "RAW_DICOM",
    "RAW_HL7V2",
    "Bus",
    "Consumer",
    "Headers",
    "Message",
    "Record",
    "fhir_topic",
]
