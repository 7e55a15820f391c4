from pathlib import Path

import pytest
from pydantic import ValidationError

from caregraph.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DATA_DIR", "DATABASE_URL", "KAFKA_BOOTSTRAP", "HTTP_PORT"):
        monkeypatch.delenv(f"CAREGRAPH_{key}", raising=False)
    s = Settings()
    assert s.data_dir == Path("caregraph-data")
    assert s.kafka_bootstrap is None
    assert (s.http_host, s.http_port, s.mllp_port, s.dicom_port) == ("127.0.0.1", 8080, 2575, 11112)
    assert s.dicom_ae == "CAREGRAPH"
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.effective_database_url.endswith("caregraph-data/caregraph.sqlite3")


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREGRAPH_HTTP_PORT", "9090")
    monkeypatch.setenv("CAREGRAPH_DATABASE_URL", "postgresql://u@h/db")
    s = Settings()
    assert s.http_port == 9090
    assert s.effective_database_url == "postgresql://u@h/db"


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREGRAPH_HTTP_PORT", "9090")
    assert Settings(http_port=7070).http_port == 7070


@pytest.mark.parametrize(
    ("field", "value"), [("http_port", 70000), ("dicom_ae", "X" * 17), ("kafka_partitions", 0)]
)
def test_bad_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})
