"""Data derived from the FHIR R4 specification (CC0), shipped with the package."""
