"""LOINC codes for common laboratory results and vital signs, with their long common names.

A code missing here still maps (system ``http://loinc.org``, the sender's text as display);
the mapping counts it as unknown so an operator can see which tables need extending.
"""

from __future__ import annotations

LOINC_SYSTEM = "http://loinc.org"

LOINC: dict[str, str] = {
    # Chemistry
    "2345-7": "Glucose [Mass/volume] in Serum or Plasma",
    "2951-2": "Sodium [Moles/volume] in Serum or Plasma",
    "2823-3": "Potassium [Moles/volume] in Serum or Plasma",
    "2075-0": "Chloride [Moles/volume] in Serum or Plasma",
    "2028-9": "Carbon dioxide, total [Moles/volume] in Serum or Plasma",
    "3094-0": "Urea nitrogen [Mass/volume] in Serum or Plasma",
    "2160-0": "Creatinine [Mass/volume] in Serum or Plasma",
    "17861-6": "Calcium [Mass/volume] in Serum or Plasma",
    "2093-3": "Cholesterol [Mass/volume] in Serum or Plasma",
    "2571-8": "Triglyceride [Mass/volume] in Serum or Plasma",
    "1920-8": "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "1742-6": "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "2524-7": "Lactate [Moles/volume] in Serum or Plasma",
    "4548-4": "Hemoglobin A1c/Hemoglobin.total in Blood",
    "8251-1": "Service comment",
    "5778-6": "Color of Urine",
    # Haematology and coagulation
    "718-7": "Hemoglobin [Mass/volume] in Blood",
    "4544-3": "Hematocrit [Volume Fraction] of Blood by Automated count",
    "6690-2": "Leukocytes [#/volume] in Blood by Automated count",
    "789-8": "Erythrocytes [#/volume] in Blood by Automated count",
    "777-3": "Platelets [#/volume] in Blood by Automated count",
    "6301-6": "INR in Platelet poor plasma by Coagulation assay",
    # Blood gas
    "2744-1": "pH of Arterial blood",
    "2019-8": "Carbon dioxide [Partial pressure] in Arterial blood",
    "2703-7": "Oxygen [Partial pressure] in Arterial blood",
    # Vital signs
    "8867-4": "Heart rate",
    "59408-5": "Oxygen saturation in Arterial blood by Pulse oximetry",
    "8480-6": "Systolic blood pressure",
    "8462-4": "Diastolic blood pressure",
    "9279-1": "Respiratory rate",
    "8310-5": "Body temperature",
    "29463-7": "Body weight",
    "8302-2": "Body height",
}
