"""Property tests over the whole mapping: for generated ADT and ORU messages, ``normalize``
either raises a ``MappingError`` (answered with AE/AR) or returns resources that all
validate against the FHIR R4B models. Anything else would be a bug that drops a
connection or a message."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import normalize
from caregraph.errors import MappingError
from tests.unit.hl7v2.corpus import msg, msh
from tests.unit.hl7v2.fhir_valid import assert_valid

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RECEIVED = datetime(2024, 3, 5, 7, 30, tzinfo=UTC)

# Field content: mostly plausible, sometimes hostile (delimiters, escapes, odd unicode).
text = st.one_of(
    st.text(alphabet=st.sampled_from("AbcXyz019 .-_/'é"), max_size=12),
    st.text(max_size=8).map(lambda t: t.replace("\r", "").replace("\n", "")),
    st.sampled_from(["", " ", "\\F\\", "\\X41\\", "\\.br\\", "^", "&", "~", "\\"]),
)
# Mostly valid values, so most generated messages map; a few hostile ones (listed last)
# exercise the refusals.
dates = st.one_of(
    st.sampled_from(["", "1980", "198002", "19800214", "202403050830", "20240305083000.1234+0100"]),
    st.sampled_from(["2024030512", "20240305083000-0500"]),
    st.dates().map(lambda d: d.strftime("%Y%m%d")),
)
bad_dates = st.sampled_from(["19801314", "abc", "20240230"])
numbers = st.one_of(
    st.integers(-1000, 100000).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: f"{f:.2f}"),
    st.sampled_from(["+3", "-.5", "0", "1O5", "1e5"]),
)


@st.composite
def pid(draw: st.DrawFn) -> str:
    ident = draw(st.sampled_from(["MRN1", "", "x y", "42"]))
    authority = draw(st.sampled_from(["", "HOSP", "HOSP&1.2.3&ISO", "&urn:x&URI", "A&b c&ISO"]))
    return (
        f"PID|1||{ident}^^^{authority}^{draw(st.sampled_from(['MR', '', 'SS']))}"
        f"~{draw(text)}||{draw(text)}^{draw(text)}^{draw(text)}^^{draw(text)}^^"
        f"{draw(st.sampled_from(['L', 'D', 'X', '']))}||{draw(dates)}|"
        f"{draw(st.sampled_from(['M', 'F', 'U', '', 'A'] * 3 + ['Q']))}|||"
        f"{draw(text)}^^{draw(text)}^^"
        f"{draw(text)}||{draw(text)}^{draw(st.sampled_from(['PRN', 'NET', 'WPN', '']))}"
        f"^{draw(st.sampled_from(['PH', 'Internet', 'CP', '']))}^{draw(text)}"
    )


@st.composite
def pv1(draw: st.DrawFn) -> str:
    fields = [""] * 46
    fields[2] = draw(st.sampled_from(["I", "O", "E", "N", "", "U", "Z"]))
    fields[3] = f"{draw(text)}^{draw(text)}^{draw(text)}"
    fields[7] = f"{draw(text)}^{draw(text)}^{draw(text)}"
    fields[19] = draw(st.sampled_from(["", "V1^^^HOSP^VN", "V2"]))
    fields[44] = draw(dates)
    fields[45] = draw(dates)
    return "PV1|" + "|".join(fields[1:])


@st.composite
def obx(draw: st.DrawFn, n: int) -> str:
    vtype = draw(
        st.sampled_from(["NM", "NM", "SN", "ST", "TX", "CWE", "CE", "TS", "DT"] * 3 + ["NA"])
    )
    value = {
        "NM": draw(numbers),
        "SN": f"{draw(st.sampled_from(['', '<', '>=', '=', '<>']))}^{draw(numbers)}"
        f"^{draw(st.sampled_from(['', '-', ':', '+']))}^{draw(numbers)}",
        "TS": draw(dates),
        "DT": draw(dates),
    }.get(vtype, draw(text))
    code = draw(
        st.sampled_from(
            ["2345-7^Glucose^LN", "150456^MDC_PULS_OXIM_SAT_O2^MDC", "X^Y^99L", "1^^MDC"] * 3
            + ["^^"]
        )
    )
    unit = draw(st.sampled_from(["mg/dL", "262688^MDC_DIM_PERCENT^MDC", "", "zz^^UCUM", "1^^MDC"]))
    path = draw(st.sampled_from(["", "1", "1.1.1.1", "1.0.0.0", "2.1", "a.b"]))
    status = draw(st.sampled_from(["F", "P", "C", "X", "R", ""] * 3 + ["Q"]))
    eui = draw(st.sampled_from(["", "0123456789ABCDEF^EUI-64", "dev^NS", "01-23"]))
    return (
        f"OBX|{n}|{vtype}|{code}|{path}|{value}|{unit}"
        f"|{draw(st.sampled_from(['', '1-2', '<5', 'x']))}"
        f"|{draw(st.sampled_from(['', 'H', 'HH', 'WEIRD']))}|||{status}|||{draw(dates)}||||{eui}"
    )


def check(raw: bytes) -> None:
    try:
        result = normalize(raw, received_at=RECEIVED)
    except MappingError as exc:
        assert exc.location  # every refusal says where
        return
    for resource in result.resources:
        assert_valid(resource)
    for merge in result.merges:
        assert_valid(merge.as_parameters())


@SETTINGS
@given(
    event=st.sampled_from(["A01", "A02", "A03", "A04", "A05", "A08", "A11", "A13", "A28", "A40"]),
    version=st.sampled_from(["2.3", "2.5.1", "2.8"]),
    pid_=pid(),
    pv1_=pv1(),
    mrg=st.sampled_from(["MRG|OLD1^^^HOSP^MR", "MRG|", ""]),
)
def test_generated_adt(event: str, version: str, pid_: str, pv1_: str, mrg: str) -> None:
    segments = [msh(f"ADT^{event}", "G1", version=version), f"EVN|{event}", pid_]
    segments += [mrg] if event == "A40" and mrg else []
    segments.append(pv1_)
    check(msg(*segments))


@SETTINGS
@given(
    pid_=pid(),
    pv1_=pv1(),
    rows=st.lists(st.integers(1, 1000), min_size=1, max_size=6).flatmap(
        lambda ns: st.tuples(*(obx(i + 1) for i in range(len(ns))))
    ),
    obr_time=st.one_of(dates, bad_dates),
    pcd=st.booleans(),
)
def test_generated_oru(
    pid_: str, pv1_: str, rows: tuple[str, ...], obr_time: str, pcd: bool
) -> None:
    extra = "|||AL|NE||||IHE_PCD_001" if pcd else ""
    segments = [msh("ORU^R01", "G2", extra=extra), pid_, pv1_, f"OBR|1||F1|X^Y^L|||{obr_time}"]
    check(msg(*segments, *rows))
