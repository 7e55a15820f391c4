"""What an HTTP request asks for, in scope terms: (resource type, permission) per interaction.

Pure: a method and a path (and, for transactions, each entry's method and url) in, an
``Access`` out. Routes that are not FHIR map onto the resource they expose: the linkage and
graph routes are about Patients (reading needs ``Patient.rs``, changing links ``Patient.u``);
the console needs only a valid token. An unknown route needs a valid token and then 404s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Area(StrEnum):
    FHIR = "fhir"
    LINKAGE = "linkage"  # /linkage and /graph: MPI and graph JSON, not FHIR resources
    OTHER = "other"  # the console, the OpenAPI docs: a valid token, no scope


@dataclass(frozen=True, slots=True)
class Access:
    """``resource_type`` None: any type (system history, transactions check entries);
    ``permission`` None: no scope needed beyond a valid token."""

    area: Area
    resource_type: str | None
    permission: str | None
    interaction: str
    resource_id: str | None = None
    conditional: bool = False
    transaction: bool = False


def _is_type(segment: str) -> bool:
    return segment[:1].isupper() and segment.isalnum()


def classify_fhir(method: str, parts: list[str], has_query: bool) -> Access:
    """Classify a FHIR request by its path below the FHIR base (``parts``)."""
    method = method.upper()
    read = method in ("GET", "HEAD")
    if not parts:
        return Access(Area.FHIR, None, None, "transaction", transaction=method == "POST")
    if parts == ["metadata"]:
        return Access(Area.FHIR, None, None, "capabilities")
    if parts == ["_history"]:
        return Access(Area.FHIR, None, "s", "history-system")
    head = parts[0]
    if head.startswith("$"):
        # a system-level operation ($process-message, ...): it writes, so it needs a create
        # permission; its own handler decides on each resource it touches
        return Access(Area.FHIR, None, "c", "operation-system")
    if not _is_type(head):
        return Access(Area.FHIR, None, None, "unknown")
    if len(parts) == 1:
        if read:
            return Access(Area.FHIR, head, "s", "search-type")
        if method == "POST":
            return Access(Area.FHIR, head, "c", "create", conditional=has_query)
        if method == "PUT":
            return Access(Area.FHIR, head, "u", "update", conditional=True)
        if method == "DELETE":
            return Access(Area.FHIR, head, "d", "delete", conditional=True)
        return Access(Area.FHIR, head, "u", "patch", conditional=True)
    second = parts[1]
    if len(parts) == 2:
        if second == "_search":
            return Access(Area.FHIR, head, "s", "search-type")
        if second == "_history":
            return Access(Area.FHIR, head, "s", "history-type")
        if second == "$validate":
            return Access(Area.FHIR, head, "c", "operation")
        if second == "$match":
            return Access(Area.FHIR, head, "s", "operation")
        if second.startswith("$"):
            return Access(Area.FHIR, head, "r", "operation")
        if read:
            return Access(Area.FHIR, head, "r", "read", second)
        if method == "PUT":
            return Access(Area.FHIR, head, "u", "update", second)
        if method == "PATCH":
            return Access(Area.FHIR, head, "u", "patch", second)
        if method == "DELETE":
            return Access(Area.FHIR, head, "d", "delete", second)
        return Access(Area.FHIR, head, "c", "create", second)
    third = parts[2]
    if third == "$validate":
        return Access(Area.FHIR, head, "u", "operation", second)
    if third.startswith("$"):
        return Access(Area.FHIR, head, "r", "operation", second)
    if third == "_history":
        interaction = "history-instance" if len(parts) == 3 else "vread"
        return Access(Area.FHIR, head, "r", interaction, second)
    return Access(Area.FHIR, head, "r", "unknown", second)


def classify(method: str, path: str, query: str, fhir_prefix: str = "/fhir") -> Access:
    """Classify any request to the API by method and path."""
    if path == fhir_prefix or path.startswith(fhir_prefix + "/"):
        parts = [p for p in path[len(fhir_prefix) :].split("/") if p]
        return classify_fhir(method, parts, bool(query))
    if path.startswith(("/linkage/", "/graph/")) or path in ("/linkage", "/graph"):
        permission = "r" if method.upper() in ("GET", "HEAD") else "u"
        parts = path.split("/")
        if path.startswith("/graph/patients/") and len(parts) == 5 and permission == "r":
            # /graph/patients/{id}/{record|devices|staff}: one patient's own care graph
            return Access(Area.LINKAGE, "Patient", "r", "graph-patient", parts[3])
        if path == "/linkage/match":
            permission = "s"
        return Access(Area.LINKAGE, "Patient", permission, "linkage")
    return Access(Area.OTHER, None, None, "web")


def classify_entry(method: str, url: str) -> Access:
    """A transaction or batch entry's request (``Observation/1``, ``Patient?identifier=x``)."""
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    return classify_fhir(method, parts, bool(query))
