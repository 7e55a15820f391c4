"""A patient's linked identities: the golden record and every source Patient confirmed in it.

Read-only use of the linkage public API (``Mpi.golden_of``, ``Mpi.golden``). Only MATCH
members count: a POSSIBLE_MATCH waits for review and may be another person, so it must not
widen what a patient-scoped token sees. Asked per request, never cached: an unlink must take
effect at once.
"""

from __future__ import annotations

from typing import Protocol

from linkage.errors import LinkageNotFound
from linkage.links import LinkState
from linkage.mpi import Mpi


class Identities(Protocol):
    def linked(self, patient_id: str) -> frozenset[str]:
        """``patient_id`` and every Patient id that is the same person."""
        ...


class MpiIdentities:
    """Linked identities from the master patient index."""

    def __init__(self, mpi: Mpi) -> None:
        self._mpi = mpi

    def linked(self, patient_id: str) -> frozenset[str]:
        ids = {patient_id}
        golden_id: str | None = None
        try:
            link = self._mpi.golden_of(patient_id)
            if link.state == LinkState.MATCH:
                golden_id = link.golden_id
        except LinkageNotFound:
            golden_id = patient_id  # perhaps the token names the golden record itself
        if golden_id is None:
            return frozenset(ids)
        try:
            golden, members = self._mpi.golden(golden_id)
        except LinkageNotFound:
            return frozenset(ids)
        if golden.replaced_by is not None:
            return frozenset(ids)
        ids.add(golden.golden_id)
        ids.update(m.source_id for m in members if m.state == LinkState.MATCH)
        return frozenset(ids)


class NoLinks:
    """Identities when no MPI is wired: a patient is only itself."""

    def linked(self, patient_id: str) -> frozenset[str]:
        return frozenset({patient_id})
