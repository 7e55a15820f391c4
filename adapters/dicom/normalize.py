"""``raw.dicom`` messages -> records for the ``fhir.<ResourceType>`` topics (pure).

``normalize_dicom`` is the whole translation: decode each message, map the header, merge
each study's fragments (with what is already known of the study) and return the records
to publish. ``DicomNormalizer`` adds the one piece of state the fold needs, a bounded cache
of the studies it has emitted, so the composition root only has to do::

    normalizer = DicomNormalizer(MappingOptions(...), lookup=store_read_imaging_study)
    run_consumer(bus, "normalizer-dicom", [RAW_DICOM],
                 lambda batch: bus.publish_many(normalizer.normalize(batch)), stop=stop)

Records: value = compact JSON of the resource; key = the resource id for shared resources
(Organization, Device, Practitioner: every update of one of them keeps its order) and the
raw message's key (the PatientID) for Patient and ImagingStudy, so a patient's resources
stay in order with the rest of that patient's stream. Headers carry the raw message's
source, message id and trace id on, with ``content-type: application/fhir+json``.

A message that cannot be mapped raises ``MappingError`` for the whole call; the bus worker
then retries the messages one by one and dead-letters only the bad one.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from adapters.dicom.mapping import InstanceResources, MappingOptions, map_instance
from adapters.dicom.raw import RawInstance, header_of
from adapters.dicom.study import merge_imaging_studies
from bus.base import Message, Record
from bus.headers import CONTENT_TYPE, MESSAGE_ID, RECEIVED_AT, SOURCE, TRACE_ID
from bus.topics import fhir_topic
from caregraph.errors import MappingError

FHIR_JSON = "application/fhir+json"
StudyLookup = Callable[[str], Mapping[str, Any] | None]
_PER_PATIENT = frozenset({"Patient", "ImagingStudy"})


def _no_study(_: str) -> None:
    return None


def _dumps(resource: Mapping[str, Any]) -> bytes:
    # Sorted keys: the same resource always serializes to the same bytes, whatever order
    # its fragments arrived in (see adapters.dicom.study).
    return json.dumps(resource, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _headers(message: Message) -> dict[str, str]:
    out = {
        k: message.headers[k]
        for k in (SOURCE, MESSAGE_ID, RECEIVED_AT, TRACE_ID)
        if k in message.headers
    }
    out[CONTENT_TYPE] = FHIR_JSON
    return out


def map_message(message: Message, options: MappingOptions | None = None) -> InstanceResources:
    """Decode and map one ``raw.dicom`` message; ``MappingError`` names the offset."""
    try:
        raw = RawInstance.decode(message.value)
        return map_instance(header_of(raw), options)
    except MappingError as exc:
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        location = f"{where} {exc.location}" if exc.location else where
        raise MappingError(str(exc), location) from exc


def normalize_dicom(
    messages: Sequence[Message],
    *,
    options: MappingOptions | None = None,
    known_study: StudyLookup = _no_study,
) -> tuple[list[Record], dict[str, dict[str, Any]]]:
    """The records for a batch, and each touched ImagingStudy as emitted (by id).

    ``known_study(id)`` returns the ImagingStudy as known before this batch, or ``None``;
    the batch's fragments are merged into it. Each resource appears once per batch (the
    last version seen), the ImagingStudy after the resources it references.
    """
    resources: OrderedDict[tuple[str, str], tuple[dict[str, Any], Message]] = OrderedDict()
    studies: dict[str, dict[str, Any]] = {}
    study_message: dict[str, Message] = {}
    for message in messages:
        mapped = map_message(message, options)
        for resource in mapped.all()[:-1]:
            key = (resource["resourceType"], resource["id"])
            resources.pop(key, None)
            resources[key] = (resource, message)
        fragment = mapped.study
        study_id = fragment["id"]
        if study_id not in studies:
            known = known_study(study_id)
            studies[study_id] = dict(known) if known is not None else fragment
        studies[study_id] = merge_imaging_studies(studies[study_id], fragment)
        study_message[study_id] = message

    records = [_record(resource, message) for resource, message in resources.values()]
    records += [_record(study, study_message[study_id]) for study_id, study in studies.items()]
    return records, studies


def _record(resource: Mapping[str, Any], message: Message) -> Record:
    kind = resource["resourceType"]
    key = message.key if kind in _PER_PATIENT else str(resource["id"]).encode()
    return Record(fhir_topic(kind), _dumps(resource), key, _headers(message))


class DicomNormalizer:
    """``normalize_dicom`` plus a bounded cache of the studies it emitted.

    Instances of one study share a PatientID and so a partition, which one consumer owns:
    the cache is then the freshest view of each study. On a cold cache (start-up, or a
    partition taken over from another member) ``lookup`` is asked, e.g. a read of the
    ImagingStudy from the FHIR store. Updating the cache before the records are published
    is safe: the merge is monotonic and idempotent, so a retried batch yields the same.
    """

    def __init__(
        self,
        options: MappingOptions | None = None,
        *,
        lookup: StudyLookup = _no_study,
        cache_size: int = 1024,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, not {cache_size}")
        self.options = options or MappingOptions()
        self._lookup = lookup
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    def _known(self, study_id: str) -> Mapping[str, Any] | None:
        cached = self._cache.get(study_id)
        if cached is not None:
            self._cache.move_to_end(study_id)
            return cached
        return self._lookup(study_id)

    def normalize(self, messages: Sequence[Message]) -> list[Record]:
        """The records to publish for ``messages`` (see ``normalize_dicom``)."""
        records, studies = normalize_dicom(messages, options=self.options, known_study=self._known)
        for study_id, study in studies.items():
            self._cache[study_id] = study
            self._cache.move_to_end(study_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return records
