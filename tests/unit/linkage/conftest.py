"""Fixtures for the MPI rule tests; integration tests override ``repository``."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from linkage.identity import IdentityIndex, IdentityRepository, MemoryIdentityRepository
from linkage.mpi import Mpi, MpiSettings
from linkage.repository import LinkageRepository, MemoryRepository


class Clock:
    """A clock that moves one second per call, so event order is visible in timestamps."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def repository() -> LinkageRepository:
    return MemoryRepository()


@pytest.fixture
def identity_repository() -> IdentityRepository:
    return MemoryIdentityRepository()


@pytest.fixture
def identity(identity_repository: IdentityRepository) -> IdentityIndex:
    counter = itertools.count(1)
    return IdentityIndex(identity_repository, lambda: f"entity-{next(counter)}")


@pytest.fixture
def make_mpi(repository: LinkageRepository) -> Callable[..., Mpi]:
    def make(**settings: object) -> Mpi:
        counter = itertools.count(1)
        return Mpi(
            repository,
            settings=MpiSettings(**settings),  # type: ignore[arg-type]
            clock=Clock(),
            new_golden_id=lambda: f"golden-{next(counter)}",
        )

    return make


@pytest.fixture
def mpi(make_mpi: Callable[..., Mpi]) -> Mpi:
    return make_mpi()
