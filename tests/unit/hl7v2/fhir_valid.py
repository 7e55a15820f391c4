"""Validate plain FHIR dicts against the fhir.resources R4B models (wire-compatible with R4
for the resources caregraph builds)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class


def assert_valid(resource: dict[str, Any]) -> None:
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
