"""Unit strings labs send in OBX-6 without a coding system, and their UCUM codes.

Only spellings whose meaning is unambiguous are listed; anything else is kept as the
Quantity's ``unit`` text and counted as an unknown unit.
"""

from __future__ import annotations

UCUM_BY_TEXT: dict[str, str] = {
    "%": "%",
    "mg/dL": "mg/dL",
    "mg/dl": "mg/dL",
    "g/dL": "g/dL",
    "g/dl": "g/dL",
    "g/L": "g/L",
    "mmol/L": "mmol/L",
    "mmol/l": "mmol/L",
    "umol/L": "umol/L",
    "µmol/L": "umol/L",
    "mEq/L": "meq/L",
    "meq/L": "meq/L",
    "U/L": "U/L",
    "IU/L": "[IU]/L",
    "ng/mL": "ng/mL",
    "pg/mL": "pg/mL",
    "fL": "fL",
    "pg": "pg",
    "10*3/uL": "10*3/uL",
    "10*6/uL": "10*6/uL",
    "10*9/L": "10*9/L",
    "10*12/L": "10*12/L",
    "K/uL": "10*3/uL",
    "M/uL": "10*6/uL",
    "mm[Hg]": "mm[Hg]",
    "mmHg": "mm[Hg]",
    "/min": "/min",
    "bpm": "/min",
    "Cel": "Cel",
    "degC": "Cel",
    "kg": "kg",
    "cm": "cm",
    "s": "s",
    "mL/min": "mL/min",
    "mL/min/{1.73_m2}": "mL/min/{1.73_m2}",
    "{ratio}": "{ratio}",
    "[pH]": "[pH]",
}
