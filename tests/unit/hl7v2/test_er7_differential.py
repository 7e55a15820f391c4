"""The fast tokenizer yields exactly the field, component and subcomponent values hl7apy
(the reference parser) yields, over the corpus and over generated messages.

Documented differences in how hl7apy *re-serializes* (not in the values): it drops some
trailing empty components/subcomponents and keeps others, and it lists a field holding only
delimiters (``||^||``) as present but empty; so both sides are compared with trailing empty
parts trimmed, and a field counts as present when it holds a value. Formatting escapes
(``\\.br\\``) in non-FT types are left out of the corpus: hl7apy treats them as literal
text there, caregraph's ``unescape`` decodes them (tested in test_er7.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.hl7v2.er7 import Er7Message, Segment, tokenize
from tests.unit.hl7v2.corpus import CORPUS, msh

_POS = re.compile(r"_(\d+)$")


def _pos(name: str | None) -> int | None:
    m = _POS.search(name or "")
    return int(m.group(1)) if m else None


def _trim(value: str, seg: Segment) -> str:
    d = seg.delimiters
    comps = [
        d.subcomponent.join(_rstrip_empty(c.split(d.subcomponent)))
        for c in value.split(d.component)
    ]
    return d.component.join(_rstrip_empty(comps))


def _rstrip_empty(items: list[str]) -> list[str]:
    while items and not items[-1]:
        items.pop()
    return items


def hl7apy_view(text: str) -> list[tuple[str, dict[int, list[Any]]]]:
    """Per segment: field position -> [(repetition er7, {component: (er7, {sub: er7})})]."""
    message = parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
    out = []
    for seg in message.children:
        fields: dict[int, list[Any]] = {}
        for fld in seg.children:
            n = _pos(fld.name)
            assert n is not None
            comps: dict[int, Any] = {}
            for comp in fld.children:
                c = _pos(comp.name)
                if c is None:
                    continue  # base types and Z-segments: position not named, er7 compared
                subs = {}
                for sub in getattr(comp, "children", []):
                    s = _pos(sub.name)
                    if s is not None:
                        subs[s] = sub.to_er7()
                comps[c] = (comp.to_er7(), subs)
            fields.setdefault(n, []).append((fld.to_er7(), comps))
        out.append((seg.name, fields))
    return out


def assert_same_as_hl7apy(text: str) -> None:
    reference = hl7apy_view(text)
    mine: Er7Message = tokenize(text)
    assert [name for name, _ in reference] == [s.name for s in mine.segments]
    for (_, fields), seg in zip(reference, mine.segments, strict=True):
        present = {n for n in range(1, len(seg.fields)) if any(_trim(r, seg) for r in seg.reps(n))}
        theirs = {n for n, reps in fields.items() if any(_trim(er7, seg) for er7, _ in reps)}
        assert theirs == present, seg
        for n, reps in fields.items():
            if n <= 2 and seg.name == "MSH":  # MSH-1/MSH-2 are the delimiters themselves
                assert [er7 for er7, _ in reps] == seg.reps(n)
                continue
            if n not in present:
                continue
            assert [_trim(er7, seg) for er7, _ in reps] == [_trim(r, seg) for r in seg.reps(n)]
            for rep, (_, comps) in enumerate(reps):
                for c, (er7, subs) in comps.items():
                    assert _trim(seg.component(n, c, rep), seg) == _trim(er7, seg), (seg, n, c)
                    my_subs = seg.subcomponents(n, c, rep)
                    for s, value in subs.items():
                        assert (my_subs[s - 1] if s <= len(my_subs) else "") == value


@pytest.mark.parametrize("raw", CORPUS, ids=lambda r: r.split(b"|")[9].decode())
def test_corpus_matches_hl7apy(raw: bytes) -> None:
    assert_same_as_hl7apy(raw.decode("utf-8"))


_text = st.text(alphabet=st.sampled_from("ABCXYZabcxyz0189 .-_/:"), min_size=0, max_size=6).map(
    str.strip
)
_subs = st.lists(_text, min_size=1, max_size=3).map("&".join)
_comps = st.lists(_subs, min_size=1, max_size=4).map("^".join)
_reps = st.lists(_comps, min_size=1, max_size=3).map("~".join)
_zseg = st.lists(_reps, min_size=1, max_size=8).map(lambda fs: "ZZZ|" + "|".join(fs))
_cx = st.tuples(_text.filter(bool), _text, _text).map(
    lambda t: f"{t[0]}^^^{t[1]}&{t[2]}&ISO^MR" if t[1] else f"{t[0]}^^^^MR"
)
_pid = st.tuples(st.lists(_cx, min_size=1, max_size=3), _text, _text).map(
    lambda t: f"PID|||{'~'.join(t[0])}||{t[1]}^{t[2]}"
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pid=_pid, zsegs=st.lists(_zseg, min_size=0, max_size=3))
def test_generated_messages_match_hl7apy(pid: str, zsegs: list[str]) -> None:
    text = "\r".join([msh("ADT^A08^ADT_A01", "GEN1"), "EVN|A08", pid, "PV1||O", *zsegs]) + "\r"
    assert_same_as_hl7apy(text)
