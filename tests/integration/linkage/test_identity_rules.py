"""The identity rules of ``tests/unit/linkage/test_identity.py``, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.unit.linkage.test_identity import *  # noqa: F403 (the same tests, other fixtures)

pytestmark = pytest.mark.integration
