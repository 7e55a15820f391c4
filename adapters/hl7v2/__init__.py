"""HL7 v2 to FHIR, pure: parse (a fast tokenizer proven against hl7apy), map, build ACKs."""

from adapters.hl7v2.datatypes import Options
from adapters.hl7v2.errors import Hl7MappingError, Hl7ParseError, Location, UnsupportedMessage
from adapters.hl7v2.normalize import Normalized, PatientMerge, normalize, parse, patient_key

__all__ = [
    "Hl7MappingError",
    "Hl7ParseError",
    "Location",
    "Normalized",
    "Options",
    "PatientMerge",
    "UnsupportedMessage",
    "normalize",
    "parse",
    "patient_key",
]
