"""The code tables: MDC codes agree with their partitions, units carry UCUM, systems map."""

from __future__ import annotations

import re

import pytest

from adapters.codes import LOINC, MDC, MDC_UNITS, coding_system_uri, mdc_code
from adapters.codes.mdc import PARTITION_DIM, PARTITION_OBJECT, PARTITION_SCADA
from adapters.codes.systems import LOCAL_SYSTEM_PREFIX
from adapters.codes.ucum import UCUM_BY_TEXT


def test_code_arithmetic_from_protocols_md() -> None:
    assert mdc_code(2, 19384) == 150456  # MDC_PULS_OXIM_SAT_O2
    assert mdc_code(4, 544) == 262688  # MDC_DIM_PERCENT
    with pytest.raises(ValueError):
        mdc_code(2, 70000)


@pytest.mark.parametrize("term", list(MDC.values()), ids=lambda t: t.reference_id)
def test_terms_sit_in_the_partition_their_name_says(term: object) -> None:
    code, refid = term.code, term.reference_id  # type: ignore[attr-defined]
    partition = PARTITION_OBJECT if refid.startswith("MDC_DEV_") else PARTITION_SCADA
    assert code // 65536 == partition
    assert refid.startswith("MDC_")


def test_units_are_dim_partition_with_ucum() -> None:
    for code, unit in MDC_UNITS.items():
        assert code == unit.code and code // 65536 == PARTITION_DIM
        assert unit.reference_id.startswith("MDC_DIM_")
        assert unit.ucum and " " not in unit.ucum
    assert MDC_UNITS[262688].ucum == "%"
    assert MDC_UNITS[264864].ucum == "/min"
    assert MDC_UNITS[266016].ucum == "mm[Hg]"
    assert MDC_UNITS[268192].ucum == "Cel"


def test_device_hierarchy_codes_follow_the_plus_one_two_three_rule() -> None:
    # device + 2 = VMD, + 3 = channel (NIBP 70684 -> 70686, 70687 in the PoCD IG examples)
    by_name = {t.reference_id: t.code for t in MDC.values()}
    for stem in ("ECG", "ANALY_SAT_O2", "PRESS_BLD_NONINV"):
        assert by_name[f"MDC_DEV_{stem}_CHAN"] == by_name[f"MDC_DEV_{stem}_VMD"] + 1


def test_loinc_codes_have_a_check_digit_shape() -> None:
    for code, name in LOINC.items():
        assert re.fullmatch(r"\d{1,7}-\d", code) and name


def test_loinc_check_digits() -> None:
    # LOINC's mod-10 check digit (Luhn over the code part)
    def check(number: str) -> int:
        digits = [int(c) for c in number][::-1]
        total = 0
        for i, d in enumerate(digits):
            if i % 2 == 0:
                d *= 2
                d = d - 9 if d > 9 else d
            total += d
        return (10 - total % 10) % 10

    for code in LOINC:
        number, digit = code.split("-")
        assert check(number) == int(digit), code


def test_coding_systems() -> None:
    assert coding_system_uri("LN") == "http://loinc.org"
    assert coding_system_uri("MDC") == "urn:iso:std:iso:11073:10101"
    assert coding_system_uri("HL70078") == "http://terminology.hl7.org/CodeSystem/v2-0078"
    assert coding_system_uri("99 LOCAL") == LOCAL_SYSTEM_PREFIX + "99%20LOCAL"
    assert coding_system_uri(" ") is None


def test_ucum_aliases_map_to_ucum() -> None:
    assert UCUM_BY_TEXT["mEq/L"] == "meq/L" and UCUM_BY_TEXT["K/uL"] == "10*3/uL"


def test_pressure_families_are_sys_dia_mean_in_a_row() -> None:
    by_name = {t.reference_id: t.code for t in MDC.values()}
    for family in (
        "MDC_PRESS_BLD",
        "MDC_PRESS_BLD_NONINV",
        "MDC_PRESS_BLD_ART",
        "MDC_PRESS_BLD_ART_ABP",
    ):
        sys_code = by_name[f"{family}_SYS"]
        assert by_name[f"{family}_DIA"] == sys_code + 1
        assert by_name[f"{family}_MEAN"] == sys_code + 2
    assert by_name["MDC_PRESS_BLD_ART_ABP_SYS"] == 150037  # as the simulated HIS feed sends it
