"""DICOM -> FHIR, pure: headers (DICOM JSON) to ImagingStudy, Patient, Practitioner,
Organization and Device, the ImagingStudy merge across instances, and the ``raw.dicom``
normalizer. No sockets or files here; the SCP lives in ``devices.dicom``."""

from adapters.dicom.mapping import InstanceResources, MappingOptions, imaging_study_id, map_instance
from adapters.dicom.normalize import DicomNormalizer, normalize_dicom
from adapters.dicom.raw import CONTENT_TYPE, RawInstance, header_of
from adapters.dicom.study import fold_imaging_studies, merge_imaging_studies

__all__ = [
    "CONTENT_TYPE",
    "DicomNormalizer",
    "InstanceResources",
    "MappingOptions",
    "RawInstance",
    "fold_imaging_studies",
    "header_of",
    "imaging_study_id",
    "map_instance",
    "merge_imaging_studies",
    "normalize_dicom",
]
