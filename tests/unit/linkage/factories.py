"""Small FHIR Patient builders for the linkage tests."""

from __future__ import annotations

from typing import Any


def patient(
    given: str | None = "Anna",
    family: str | None = "Meier",
    birth_date: str | None = "1980-03-07",
    *,
    pid: str | None = None,
    gender: str | None = "female",
    line: str | None = "12 Lake Road",
    city: str | None = "Bern",
    postcode: str | None = "3001",
    phone: str | None = None,
    identifiers: list[tuple[str, str]] | None = None,
    last_updated: str | None = None,
) -> dict[str, Any]:
    """A Patient dict with the fields the matcher reads; None leaves a field out."""
    p: dict[str, Any] = {"resourceType": "Patient"}
    if pid:
        p["id"] = pid
    if last_updated:
        p["meta"] = {"lastUpdated": last_updated}
    name: dict[str, Any] = {"use": "official"}
    if family is not None:
        name["family"] = family
    if given is not None:
        name["given"] = [given]
    p["name"] = [name]
    if birth_date:
        p["birthDate"] = birth_date
    if gender:
        p["gender"] = gender
    if line or city or postcode:
        address: dict[str, Any] = {"use": "home"}
        if line:
            address["line"] = [line]
        if city:
            address["city"] = city
        if postcode:
            address["postalCode"] = postcode
        p["address"] = [address]
    if phone:
        p["telecom"] = [{"system": "phone", "value": phone}]
    if identifiers:
        p["identifier"] = [{"system": s, "value": v} for s, v in identifiers]
    return p
