"""IEEE 11073-10101 (MDC) codes, units and LOINC for the readings the serial codecs emit.

An MDC code is ``partition * 65536 + term``. Philips' ``NOM_*`` physiological ids are the
MDC terms of partition 2 (SCADA) and its ``NOM_DIM_*`` the terms of partition 4 (DIM), so
the codes below are derived from the vendor ids rather than typed twice. Where a vendor id
has no MDC term we know to be right, the code is ``None`` and only the vendor code is kept.

Kept here until the shared MDC table in ``adapters/codes/`` lands; then these entries move.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.serial.measurement import Unit

PART_SCADA = 2
PART_DIM = 4


def mdc(partition: int, term: int) -> int:
    """The 32-bit MDC code of ``term`` in ``partition``."""
    return partition * 65536 + term


@dataclass(frozen=True, slots=True)
class Metric:
    """What a vendor id means: MDC code and reference id, LOINC, display."""

    mdc: int | None
    ref_id: str
    display: str
    loinc: str | None = None


# Units: UCUM code, MDC_DIM_* code (partition 4), display text.
BEAT_PER_MIN = Unit("/min", mdc(PART_DIM, 0x0AA0), "bpm")
RESP_PER_MIN = Unit("/min", mdc(PART_DIM, 0x0AE0), "breaths/min")
PERCENT = Unit("%", mdc(PART_DIM, 0x0220), "%")
MMHG = Unit("mm[Hg]", mdc(PART_DIM, 0x0F20), "mmHg")
KPA = Unit("kPa", mdc(PART_DIM, 0x0F03), "kPa")
DEGC = Unit("Cel", mdc(PART_DIM, 0x17A0), "°C")
DIMLESS = Unit("1", mdc(PART_DIM, 0x0200), "1")
# Units whose MDC term we have not verified keep only UCUM.
MBAR = Unit("mbar", None, "mbar")
MILLILITRE = Unit("mL", None, "mL")
LITRE = Unit("L", None, "L")
LITRE_PER_MIN = Unit("L/min", None, "L/min")
MMOL_PER_L = Unit("mmol/L", None, "mmol/L")
MG_PER_DL = Unit("mg/dL", None, "mg/dL")
G_PER_DL = Unit("g/dL", None, "g/dL")
SECOND = Unit("s", None, "s")

# Philips/MDC physiological terms (partition 2) used by more than one protocol.
HEART_RATE = Metric(mdc(PART_SCADA, 16770), "MDC_ECG_HEART_RATE", "Heart rate", "8867-4")
SPO2 = Metric(mdc(PART_SCADA, 19384), "MDC_PULS_OXIM_SAT_O2", "SpO2", "59408-5")
# Philips reports NOM_PLETH_PULS_RATE (18466, i.e. 149538); RTMMS and most public PCD-01
# samples use MDC_PULS_OXIM_PULS_RATE 149530 (term 18458). We emit 149530 and keep the vendor id.
PULSE_RATE = Metric(mdc(PART_SCADA, 18458), "MDC_PULS_OXIM_PULS_RATE", "Pulse rate", "8889-8")
NIBP_SYS = Metric(mdc(PART_SCADA, 18949), "MDC_PRESS_BLD_NONINV_SYS", "NIBP systolic", "8480-6")
NIBP_DIA = Metric(mdc(PART_SCADA, 18950), "MDC_PRESS_BLD_NONINV_DIA", "NIBP diastolic", "8462-4")
NIBP_MEAN = Metric(mdc(PART_SCADA, 18951), "MDC_PRESS_BLD_NONINV_MEAN", "NIBP mean", "8478-0")
# 150037.. as in public PCD-01 samples (Philips NOM_PRESS_BLD_ART_ABP_* + partition 2); the
# shared table's 150033..35 are the MDC_PRESS_BLD_ART_* terms without ABP.
ABP_SYS = Metric(mdc(PART_SCADA, 18965), "MDC_PRESS_BLD_ART_ABP_SYS", "ABP systolic", "76215-3")
ABP_DIA = Metric(mdc(PART_SCADA, 18966), "MDC_PRESS_BLD_ART_ABP_DIA", "ABP diastolic", "76213-8")
ABP_MEAN = Metric(mdc(PART_SCADA, 18967), "MDC_PRESS_BLD_ART_ABP_MEAN", "ABP mean", "76214-6")
RESP_RATE = Metric(mdc(PART_SCADA, 20490), "MDC_RESP_RATE", "Respiratory rate", "9279-1")
# Philips' NOM_AWAY_RESP_RATE (20498) and NOM_AWAY_CO2_ET (20656) differ from the RTMMS terms
# the shared table (adapters/codes/mdc.py) lists; we emit the RTMMS codes, the vendor id
# stays in the vendor coding.
AWAY_RESP_RATE = Metric(
    mdc(PART_SCADA, 20522), "MDC_AWAY_RESP_RATE", "Airway respiratory rate", "9279-1"
)
TEMP = Metric(mdc(PART_SCADA, 19272), "MDC_TEMP", "Temperature", "8310-5")
ETCO2 = Metric(mdc(PART_SCADA, 20636), "MDC_AWAY_CO2_ET", "End-tidal CO2", "19889-5")
FIO2 = Metric(mdc(PART_SCADA, 21124), "MDC_CONC_AWAY_O2_INSP", "Inspired O2", "3150-0")
PEAK_PRESSURE = Metric(
    mdc(PART_SCADA, 20745), "MDC_PRESS_AWAY_INSP_MAX", "Peak airway pressure", "76531-3"
)
PEEP = Metric(mdc(PART_SCADA, 20904), "MDC_VENT_PRESS_AWAY_END_EXP_POS", "PEEP", "76248-4")
TIDAL_VOLUME = Metric(mdc(PART_SCADA, 20796), "MDC_VOL_AWAY_TIDAL", "Tidal volume", "76222-9")
MINUTE_VOLUME = Metric(mdc(PART_SCADA, 20808), "MDC_VOL_MINUTE_AWAY", "Minute volume", "76009-0")

# Blood gas / chemistry (partition 2 terms from the Philips NOM_CONC_* ids).
PH = Metric(mdc(PART_SCADA, 28676), "MDC_CONC_PH_ART", "pH", "2744-1")
PCO2 = Metric(mdc(PART_SCADA, 28680), "MDC_CONC_PCO2_ART", "pCO2", "2019-8")
PO2 = Metric(mdc(PART_SCADA, 28684), "MDC_CONC_PO2_ART", "pO2", "2703-7")
HB = Metric(mdc(PART_SCADA, 28692), "MDC_CONC_HB_ART", "Hemoglobin", "718-7")
NA = Metric(mdc(PART_SCADA, 28940), "MDC_CONC_NA_GEN", "Sodium", "2951-2")
K = Metric(mdc(PART_SCADA, 28944), "MDC_CONC_K_GEN", "Potassium", "2823-3")
GLU = Metric(mdc(PART_SCADA, 28948), "MDC_CONC_GLU_GEN", "Glucose", "2345-7")
CA = Metric(mdc(PART_SCADA, 28952), "MDC_CONC_CA_GEN", "Calcium, ionized", "1994-3")
HCO3 = Metric(mdc(PART_SCADA, 28936), "MDC_CONC_HCO3_GEN", "Bicarbonate", "1960-4")
CL = Metric(mdc(PART_SCADA, 29032), "MDC_CONC_CHLORIDE_GEN", "Chloride", "2075-0")
BE = Metric(mdc(PART_SCADA, 29036), "MDC_BASE_EXCESS_BLD_ART", "Base excess", "1925-7")
HCT = Metric(mdc(PART_SCADA, 29060), "MDC_CONC_HCT_GEN", "Hematocrit", "20570-8")
LACTATE = Metric(None, "", "Lactate", "32693-4")
SO2 = Metric(None, "", "Oxygen saturation", "2708-6")

# Analyzer unit strings (as instruments print them) -> UCUM.
UNIT_BY_TEXT: dict[str, Unit] = {
    "mmhg": MMHG,
    "kpa": KPA,
    "mmol/l": MMOL_PER_L,
    "mg/dl": MG_PER_DL,
    "g/dl": G_PER_DL,
    "%": PERCENT,
    "": DIMLESS,
    "bpm": BEAT_PER_MIN,
    "/min": BEAT_PER_MIN,
    "c": DEGC,
    "degc": DEGC,
    "cel": DEGC,
}


def unit_from_text(text: str) -> Unit:
    """The unit an analyzer printed, as UCUM; an unknown string is kept as-is, without MDC."""
    known = UNIT_BY_TEXT.get(text.strip().lower())
    return known if known is not None else Unit(text.strip(), None, text.strip())
