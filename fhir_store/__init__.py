"""FHIR storage (SQLite, PostgreSQL), search and the FHIR REST API.

What the composition root uses (nothing here opens anything at import time):

    from fhir_store.database import open_database      # the seam: sqlite:/// or postgresql://
    from fhir_store.store import FhirStore             # versioned CRUD, upsert_many, searching
    from fhir_store.api import build_router            # FastAPI router, mounted at /fhir
    from fhir_store.writer import handle_fhir_batch    # handler for the fhir.* consumer loop

    db = open_database(url)          # migrates; StoreUnavailable (one line) if unreachable
    db.ping()                        # for `caregraph check` and /readyz
    store = FhirStore(db)
    app.include_router(build_router(store, authorize))   # prefix "/fhir" is built in
    run_consumer(bus, "store-writer", topics, handle_fhir_batch(store))

Modules: ``database`` (seam, per-thread connections), ``schema`` (migrations), ``store``
(writes, reads, search execution, history, $everything), ``search`` (parameters -> SQL),
``indexing`` + ``fhirpath`` + ``searchparams`` (index rows from the spec's expressions;
data in ``data/search_parameters.json``, derived by ``tools/derive_search_params.py``),
``bundles`` (batch/transaction), ``validation`` (fhir.resources R4B), ``patch`` (JSON
Patch), ``shaping`` (Bundles, _summary/_elements), ``capability``, ``outcome``, ``errors``.
"""
