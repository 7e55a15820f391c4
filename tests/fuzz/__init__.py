"""Fuzz harnesses (hypothesis) for every input caregraph takes from outside.

What each harness feeds, and the property it holds the module to: never an exception other
than the module's documented error type (``caregraph.errors.MappingError`` and its subtypes
for the translators, nothing at all for the framers and the MLLP decoder, a 4xx
OperationOutcome for the FHIR API), and never a hang (each example runs under a hard time
limit, ``support.time_limit``).

- ``test_hl7``: the HL7 v2 parser and mapping (``adapters.hl7v2``: ``normalize``, the
  gateway's ``judge`` and ``build_ack``), on mutated real messages;
- ``test_mllp``: the MLLP framing decoder (``devices.mllp.framing``), any bytes in any
  chunking, bounded memory;
- ``test_serial``: each serial protocol's decoder behind ``raw.device`` (IntelliVue, Datex
  AS/3, Medibus, ASTM), with content re-framed under a valid checksum so the decoders, not
  only the framers, see it;
- ``test_dicom``: ``raw.dicom`` ingestion from bytes (``adapters.dicom``), mutated headers of
  pydicom's bundled files;
- ``test_fhir_json``: FHIR JSON through the REST create path (``fhir_store.api`` on a
  TestClient over SQLite).

Each harness starts from seeds: real messages, and the known bad inputs of the gateway
issues (truncated frames, bad checksums, wrong escapes, deep nesting, huge numbers,
invalid UTF-8), as ``@example``s that run on every run.

Budget. CI runs the ``ci`` hypothesis profile (``scripts/test``: derandomized, so every run
tries the same examples) with the example counts in the harnesses; the whole suite takes
well under a minute on the 2-core machine. A longer run, randomized, with N times the
examples::

    HYPOTHESIS_PROFILE=default CAREGRAPH_FUZZ_SCALE=100 .venv/bin/python -m pytest tests/fuzz

A failure prints the smallest input hypothesis found; add it as an ``@example`` beside the
seeds once fixed.
"""
