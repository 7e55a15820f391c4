"""The normalizer's patient lookup against a real store: refreshed at most every
``max_age_s``, incrementally (``_lastUpdated``), rebuilt only on change, fully reloaded
every ``full_every_s`` (which drops deleted statements)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.registry.associations import statement_resource
from adapters.registry.device import Registration, device_resource
from caregraph.device_registry import AssociationCache
from caregraph.errors import StoreUnavailable
from fhir_store.searching import SearchPage
from fhir_store.store import FhirStore

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _statement(device: Registration, patient: str, start: datetime) -> dict[str, Any]:
    return statement_resource(
        device.device_id, device.reference, {"reference": patient}, start, None, NOW
    )


def test_refreshes_incrementally_and_fully(store: FhirStore) -> None:
    searches: list[tuple[str, list[tuple[str, str]]]] = []
    real = store.searching.search

    def spy(type_name: str, params: Sequence[tuple[str, str]], **kw: Any) -> SearchPage:
        searches.append((type_name, list(params)))
        return real(type_name, params, **kw)

    store.searching.search = spy  # type: ignore[method-assign]
    mon = Registration("mon-c")
    first = _statement(mon, "Patient/a", NOW - timedelta(hours=2))
    store.upsert_many([device_resource(mon, NOW), first])
    clock = Clock()
    cache = AssociationCache(store, max_age_s=2, full_every_s=60, clock=clock)

    lookup = cache()
    assert lookup("mon-c", NOW)["reference"] == "Patient/a"  # type: ignore[index]
    assert (cache.loads, cache.builds) == (1, 1)
    assert not any(k == "_lastUpdated" for _, ps in searches for k, _ in ps)

    # Within max_age_s: no query at all, whatever the number of batches.
    searches.clear()
    for _ in range(100):
        cache()("mon-c", NOW)
    assert searches == [] and cache.loads == 1

    # A new attachment: the next refresh asks only for what changed and rebuilds.
    store.upsert_many([_statement(mon, "Patient/b", NOW - timedelta(hours=1))])
    clock.t += 2
    assert cache()("mon-c", NOW)["reference"] == "Patient/b"  # type: ignore[index]
    assert (cache.loads, cache.builds) == (2, 2)
    assert all(("_lastUpdated" in dict(ps)) for _, ps in searches)
    assert {t for t, _ in searches} == {"Device", "DeviceUseStatement"}

    # Nothing new: a refresh, no rebuild.
    clock.t += 2
    cache()
    assert (cache.loads, cache.builds) == (3, 2)

    # A deletion is seen at the next full reload only.
    store.delete("DeviceUseStatement", _statement(mon, "Patient/b", NOW - timedelta(hours=1))["id"])
    clock.t += 2
    assert cache()("mon-c", NOW)["reference"] == "Patient/b"  # type: ignore[index]
    clock.t += 60
    assert cache()("mon-c", NOW)["reference"] == "Patient/a"  # type: ignore[index]
    assert cache.builds == 3

    # The store failing after the first load keeps the last index.
    def broken(*_: Any, **__: Any) -> SearchPage:
        raise StoreUnavailable("database down")

    store.searching.search = broken  # type: ignore[method-assign]
    clock.t += 2
    assert cache()("mon-c", NOW)["reference"] == "Patient/a"  # type: ignore[index]

    fresh = AssociationCache(store, clock=clock)
    with pytest.raises(StoreUnavailable, match="database down"):
        fresh()
