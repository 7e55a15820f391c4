"""Modality (0008,0060) codes as FHIR Codings in the DICOM DCM code system.

The display names are those of DICOM PS3.16 (Annex D, the DCM code definitions) for the
acquisition modalities of CID 29 and the non-acquisition ones of CID 32. A code not in the
table passes through with its original value and no display: it is never dropped, and
``is_known`` lets the caller count it.
"""

from __future__ import annotations

from typing import Any

DCM = "http://dicom.nema.org/resources/ontology/DCM"

MODALITIES: dict[str, str] = {
    "AR": "Autorefraction",
    "ASMT": "Content Assessment Results",
    "AU": "Audio",
    "BDUS": "Ultrasound Bone Densitometry",
    "BI": "Biomagnetic imaging",
    "BMD": "Bone Mineral Densitometry",
    "CR": "Computed Radiography",
    "CT": "Computed Tomography",
    "DG": "Diaphanography",
    "DOC": "Document",
    "DX": "Digital Radiography",
    "ECG": "Electrocardiography",
    "EPS": "Cardiac Electrophysiology",
    "ES": "Endoscopy",
    "GM": "General Microscopy",
    "HC": "Hard Copy",
    "HD": "Hemodynamic Waveform",
    "IO": "Intra-oral Radiography",
    "IVOCT": "Intravascular Optical Coherence Tomography",
    "IVUS": "Intravascular Ultrasound",
    "KER": "Keratometry",
    "KO": "Key Object Selection",
    "LEN": "Lensometry",
    "LS": "Laser surface scan",
    "MG": "Mammography",
    "MR": "Magnetic Resonance",
    "NM": "Nuclear Medicine",
    "OAM": "Ophthalmic Axial Measurements",
    "OCT": "Optical Coherence Tomography",
    "OP": "Ophthalmic Photography",
    "OPM": "Ophthalmic Mapping",
    "OPT": "Ophthalmic Tomography",
    "OPV": "Ophthalmic Visual Field",
    "OSS": "Optical Surface Scanner",
    "OT": "Other",
    "PLAN": "Plan",
    "PR": "Presentation State",
    "PT": "Positron emission tomography",
    "PX": "Panoramic X-Ray",
    "REG": "Registration",
    "RESP": "Respiratory Waveform",
    "RF": "Radio Fluoroscopy",
    "RG": "Radiographic imaging",
    "RTDOSE": "RT Dose",
    "RTIMAGE": "RT Image",
    "RTPLAN": "RT Plan",
    "RTRECORD": "RT Treatment Record",
    "RTSTRUCT": "RT Structure Set",
    "RWV": "Real World Value Map",
    "SEG": "Segmentation",
    "SM": "Slide Microscopy",
    "SMR": "Stereometric Relationship",
    "SR": "SR Document",
    "SRF": "Subjective Refraction",
    "STAIN": "Automated Slide Stainer",
    "TG": "Thermography",
    "US": "Ultrasound",
    "VA": "Visual Acuity",
    "XA": "X-Ray Angiography",
    "XC": "External-camera Photography",
}


def is_known(code: str) -> bool:
    """True if ``code`` is a modality of the DCM table."""
    return code in MODALITIES


def modality_coding(code: str) -> dict[str, Any]:
    """The Coding for a Modality value; unknown codes keep their value, without display."""
    coding: dict[str, Any] = {"system": DCM, "code": code}
    display = MODALITIES.get(code)
    if display is not None:
        coding["display"] = display
    return coding
