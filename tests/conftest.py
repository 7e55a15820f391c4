"""Shared fixtures. Integration fixtures start real services unless CI already did."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support.services import fresh_postgres_database, tansu_broker

# CI explores the same examples on every run (a red CI must mean a change broke something);
# developers' runs keep drawing new examples, which is how property tests find new bugs.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A Kafka-protocol broker: ``CAREGRAPH_TEST_KAFKA`` if set, else a Tansu we start."""
    configured = os.environ.get("CAREGRAPH_TEST_KAFKA")
    if configured:
        yield configured
        return
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with fresh_postgres_database() as url:
        yield url
