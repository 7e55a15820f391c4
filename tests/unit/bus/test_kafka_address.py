from __future__ import annotations

import pytest

from bus.kafka import parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("broker:9093", ("broker", 9093)),
        (" 127.0.0.1:19092 ", ("127.0.0.1", 19092)),
        ("broker", ("broker", 9092)),
        ("[::1]:9094", ("::1", 9094)),
        ("[::1]", ("::1", 9092)),
    ],
)
def test_parses_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["", ":9092", "broker:", "broker:http", "::1", "b:99999", "[::1]x"]
)
def test_refuses_what_is_not_host_port(text: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        parse_address(text)
