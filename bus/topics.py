"""Topic names. Raw topics hold what the gateways received, byte for byte; fhir.* hold
normalized resources; deadletter holds what a consumer gave up on, with the original bytes."""

RAW_HL7V2 = "raw.hl7v2"
RAW_DICOM = "raw.dicom"
RAW_DEVICE = "raw.device"
#: Bytes a serial driver refused (bad checksum, framing): kept for the console, never decoded.
RAW_DEVICE_REJECTED = "raw.device.rejected"
DEADLETTER = "deadletter"


def fhir_topic(resource_type: str) -> str:
    """The topic for one FHIR resource type, e.g. ``fhir.Observation``."""
    if not resource_type.isidentifier() or not resource_type[:1].isupper():
        raise ValueError(f"not a FHIR resource type: {resource_type!r}")
    return f"fhir.{resource_type}"
