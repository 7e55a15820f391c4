from __future__ import annotations

import gc
import itertools
import random
from typing import Any

import pytest

from linkage import batch as batch_module
from linkage.batch import link_batch
from linkage.errors import InvalidPatient
from linkage.mpi import Mpi, MpiSettings
from linkage.repository import LinkageRepository, MemoryRepository

from .conftest import Clock
from .factories import patient
from .test_training import FAMILY, GIVEN, typo


def population(n: int, seed: int) -> list[dict[str, Any]]:
    """People registered once or twice (typos, another institution), some placeholders."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for person in range(n):
        given = rng.choice(GIVEN) + rng.choice(["", "a", "o"])
        family = rng.choice(FAMILY) + rng.choice(["", "er", "li"])
        dob = f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        pc = str(rng.randint(3000, 3020))
        out.append(patient(given, family, dob, pid=f"p{person}", postcode=pc, line=None))
        if person % 3 == 0:
            out.append(patient(typo(rng, given), family, dob, pid=f"q{person}", postcode=pc))
        if person % 50 == 0:
            out.append(patient("John", "Doe", None, pid=f"doe{person}"))
    rng.shuffle(out)
    return out


def make(repository: LinkageRepository, **settings: Any) -> Mpi:
    counter = itertools.count(1)
    return Mpi(
        repository,
        settings=MpiSettings(**settings),
        clock=Clock(),
        new_golden_id=lambda: f"golden-{next(counter)}",
    )


def state(mpi: Mpi, ids: list[str]) -> dict[str, tuple[str, str]]:
    with mpi.repository.transaction(write=False):
        links = mpi.repository.memberships(ids)
    return {i: (link.golden_id, link.state.value) for i, link in links.items()}


@pytest.mark.parametrize(
    ("workers", "low_cap"),
    [(0, None), (1, None), (2, None), (2, 1)],
    ids=["in-process", "one-worker", "two-workers", "workers-fall-back"],
)
def test_batch_decides_exactly_as_one_at_a_time(
    workers: int, low_cap: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if low_cap is not None:
        # Workers send only the best weak candidate: when it is unconfirmed, the deciding
        # process looks at the whole window itself.
        monkeypatch.setattr(batch_module, "_LOW_CAP", low_cap)
    people = population(300, seed=5)
    ids = [p["id"] for p in people]
    one_by_one = make(MemoryRepository(), tf_min_records=100)
    for p in people:
        one_by_one.ingest(p)
    batch = make(MemoryRepository(), tf_min_records=100)
    report = link_batch(batch, people, chunk=70, workers=workers)
    assert report.possible > 0  # unconfirmed candidates are part of the scenario
    expected = state(one_by_one, ids)
    assert state(batch, ids) == expected
    assert report.records == len(people)
    assert report.new_goldens == len({g for g, _ in expected.values()})
    assert report.matched > 50  # the scenario links people, it is not all singletons
    for gid in {g for g, _ in expected.values()}:
        assert batch.golden(gid)[0].resource == one_by_one.golden(gid)[0].resource
    assert len(batch.history()) == len(people)
    # The same evidence too: each link's score and per-field explanation.
    with batch.repository.transaction(write=False), one_by_one.repository.transaction(write=False):
        explained = batch.repository.memberships(ids)
        reference = one_by_one.repository.memberships(ids)
    assert {i: (x.score, x.explanation) for i, x in explained.items()} == {
        i: (x.score, x.explanation) for i, x in reference.items()
    }
    assert sum(1 for x in explained.values() if x.explanation) > 100


def test_batch_links_against_what_the_index_holds(mpi: Mpi) -> None:
    first = mpi.ingest(patient(pid="a1"))
    report = link_batch(mpi, [patient(pid="a2", given="Ana"), patient(pid="a1", phone="031")])
    assert report.records == 1 and report.updates == 1 and report.new_goldens == 0
    assert mpi.golden_of("a2").golden_id == first.golden_id
    golden, members = mpi.golden(first.golden_id)
    assert {m.source_id for m in members} == {"a1", "a2"}
    assert golden.resource["telecom"][0]["value"] == "031"  # the update went through ingest


def test_batch_refuses_bad_input_before_writing(mpi: Mpi) -> None:
    with pytest.raises(InvalidPatient):
        link_batch(mpi, [patient(pid="a1"), {"resourceType": "Patient"}])
    assert mpi.history() == []


@pytest.mark.parametrize("workers", [0, 1])
def test_batch_onto_an_index_decides_as_one_at_a_time(workers: int) -> None:
    # Term counts come from the index as well as the batch (workers get them beforehand).
    people = population(300, seed=9)
    ids = [p["id"] for p in people]
    one_by_one = make(MemoryRepository(), tf_min_records=100)
    for p in people:
        one_by_one.ingest(p)
    batch = make(MemoryRepository(), tf_min_records=100)
    for p in people[:150]:
        batch.ingest(p)
    link_batch(batch, people[150:], chunk=70, workers=workers)
    assert state(batch, ids) == state(one_by_one, ids)


def test_a_failing_worker_fails_the_batch_before_anything_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> None:
        raise ValueError("comparator broke")

    # Workers weigh a chunk's pairs as arrays (``scan_chunk``), or one by one (``scan``).
    monkeypatch.setattr(batch_module._Scanner, "scan", broken)
    monkeypatch.setattr(batch_module._Scanner, "scan_chunk", broken)
    mpi = make(MemoryRepository(), tf_min_records=100)
    with pytest.raises(RuntimeError, match="comparator broke"):
        link_batch(mpi, population(20, seed=1), workers=1)
    assert mpi.history() == []


def test_batch_leaves_garbage_collection_as_it_found_it() -> None:
    # Collection is off during a batch and its objects frozen as they pile up.
    mpi = make(MemoryRepository(), tf_min_records=100)
    assert gc.isenabled()
    link_batch(mpi, population(20, seed=1), workers=1)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    gc.disable()
    try:
        link_batch(make(MemoryRepository()), population(5, seed=2))
        assert not gc.isenabled()
    finally:
        gc.enable()
