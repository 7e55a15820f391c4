"""HL7 v2 messages for tests: ADT, lab ORU and IHE PCD-01 ORU, as senders write them.

Segments end with CR. Built from the structures of HL7 v2.3-2.8 and the IHE PCD-01
examples (MDC codes in OBX-3, containment path in OBX-4, EUI-64 in OBX-18, hierarchy rows
with status X); identifiers and names are invented.
"""

from __future__ import annotations


def msg(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode("utf-8")


def msh(
    kind: str,
    control_id: str,
    *,
    version: str = "2.5.1",
    facility: str = "NORTH^1.2.840.99999.1^ISO",
    app: str = "ADTSYS",
    extra: str = "",
) -> str:
    return (
        f"MSH|^~\\&|{app}|{facility}|CAREGRAPH|HOSP|20240305083000+0100||{kind}|{control_id}"
        f"|P|{version}{extra}"
    )


PID = (
    "PID|1||MRN12345^^^NORTH&1.2.840.99999.1.2&ISO^MR~987654321^^^SSA^SS||"
    "Smith^Anna^Maria^Jr^Dr^^L~Smyth^Ann^^^^^A||19800214|F|||"
    "12 Main St^Apt 4^Springfield^IL^62701^USA^H||"
    "(217)555-0101^PRN^PH~^NET^Internet^anna@example.org"
    "|(217)555-0199^WPN^PH"
)


def _pv1(**fields: str) -> str:
    """A PV1 with the given fields (``f3="ICU^101^B"``); the rest empty."""
    values = {int(k[1:]): v for k, v in fields.items()}
    return "|".join(["PV1", *(values.get(i, "") for i in range(1, max(values) + 1))])


PV1 = _pv1(
    f1="1",
    f2="I",
    f3="ICU^101^B^NORTH",
    f7="1234^House^Gregory^^^Dr^^^NORTH&1.2.840.99999.1.3&ISO",
    f8="5678^Wilson^James",
    f17="9012^Cuddy^Lisa^^^Dr^^^NORTH&1.2.840.99999.1.3&ISO",
    f19="V0001^^^NORTH&1.2.840.99999.1.4&ISO^VN",
    f44="20240305080000+0100",
)
EVN = "EVN|{event}|20240305082959+0100|||OP1|20240305082900+0100"


def adt(event: str, control_id: str, *, version: str = "2.5.1", pv1: str = PV1) -> bytes:
    structure = "ADT_A01" if event in ("A01", "A04", "A08", "A13") else f"ADT_{event}"
    return msg(
        msh(f"ADT^{event}^{structure}", control_id, version=version),
        EVN.format(event=event),
        PID,
        pv1,
    )


ADT_A01 = adt("A01", "ADT0001")
ADT_A02 = msg(
    msh("ADT^A02^ADT_A02", "ADT0002"),
    EVN.format(event="A02"),
    PID,
    PV1.replace("ICU^101^B^NORTH||||", "WARD3^301^A^NORTH|||ICU^101^B^NORTH|"),
)
ADT_A03 = msg(
    msh("ADT^A03^ADT_A03", "ADT0003"),
    EVN.format(event="A03"),
    PID,
    PV1 + "|20240310120000+0100",  # PV1-45 discharge
)
ADT_A28 = msg(msh("ADT^A28^ADT_A05", "ADT0028"), EVN.format(event="A28"), PID, "PV1|1|N")
ADT_A40 = msg(
    msh("ADT^A40^ADT_A39", "ADT0040"),
    EVN.format(event="A40"),
    PID,
    "MRG|MRN99999^^^NORTH&1.2.840.99999.1.2&ISO^MR",
)
ADT_ALL = {
    event: adt(event, f"ADT1{event}") for event in ("A01", "A04", "A05", "A08", "A11", "A13")
}
ADT_ALL.update({"A02": ADT_A02, "A03": ADT_A03, "A28": ADT_A28, "A40": ADT_A40})
ADT_ALL["A31"] = msg(msh("ADT^A31^ADT_A05", "ADT0031"), EVN.format(event="A31"), PID, "PV1|1|N")

ORU_LAB = msg(
    msh("ORU^R01^ORU_R01", "LAB0001", app="LIS", facility="LAB"),
    "PID|1||MRN12345^^^NORTH&1.2.840.99999.1.2&ISO^MR||Smith^Anna||19800214|F",
    "PV1|1|O|CLINIC^^^NORTH",
    "ORC|RE|ORD1|FIL1",
    "OBR|1|ORD1|FIL1|24323-8^Comprehensive metabolic panel^LN|||20240305070000+0100",
    "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F|||20240305071500+0100",
    "OBX|2|NM|2951-2^Sodium^LN||140|mmol/L|136-145|N|||F",
    "OBX|3|SN|2160-0^Creatinine^LN||<^0.5|mg/dL|0.6-1.2|L|||F",
    "OBX|4|ST|8251-1^Service comment^LN||Sample slightly haemolysed \\T\\ re-run||||||F",
    "OBX|5|CWE|5778-6^Color of Urine^LN||YEL^Yellow^L||||||F",
    "OBX|6|SN|5130-0^Titer^LN||^1^:^128||||||P",
    "OBX|7|NM|99999-9^Local test^99LOC||7.5|zz/hh|>5||||C",
    "OBX|8|TS|18769-0^Date collected^LN||20240305065500||||||F",
)


def pcd01(
    control_id: str,
    n_metrics: int = 10,
    *,
    eui64: str = "0123456789ABCDEF",
    observed: str = "20240305083000.123+0100",
) -> bytes:
    """An IHE PCD-01 message: MDS, VMD and channel rows, then ``n_metrics`` metric rows
    observed at ``observed`` (OBX-14)."""
    metrics = [
        ("150456^MDC_PULS_OXIM_SAT_O2^MDC", "98", "262688^MDC_DIM_PERCENT^MDC"),
        ("149530^MDC_PULS_OXIM_PULS_RATE^MDC", "72", "264864^MDC_DIM_BEAT_PER_MIN^MDC"),
        ("147842^MDC_ECG_HEART_RATE^MDC", "71", "264864^MDC_DIM_BEAT_PER_MIN^MDC"),
        ("150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "120", "266016^MDC_DIM_MMHG^MDC"),
        ("150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "80", "266016^MDC_DIM_MMHG^MDC"),
        ("150023^MDC_PRESS_BLD_NONINV_MEAN^MDC", "93", "266016^MDC_DIM_MMHG^MDC"),
        ("151562^MDC_RESP_RATE^MDC", "16", "264928^MDC_DIM_RESP_PER_MIN^MDC"),
        ("150364^MDC_TEMP_BODY^MDC", "36.8", "268192^MDC_DIM_DEGC^MDC"),
        ("151708^MDC_AWAY_CO2_ET^MDC", "38", "266016^MDC_DIM_MMHG^MDC"),
        ("150488^MDC_BLD_PERF_INDEX^MDC", "2.1", "262688^MDC_DIM_PERCENT^MDC"),
    ]
    rows = [
        # the MDS row with unused levels as 0 (as most gateways write it), the others short
        f"OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||{eui64}^EUI-64",
        f"OBX|2||69642^MDC_DEV_ANALY_SAT_O2_VMD^MDC|1.1|||||||X|||||||{eui64}^EUI-64",
        f"OBX|3||69643^MDC_DEV_ANALY_SAT_O2_CHAN^MDC|1.1.1.0|||||||X|||||||{eui64}^EUI-64",
    ]
    for i in range(n_metrics):
        code, value, unit = metrics[i % len(metrics)]
        rows.append(
            f"OBX|{i + 4}|NM|{code}|1.1.1.{i + 1}|{value}|{unit}|||||R|||"
            f"{observed}||||{eui64}^EUI-64"
        )
    return msg(
        msh(
            "ORU^R01^ORU_R01",
            control_id,
            version="2.6",
            app="GATEWAY^0123456789ABCDEF^EUI-64",
            facility="ICU-NORTH",
            extra="|||AL|NE||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        ),
        "PID|||MRN12345^^^NORTH&1.2.840.99999.1.2&ISO^MR||Smith^Anna||19800214|F",
        "PV1||I|ICU^101^B",
        "OBR|1|GW1^GATEWAY|GW1^GATEWAY|182777000^monitoring of patient^SCT|||20240305083000+0100",
        *rows,
    )


ORU_PCD = pcd01("PCD0001", 3)

# Tokenizer corpus: shapes the differential test covers beyond the messages above.
ODD = [
    msg(
        msh("ADT^A08^ADT_A01", "ODD1", version="2.3"),
        "EVN|A08|20240305",
        "PID|||A1^^^X~B2^^^Y&1.2&ISO||O\\S\\Brien^Pat~^^^^^^^||||||||||||||||||||",
        "PV1||O",
        "ZXY|free^text&sub~rep2|||last",
    ),
    msg(
        msh("ORU^R01", "ODD2", version="2.4"),
        "PID|||777",
        "OBR|1",
        "OBX|1|TX|X^Note^L||line1~second rep||||||F",
        "NTE|1||comment with \\F\\ and \\E\\",
    ),
]

CORPUS: list[bytes] = [ORU_LAB, ORU_PCD, pcd01("PCD0002", 10), *ADT_ALL.values(), *ODD]
