"""Patient ids that devices report themselves (a lab analyzer's patient record) -> Patient.

An analyzer on a lab bench is attached to no patient; the sample's patient id, typed or
scanned at the analyzer, is the hospital's identifier of that patient. It names a patient
only when exactly one source Patient carries it (golden records repeat their members'
identifiers and are left out); an id no Patient has, or several have, leaves the reading
unassigned rather than guessing. Answers are cached briefly, so a run of results for one
sample costs one search, and a Patient admitted a moment after its sample still gets its
next readings.

A device whose registration names the system of the ids it reports (its connection's
``patient-id-system``, e.g. the hospital's MRN system) matches only identifiers of that
system: an analyzer's ``12345`` is then MRN 12345, never another source's account or
insurance number 12345. Without one, an identifier of any system matches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fhir_store.store import FhirStore
from linkage.survivorship import GOLDEN_TAG_SYSTEM

Reference = Mapping[str, Any]


class PatientHints:
    """``hint -> Reference | None`` for the device normalizer (``PatientByHint``)."""

    def __init__(
        self,
        store: FhirStore,
        found_ttl_s: float = 300.0,
        missing_ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.found_ttl_s = found_ttl_s
        self.missing_ttl_s = missing_ttl_s
        self.searches = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str | None, str], tuple[float, Reference | None]] = {}

    def __call__(self, hint: str, system: str | None = None, /) -> Reference | None:
        """The one source Patient with identifier ``hint`` (of ``system``, if given).

        Raises:
            StoreError: the search failed (the normalizer's batch is retried).
        """
        key = (system or None, hint)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self._search(hint, key[0])
        ttl = self.found_ttl_s if found is not None else self.missing_ttl_s
        with self._lock:
            if len(self._cache) > 10_000:  # a long-running gateway: drop stale answers
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[key] = (now + ttl, found)
        return found

    def _search(self, hint: str, system: str | None) -> Reference | None:
        self.searches += 1
        # ``value`` alone is any system; ``system|value`` only that system (FHIR token).
        token = _escape(hint) if system is None else f"{_escape(system)}|{_escape(hint)}"
        page = self.store.searching.search(
            "Patient",
            [
                ("identifier", token),
                ("_tag:not", f"{GOLDEN_TAG_SYSTEM}|golden"),
                ("_count", "2"),
            ],
        )
        if len(page.matches) != 1:
            return None
        return {"reference": f"Patient/{page.matches[0].id}"}


def _escape(value: str) -> str:
    """An identifier value or system as part of a token search value (``,`` ``|`` ``$``
    ``\\`` escaped)."""
    for ch in "\\,|$":
        value = value.replace(ch, "\\" + ch)
    return value
