"""Code tables: IEEE 11073-10101 (MDC) terms and units with their UCUM, LOINC names, and the
coding-system names HL7 v2 uses. Plain typed mappings, so device drivers can import (and
extend at start-up) the same tables the HL7 v2 mapping uses."""

from adapters.codes.loinc import LOINC, LOINC_SYSTEM
from adapters.codes.mdc import MDC, MDC_SYSTEM, MDC_UNITS, MdcTerm, MdcUnit, mdc_code
from adapters.codes.systems import UCUM_SYSTEM, coding_system_uri

__all__ = [
    "LOINC",
    "LOINC_SYSTEM",
    "MDC",
    "MDC_SYSTEM",
    "MDC_UNITS",
    "UCUM_SYSTEM",
    "MdcTerm",
    "MdcUnit",
    "coding_system_uri",
    "mdc_code",
]
