"""Pure translators, no I/O: HL7 v2, DICOM and device readings to FHIR; code tables."""
