"""Authorization for caregraph's HTTP API: SMART on FHIR bearer tokens, scopes, patient context.

What the composition root wires (see ``security.wiring``):

    guard = build_guard(settings, db, store, mpi)   # validator, scopes, compartment filter
    app.add_middleware(...)                          # every route but the open ones
    token router                                      # POST /auth/token (Backend Services)
"""
