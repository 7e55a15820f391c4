"""Every link-state rule of ``tests/unit/linkage/test_mpi.py``, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.unit.linkage.test_mpi import *  # noqa: F403 (the same tests, other fixtures)

pytestmark = pytest.mark.integration
