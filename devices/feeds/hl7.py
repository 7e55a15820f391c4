"""A simulated hospital HL7 v2 sender: ADT admissions and IHE PCD-01 vital-sign results.

The messages are what a real HIS and a device gateway send: ADT^A01 with patient,
location down to the bed and attending/admitting practitioners; ORU^R01 per IHE PCD-01
with IEEE 11073 MDC codes in OBX-3, containment path in OBX-4, the monitor's EUI-64 in
OBX-18 and hierarchy rows with status X. Values drift plausibly over time per patient.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_FIRST = ["Anna", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun"]
_LAST = ["Garcia", "Okafor", "Li", "Novak", "Schmidt", "Tanaka", "Rossi", "Haddad", "Berg"]

# (MDC code, reference id, MDC unit code, unit reference id, mean, amplitude, digits)
VITALS: tuple[tuple[int, str, int, str, float, float, int], ...] = (
    (147842, "MDC_ECG_HEART_RATE", 264864, "MDC_DIM_BEAT_PER_MIN", 78, 12, 0),
    (150456, "MDC_PULS_OXIM_SAT_O2", 262688, "MDC_DIM_PERCENT", 96, 2, 0),
    (151562, "MDC_RESP_RATE", 264928, "MDC_DIM_RESP_PER_MIN", 16, 3, 0),
    (150037, "MDC_PRESS_BLD_ART_ABP_SYS", 266016, "MDC_DIM_MMHG", 122, 10, 0),
    (150038, "MDC_PRESS_BLD_ART_ABP_DIA", 266016, "MDC_DIM_MMHG", 78, 6, 0),
    (150364, "MDC_TEMP_BODY", 268192, "MDC_DIM_DEGC", 37.0, 0.4, 1),
)


@dataclass(frozen=True)
class SimPatient:
    mrn: str
    family: str
    given: str
    birth_date: str
    sex: str
    bed: str
    monitor_eui64: str
    phase: float


def _birth_date(rng: random.Random) -> str:
    return f"{rng.randint(1935, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


class HospitalFeed:
    """Generates the HL7 v2 traffic of ``patients`` monitored patients, deterministic per seed."""

    def __init__(
        self,
        patients: int = 8,
        *,
        seed: int = 1,
        facility: str = "GENHOSP",
        authority_oid: str = "2.16.840.1.113883.3.999.1",
    ) -> None:
        rng = random.Random(seed)
        self.facility = facility
        self.authority_oid = authority_oid
        self.patients = [
            SimPatient(
                mrn=f"MRN{100000 + i}",
                family=rng.choice(_LAST),
                given=rng.choice(_FIRST),
                birth_date=_birth_date(rng),
                sex=rng.choice("FM"),
                bed=f"{i + 1:02d}",
                monitor_eui64=f"{0x0012_3400_0000_0000 + i:016X}",
                phase=rng.random() * 2 * math.pi,
            )
            for i in range(patients)
        ]
        self._seq = 0

    def _control_id(self) -> str:
        self._seq += 1
        return f"{self.facility}{self._seq:09d}"

    def _msh(self, sending_app: str, message_type: str, when: datetime, extra: str = "") -> str:
        msh = (
            f"MSH|^~\\&|{sending_app}|{self.facility}|CAREGRAPH|{self.facility}|{_ts(when)}||"
            f"{message_type}|{self._control_id()}|P|2.6|||AL|NE"
        )
        return msh + extra

    def _pid(self, p: SimPatient) -> str:
        return (
            f"PID|1||{p.mrn}^^^{self.facility}&{self.authority_oid}&ISO^MR||"
            f"{p.family}^{p.given}^^^^^L||{p.birth_date}|{p.sex}|||"
            f"{10 + len(p.mrn)} Harbour Road^^Springfield^^{40000 + int(p.bed)}^NL"
        )

    def _pv1(self, p: SimPatient) -> str:
        return (
            f"PV1|1|I|ICU^{p.bed}^1^{self.facility}||||1001^Visser^Marta^^^Dr|||MED||||||"
            f"|1002^Kaplan^Omar^^^Dr|||V{p.mrn[3:]}"
        )

    def admission(self, p: SimPatient, when: datetime) -> bytes:
        """ADT^A01 for one patient: admitted to an ICU bed."""
        segments = [
            self._msh("ADT", "ADT^A01^ADT_A01", when),
            f"EVN|A01|{_ts(when)}",
            self._pid(p),
            self._pv1(p),
        ]
        return ("\r".join(segments) + "\r").encode()

    def vitals(self, p: SimPatient, when: datetime) -> bytes:
        """ORU^R01 (IHE PCD-01) with the monitor's hierarchy and six vital signs."""
        t = when.timestamp() / 60.0 + p.phase
        eui = f"{p.monitor_eui64}^EUI-64"
        segments = [
            self._msh(
                f"MONITOR_GW^{p.monitor_eui64}^EUI-64",
                "ORU^R01^ORU_R01",
                when,
                "||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
            ),
            self._pid(p),
            self._pv1(p),
            f"OBR|1|{self._seq}^MONITOR_GW|{self._seq}^MONITOR_GW|"
            f"182777000^monitoring of patient^SCT|||{_ts(when)}",
            f"OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||{eui}",
            f"OBX|2||69798^MDC_DEV_METER_PHYSIO_MULTI_PARAM_VMD^MDC|1.1.0.0|||||||X|||||||{eui}",
        ]
        for n, (code, ref, unit, unit_ref, mean, amp, digits) in enumerate(VITALS, start=3):
            value = round(mean + amp * math.sin(t + n), digits)
            text = f"{value:.{digits}f}"
            segments.append(
                f"OBX|{n}|NM|{code}^{ref}^MDC|1.1.1.{n - 2}|{text}|{unit}^{unit_ref}^MDC|||||R|||"
                f"{_ts(when)}||||{eui}"
            )
        return ("\r".join(segments) + "\r").encode()

    def stream(self, start: datetime, interval_s: float = 1.0) -> Iterator[bytes]:
        """Admissions first, then a vitals message per patient per interval, forever."""
        for p in self.patients:
            yield self.admission(p, start)
        tick = 0
        while True:
            when = start + timedelta(seconds=tick * interval_s)
            for p in self.patients:
                yield self.vitals(p, when)
            tick += 1
