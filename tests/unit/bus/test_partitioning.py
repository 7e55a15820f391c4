from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.partitioning import assign, partition_for


def test_partition_is_stable_and_in_range() -> None:
    # Fixed values: CRC-32 does not change between processes or Python versions.
    assert partition_for(b"patient-1", 6) == partition_for(b"patient-1", 6)
    assert {partition_for(f"k{i}".encode(), 6) for i in range(200)} == set(range(6))
    assert partition_for(b"", 1) == 0


def test_partition_rejects_no_partitions() -> None:
    with pytest.raises(ValueError):
        partition_for(b"x", 0)


def test_assign_covers_every_partition_exactly_once() -> None:
    subs = {"a": frozenset({"t1", "t2"}), "b": frozenset({"t1"}), "c": frozenset({"t1", "t2"})}
    result = assign(subs, {"t1": 6, "t2": 4})
    owned = [tp for tps in result.values() for tp in tps]
    assert sorted(owned) == sorted([("t1", p) for p in range(6)] + [("t2", p) for p in range(4)])
    assert all(topic == "t1" for topic, _ in result["b"])
    assert {len(result[m]) for m in "abc"} <= {2, 3, 4, 5}


def test_assign_is_the_same_for_every_member_and_order() -> None:
    subs = {"x": frozenset({"t"}), "y": frozenset({"t"})}
    assert assign(subs, {"t": 6}) == assign(dict(reversed(list(subs.items()))), {"t": 6})
    assert assign(subs, {}) == {"x": frozenset(), "y": frozenset()}


@given(
    subs=st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.frozensets(st.sampled_from(["a", "b", "c"]), min_size=1),
        min_size=1,
        max_size=6,
    ),
    counts=st.fixed_dictionaries(
        {"a": st.integers(0, 12), "b": st.integers(0, 12), "c": st.integers(0, 12)}
    ),
)
def test_assign_properties(subs: dict[str, frozenset[str]], counts: dict[str, int]) -> None:
    result = assign(subs, counts)
    assert set(result) == set(subs)
    owned = [tp for tps in result.values() for tp in tps]
    wanted = {t for ts in subs.values() for t in ts}
    # Every partition of every subscribed topic goes to exactly one member...
    assert sorted(owned) == sorted((t, p) for t in wanted for p in range(counts[t]))
    for member, tps in result.items():
        # ...which reads that topic...
        assert all(topic in subs[member] for topic, _ in tps)
    for topic in wanted:
        # ...and each topic is spread evenly over its readers.
        shares = [sum(1 for t, _ in result[m] if t == topic) for m in subs if topic in subs[m]]
        assert max(shares) - min(shares) <= 1
