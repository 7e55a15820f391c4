"""Master patient index, staff/organization/device identity, and the care graph.

What the composition root wires (all on the store's ``fhir_store.database.Database``):

    mpi = Mpi(SqlRepository.open(db))                       # linkage.mpi, linkage.sql
    PatientHandler(mpi)          -> consumer of fhir.Patient (+ fhir.Parameters for A40)
    identity = IdentityIndex(SqlIdentityRepository.open(db))   # linkage.identity
    linkage.api.build_router(mpi, authorize, identity=identity, store=store)
                                 -> /fhir/Patient/$match, /fhir/Patient/[id]/$everything
                                    (golden: across its identities; linkage.everything),
                                    /linkage/... (patients and identity decisions)
    IdentityHandler(identity)    -> consumer of fhir.Practitioner/Organization/Device
    graph = Graph.open(db, MpiIdentity(mpi))                   # linkage.graph.store
    GraphHandler(graph)          -> consumer of fhir.<each type in GRAPH_TYPES>
    linkage.graph.api.build_router(graph, authorize)  -> /graph/...
    link_batch(mpi, patients)    -> an initial load (linkage.batch)
"""
