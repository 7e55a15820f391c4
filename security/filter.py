"""The response filter: what a restricted token may see of a FHIR response body.

Applied to every FHIR response (reads, searches with ``_include``/``_revinclude``,
``$everything``, history, transaction and batch responses) after the handler ran, so a
request that slipped past the request checks still cannot carry another patient's data out.

Rules, for a token whose view is restricted:
- a resource is visible when its type is readable under the token's scopes and, with a
  patient context, it is in the compartment of one of the patient's linked identities;
- a Bundle of type searchset or history keeps only visible entries; an entry without a
  resource (a deleted version in history) cannot be proven to be the patient's and is
  dropped; ``total`` survives only when the page held every match and is then the count of
  the matches kept, so no count of other patients' data leaks;
- a transaction or batch response keeps its positions: a hidden entry becomes a 403 entry,
  and a search or history nested in it (a batch GET) is filtered like a top-level one;
- a message Bundle (the answer of ``$process-message``) keeps its MessageHeader, which
  describes this exchange rather than stored data, and only the visible other entries;
- any other resource that is not visible makes the whole response a 403.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from security.compartment import in_compartment
from security.errors import Forbidden

_CONTAINERS = frozenset({"searchset", "history"})
_RESPONSES = frozenset({"transaction-response", "batch-response"})


@dataclass(frozen=True)
class View:
    """What one request may see: readable types, and the patients whose compartment it is
    limited to (None: no patient restriction)."""

    readable: Callable[[str], bool]
    patients: frozenset[str] | None

    def sees(self, resource: Mapping[str, Any]) -> bool:
        type_name = resource.get("resourceType")
        if not isinstance(type_name, str):
            return False
        if type_name == "OperationOutcome":
            return True  # errors and warnings about the request, never stored data
        if not self.readable(type_name):
            return False
        return self.patients is None or in_compartment(resource, self.patients)


def _forbidden_entry(text: str) -> dict[str, Any]:
    return {
        "response": {
            "status": "403 Forbidden",
            "outcome": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "forbidden", "diagnostics": text}],
            },
        }
    }


def filter_body(body: Any, view: View) -> tuple[Any, int]:
    """The body as ``view`` may see it, and how many resources were hidden.

    Raises:
        Forbidden: a single resource (not a search, history or transaction response) that
            the view may not see.
    """
    if not isinstance(body, dict):
        return body, 0
    if body.get("resourceType") == "Bundle" and body.get("type") in _CONTAINERS:
        return _filter_container(body, view)
    if body.get("resourceType") == "Bundle" and body.get("type") in _RESPONSES:
        return _filter_responses(body, view)
    if body.get("resourceType") == "Bundle" and body.get("type") == "message":
        return _filter_message(body, view)
    if view.sees(body):
        return body, 0
    raise Forbidden(f"this token may not see {body.get('resourceType')}/{body.get('id')}")


def _filter_container(bundle: dict[str, Any], view: View) -> tuple[dict[str, Any], int]:
    entries = bundle.get("entry") or []
    kept = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and view.sees(resource):
            kept.append(entry)
    hidden = len(entries) - len(kept)
    result = {k: v for k, v in bundle.items() if k not in ("entry", "total")}
    if kept:
        result["entry"] = kept
    if "total" in bundle and view.patients is not None:
        matches = [e for e in entries if _is_match(e)]
        last_page = not any(link.get("relation") == "next" for link in bundle.get("link") or [])
        if last_page and bundle["total"] == len(matches):
            result["total"] = sum(1 for e in kept if _is_match(e))
    elif "total" in bundle and not hidden:
        result["total"] = bundle["total"]
    return result, hidden


def _filter_message(bundle: dict[str, Any], view: View) -> tuple[dict[str, Any], int]:
    entries = bundle.get("entry") or []
    kept = [
        entry
        for i, entry in enumerate(entries)
        if isinstance(entry, dict)
        and isinstance(entry.get("resource"), dict)
        and (
            (i == 0 and entry["resource"].get("resourceType") == "MessageHeader")
            or view.sees(entry["resource"])
        )
    ]
    result = {k: v for k, v in bundle.items() if k != "entry"}
    if kept:
        result["entry"] = kept
    return result, len(entries) - len(kept)


def _is_match(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    mode = (entry.get("search") or {}).get("mode", "match")
    return bool(mode == "match")


def _is_container(resource: Any) -> bool:
    """A search or history result nested in a batch response (a batch GET entry)."""
    return (
        isinstance(resource, dict)
        and resource.get("resourceType") == "Bundle"
        and resource.get("type") in _CONTAINERS
    )


def _filter_responses(bundle: dict[str, Any], view: View) -> tuple[dict[str, Any], int]:
    hidden = 0
    entries = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        outcome = (entry.get("response") or {}).get("outcome") if isinstance(entry, dict) else None
        if _is_container(resource):
            shown, nested = filter_body(resource, view)
            hidden += nested
            entries.append({**entry, "resource": shown})
        elif isinstance(resource, dict) and not view.sees(resource):
            hidden += 1
            entries.append(_forbidden_entry("this token may not see the resulting resource"))
        elif isinstance(outcome, dict) and not view.sees(outcome):
            hidden += 1
            entries.append(_forbidden_entry("this token may not see the outcome"))
        else:
            entries.append(entry)
    result = dict(bundle)
    if entries:
        result["entry"] = entries
    if view.patients is not None:
        result.pop("total", None)  # not defined for these bundles; never let a count out
    return result, hidden
