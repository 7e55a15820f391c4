"""The composition-root path: ``start_simulator`` + ``run_driver`` + ``run_normalizer``,
each protocol end to end from a pty to ``fhir.Observation`` records on the bus."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from adapters.serial.normalize import OBSERVATION_TOPIC
from adapters.serial.observation import device_resource_id
from bus.memory import MemoryBus
from devices.serial import run_driver, run_normalizer
from devices.simulators import start_simulator
from tests.integration.serial.conftest import wait_for

pytestmark = pytest.mark.integration

CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "astm": ({"interval_s": 0.2}, {}),
    "intellivue": ({}, {"poll_interval_s": 0.1}),
    "datex": ({"interval_s": 0.1}, {"interval_s": 1}),
    "medibus": ({}, {"poll_interval_s": 0.1}),
}


@pytest.mark.parametrize("protocol", sorted(CASES))
def test_pty_to_fhir_observations(protocol: str) -> None:
    sim_opts, driver_opts = CASES[protocol]
    path, handle = start_simulator(protocol, **sim_opts)
    bus = MemoryBus(partitions=2)
    stop = threading.Event()
    device_id = f"pipeline-{protocol}"
    threads = [
        threading.Thread(
            target=run_driver, args=(protocol, path, device_id, bus, stop), kwargs=driver_opts
        ),
        threading.Thread(target=run_normalizer, args=(bus, stop)),
    ]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(bus.snapshot(OBSERVATION_TOPIC)) >= 10, 30, "10 Observations")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        handle.stop()
    assert not any(t.is_alive() for t in threads)
    observations = [json.loads(m.value) for m in bus.snapshot(OBSERVATION_TOPIC)]
    for obs in observations[:20]:
        Observation.model_validate(obs)
    assert {o["device"]["reference"] for o in observations} == {
        f"Device/{device_resource_id(device_id)}"
    }
    assert len({o["id"] for o in observations}) == len(observations)
