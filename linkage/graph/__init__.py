"""The care graph: patients, staff, institutions, locations, devices and encounters, with
time-bounded edges derived from the FHIR resources that flow through caregraph."""
