"""FHIR messaging with partner institutions: in through ``POST /fhir/$process-message``,
out through a durable outbox.

Inbound (``api``):

    partner Bundle(type=message) --envelope.parse/validate--> InboundMessage (R4B-valid)
        --identity.localize--> resources with ids derived from the partner and its own ids
        --events.MessageProcessor (table EVENTS)--> FhirStore.upsert_many, Mpi.ingest/link
        --envelope.response--> Bundle(type=message), MessageHeader.response + outcome
    ledger.Ledger: the first response per (partner, Bundle.identifier); a repeat gets it

Outbound: ``transfer.Sender`` (a patient's record with its recent vitals, gathered across
its linked identities; ``caregraph partner send-transfer``, ``POST /fhir/$send-transfer``)
-> ``partners.Partners.send`` (the partners file: endpoints, events each takes) ->
``outbox.Outbox`` (table ``messaging_outbox``) -> ``delivery.Deliverer`` (Backend Services
token with caregraph's own key, retries with backoff; run by the api role) -> the partner's
``$process-message``; status and the partner's answer at ``GET /fhir/$outbox-status`` and
``caregraph partner outbox``. ``partners.Partners.speaks_for`` binds each partner's client
here to the source endpoint it may send as.

Tables: ``schema`` (``messaging_*``, on the store's database seam). The composition root
mounts ``api.build_router(store, mpi, authorize)`` before the FHIR store's router (whose
catch-all would answer ``$process-message`` otherwise).
"""
