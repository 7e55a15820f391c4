from datetime import UTC, datetime
from itertools import islice

from hl7apy.parser import parse_message

from devices.feeds.hl7 import VITALS, HospitalFeed

WHEN = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)


def test_messages_parse_with_hl7apy_and_carry_pcd01_fields() -> None:
    feed = HospitalFeed(patients=2, seed=7)
    p = feed.patients[0]
    adt = parse_message(feed.admission(p, WHEN).decode().replace("\n", "\r"))
    assert adt.msh.msh_9.to_er7() == "ADT^A01^ADT_A01"
    assert adt.pid.pid_3.cx_1.to_er7() == p.mrn
    oru_raw = feed.vitals(p, WHEN).decode()
    obx = [s for s in oru_raw.split("\r") if s.startswith("OBX")]
    assert len(obx) == 2 + len(VITALS)
    assert all(s.split("|")[11] == "X" for s in obx[:2])
    hr = obx[2].split("|")
    assert hr[3].startswith("147842^MDC_ECG_HEART_RATE")
    assert 50 <= float(hr[5]) <= 110
    assert hr[18] == f"{p.monitor_eui64}^EUI-64"


def test_control_ids_are_unique_and_seed_is_deterministic() -> None:
    a = list(islice(HospitalFeed(3, seed=1).stream(WHEN), 20))
    b = list(islice(HospitalFeed(3, seed=1).stream(WHEN), 20))
    assert a == b
    ids = {m.split(b"\r")[0].split(b"|")[9] for m in a}
    assert len(ids) == 20


def test_values_vary_over_time() -> None:
    feed = HospitalFeed(1, seed=3)
    p = feed.patients[0]
    first = feed.vitals(p, WHEN).split(b"\r")[6]
    later = feed.vitals(p, WHEN.replace(minute=20)).split(b"\r")[6]
    assert first.split(b"|")[5] != later.split(b"|")[5]
