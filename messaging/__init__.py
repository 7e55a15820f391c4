"""FHIR messaging with partner institutions: ``POST /fhir/$process-message``.

    partner Bundle(type=message) --envelope.parse--> InboundMessage (validated, R4B)
        --identity.localize--> resources with ids derived from the partner and its own ids
        --events.EVENTS[event]--> FhirStore.upsert_many + Mpi.ingest / link / unlink
        --envelope.response--> Bundle(type=message) with MessageHeader.response + outcome
    ledger.Ledger: the first response per (partner, Bundle.identifier), so a repeat gets it

The composition root mounts ``messaging.api.build_router(store, mpi, authorize)`` before the
FHIR store's router (whose catch-all would answer ``$process-message`` otherwise).
"""
