"""IEEE 11073-10101 (MDC) nomenclature: the terms caregraph knows, and units with UCUM.

A code is ``partition * 65536 + term code`` (``150456`` = 2·65536 + 19384). Only codes
checked against public sources (NIST RTMMS, the HL7 Point-of-Care Device IG examples) are
listed; anything else passes through the mapping with its original coding and is counted
as unknown, never dropped. Drivers may add entries at start-up (``MDC[code] = MdcTerm(...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"

PARTITION_OBJECT = 1  # device kinds (MDS, VMD, channel)
PARTITION_SCADA = 2  # measurements
PARTITION_DIM = 4  # units


def mdc_code(partition: int, term: int) -> int:
    """The context-free code of ``term`` in ``partition``."""
    if not 0 <= term < 65536:
        raise ValueError(f"an MDC term code is 16 bits, not {term}")
    return partition * 65536 + term


@dataclass(frozen=True, slots=True)
class MdcTerm:
    """A measurement or device term: its numeric code and its reference id."""

    code: int
    reference_id: str
    display: str


@dataclass(frozen=True, slots=True)
class MdcUnit:
    """A unit (partition 4) with the UCUM code FHIR Quantities carry."""

    code: int
    reference_id: str
    ucum: str


def _terms(*terms: MdcTerm) -> dict[int, MdcTerm]:
    return {t.code: t for t in terms}


MDC: dict[int, MdcTerm] = _terms(
    # Measurements (SCADA, partition 2)
    MdcTerm(147842, "MDC_ECG_HEART_RATE", "Heart rate (ECG)"),
    MdcTerm(150456, "MDC_PULS_OXIM_SAT_O2", "SpO2"),
    MdcTerm(149530, "MDC_PULS_OXIM_PULS_RATE", "Pulse rate (pulse oximetry)"),
    MdcTerm(149546, "MDC_PULS_RATE_NON_INV", "Pulse rate (non-invasive blood pressure)"),
    MdcTerm(150488, "MDC_BLD_PERF_INDEX", "Perfusion index"),
    MdcTerm(150021, "MDC_PRESS_BLD_NONINV_SYS", "Non-invasive blood pressure, systolic"),
    MdcTerm(150022, "MDC_PRESS_BLD_NONINV_DIA", "Non-invasive blood pressure, diastolic"),
    MdcTerm(150023, "MDC_PRESS_BLD_NONINV_MEAN", "Non-invasive blood pressure, mean"),
    # Blood pressure families: base + 1 systolic, + 2 diastolic, + 3 mean. Public samples
    # disagree here; these follow the IHE PCD gateway samples (GE, Philips, OpenICE).
    MdcTerm(150017, "MDC_PRESS_BLD_SYS", "Blood pressure, systolic"),
    MdcTerm(150018, "MDC_PRESS_BLD_DIA", "Blood pressure, diastolic"),
    MdcTerm(150019, "MDC_PRESS_BLD_MEAN", "Blood pressure, mean"),
    MdcTerm(150033, "MDC_PRESS_BLD_ART_SYS", "Arterial blood pressure, systolic"),
    MdcTerm(150034, "MDC_PRESS_BLD_ART_DIA", "Arterial blood pressure, diastolic"),
    MdcTerm(150035, "MDC_PRESS_BLD_ART_MEAN", "Arterial blood pressure, mean"),
    MdcTerm(150037, "MDC_PRESS_BLD_ART_ABP_SYS", "Arterial blood pressure (ABP), systolic"),
    MdcTerm(150038, "MDC_PRESS_BLD_ART_ABP_DIA", "Arterial blood pressure (ABP), diastolic"),
    MdcTerm(150039, "MDC_PRESS_BLD_ART_ABP_MEAN", "Arterial blood pressure (ABP), mean"),
    MdcTerm(151562, "MDC_RESP_RATE", "Respiration rate"),
    MdcTerm(151594, "MDC_AWAY_RESP_RATE", "Airway respiration rate"),
    MdcTerm(151708, "MDC_AWAY_CO2_ET", "End-tidal CO2"),
    MdcTerm(150344, "MDC_TEMP", "Temperature"),
    MdcTerm(150364, "MDC_TEMP_BODY", "Body temperature"),
    MdcTerm(188736, "MDC_MASS_BODY_ACTUAL", "Body weight"),
    MdcTerm(188740, "MDC_LEN_BODY_ACTUAL", "Body height"),
    # Device kinds (object partition 1): device + 1 = MDS, + 2 = VMD, + 3 = channel
    MdcTerm(69965, "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", "Patient monitor"),
    MdcTerm(69798, "MDC_DEV_ECG_VMD", "ECG"),
    MdcTerm(69799, "MDC_DEV_ECG_CHAN", "ECG channel"),
    MdcTerm(69642, "MDC_DEV_ANALY_SAT_O2_VMD", "Pulse oximeter"),
    MdcTerm(69643, "MDC_DEV_ANALY_SAT_O2_CHAN", "Pulse oximeter channel"),
    MdcTerm(70686, "MDC_DEV_PRESS_BLD_NONINV_VMD", "Non-invasive blood pressure"),
    MdcTerm(70687, "MDC_DEV_PRESS_BLD_NONINV_CHAN", "Non-invasive blood pressure channel"),
)

MDC_UNITS: dict[int, MdcUnit] = {
    u.code: u
    for u in (
        MdcUnit(262656, "MDC_DIM_DIMLESS", "1"),
        MdcUnit(262688, "MDC_DIM_PERCENT", "%"),
        MdcUnit(264864, "MDC_DIM_BEAT_PER_MIN", "/min"),
        MdcUnit(264928, "MDC_DIM_RESP_PER_MIN", "/min"),
        MdcUnit(266016, "MDC_DIM_MMHG", "mm[Hg]"),
        MdcUnit(268192, "MDC_DIM_DEGC", "Cel"),
        MdcUnit(266560, "MDC_DIM_FAHR", "[degF]"),
        MdcUnit(263875, "MDC_DIM_KILO_G", "kg"),
        MdcUnit(263441, "MDC_DIM_CENTI_M", "cm"),
        MdcUnit(263762, "MDC_DIM_MILLI_L", "mL"),
        MdcUnit(265266, "MDC_DIM_MILLI_L_PER_HR", "mL/h"),
        MdcUnit(264274, "MDC_DIM_MILLI_G_PER_DL", "mg/dL"),
        MdcUnit(266866, "MDC_DIM_MILLI_MOLE_PER_L", "mmol/L"),
    )
}

# Reference id -> code, for senders that put only the reference id in OBX-3 or OBX-6.
MDC_BY_REFID: dict[str, int] = {t.reference_id: t.code for t in MDC.values()}
MDC_UNITS_BY_REFID: dict[str, int] = {u.reference_id: u.code for u in MDC_UNITS.values()}
