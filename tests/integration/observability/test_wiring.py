"""What the composition root wires into /metrics beyond the bus: the adapters' tally."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adapters.codes import unmatched
from caregraph.settings import Settings
from caregraph.wiring import open_context

pytestmark = pytest.mark.integration


def test_the_context_metrics_read_the_adapters_unmatched_tally(tmp_path: Path) -> None:
    system = f"99T{uuid.uuid4().hex[:6]}"  # a series no other test of this process touches
    ctx = open_context(Settings(data_dir=tmp_path))
    try:
        labels = {"source": "hl7v2", "system": system, "kind": "unknown_code"}
        name = "caregraph_unmatched_codes_total"
        assert ctx.metrics.registry.get_sample_value(name, labels) is None
        unmatched.count("hl7v2", system)
        unmatched.count("hl7v2", system)
        assert ctx.metrics.registry.get_sample_value(name, labels) == 2
    finally:
        ctx.close()
