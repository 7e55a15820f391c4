"""Authorization of caregraph's HTTP API (SMART on FHIR), its audit log, and edge allowlists.

How a request is decided (``middleware.AuthorizationMiddleware``, in front of every route):

    bearer JWT --tokens.TokenValidator--> Principal (scopes, patient, fhirUser)
    method + path --interactions.classify--> Access (resource type, c/r/u/d/s)
    guard.Guard.decide: scopes allow it? patient restriction (identities: the MPI's linked
        Patients) or break-glass? then check_request: the target and the body (store lookups)
    the app answers --filter.filter_body--> only resources in the patient compartment
        (compartment: paths derived from the spec's CompartmentDefinition) and readable types
    audit.Auditor -> audit_log.ChainedAuditLog -> AuditEvent in the store, hash-chained

Also here: ``backend_services`` + ``clients`` + ``token_endpoint`` (SMART Backend Services:
``POST /auth/token``), ``keys`` (JWKS by kid, caregraph's own signing key), ``allowlists``
(DICOM calling AE titles, HL7 sending facilities), ``tls`` (server contexts).

The composition root builds all of it from ``Settings`` in ``caregraph.security_wiring``.
"""
