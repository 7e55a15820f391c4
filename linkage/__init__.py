"""Master patient index, staff/organization/device identity, and the care graph.

What the composition root wires (all on the store's ``fhir_store.database.Database``):

    mpi = Mpi(SqlRepository.open(db))                       # linkage.mpi, linkage.sql
    PatientHandler(mpi)          -> consumer of fhir.Patient (+ fhir.Parameters for A40)
    linkage.api.build_router(mpi, authorize)        -> /fhir/Patient/$match, /linkage/...
    identity = IdentityIndex(SqlIdentityRepository.open(db))   # linkage.identity
    IdentityHandler(identity)    -> consumer of fhir.Practitioner/Organization/Device
    graph = Graph.open(db, MpiIdentity(mpi))                   # linkage.graph.store
    GraphHandler(graph)          -> consumer of fhir.<each type in GRAPH_TYPES>
    linkage.graph.api.build_router(graph, authorize)  -> /graph/...
    link_batch(mpi, patients)    -> an initial load (linkage.batch)
"""
