"""JSON log lines: shape, trace id from the context, extras, exceptions, text mode."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from observability.logging import configure, current_trace_id, trace_scope


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Configure the root logger onto a buffer, and put pytest's handlers back after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_fields(stream: io.StringIO) -> None:
    configure(json=True, level="INFO", stream=stream)
    logging.getLogger("devices.mllp").info("accepted %s from %s", "MSG1", "HIS")
    logging.getLogger("devices.mllp").debug("below the level")
    (entry,) = lines(stream)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "devices.mllp"
    assert entry["message"] == "accepted MSG1 from HIS"
    assert entry["time"].endswith("+00:00")
    assert "trace_id" not in entry


def test_trace_id_comes_from_the_scope_and_is_reset_after(stream: io.StringIO) -> None:
    configure(json=True, stream=stream)
    log = logging.getLogger("bus.worker")
    with trace_scope("abc123"):
        assert current_trace_id() == "abc123"
        with trace_scope(None):  # no id on this message: keep the outer one
            log.info("inside")
        with trace_scope("inner"):
            log.info("nested")
    log.info("outside")
    inside, nested, outside = lines(stream)
    assert inside["trace_id"] == "abc123"
    assert nested["trace_id"] == "inner"
    assert "trace_id" not in outside
    assert current_trace_id() is None


def test_a_thread_does_not_inherit_the_trace_id(stream: io.StringIO) -> None:
    configure(json=True, stream=stream)
    seen: list[str | None] = []
    with trace_scope("caller"):
        worker = threading.Thread(target=lambda: seen.append(current_trace_id()))
        worker.start()
        worker.join()
    assert seen == [None]


def test_extras_and_exceptions_keep_a_multiline_traceback_in_one_line(
    stream: io.StringIO,
) -> None:
    configure(json=True, stream=stream)
    log = logging.getLogger("fhir_store.writer")
    try:
        raise ValueError("bad\nresource")
    except ValueError:
        log.exception("write failed", extra={"topic": "fhir.Observation", "count": 3})
    log.warning("explicit", extra={"trace_id": "from-extra", "path": object()})
    failed, explicit = lines(stream)  # two lines: the traceback did not split the event
    assert failed["topic"] == "fhir.Observation" and failed["count"] == 3
    assert "ValueError: bad\nresource" in failed["exception"]
    assert explicit["trace_id"] == "from-extra"
    assert explicit["path"].startswith("<object object")


def test_text_mode_and_reconfiguring_replaces_the_handler(stream: io.StringIO) -> None:
    configure(json=True, stream=io.StringIO())
    configure(json=False, level=logging.WARNING, stream=stream)
    logging.getLogger("caregraph").warning("plain %d", 1)
    logging.getLogger("caregraph").info("hidden")
    assert len(logging.getLogger().handlers) == 1
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" WARNING caregraph: plain 1")
    assert logging.getLogger("httpx").level == logging.WARNING
