"""FHIR storage (SQLite, PostgreSQL), search and the FHIR REST API."""
