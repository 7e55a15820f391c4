"""Metrics and structured logs: how an operator watches caregraph run.

- ``observability.metrics``: ``Metrics`` (Prometheus counters and histograms, plus a
  collector reading ``WorkerStats``, ``ListenerStats``, lag and silent-device sources at
  scrape time) and ``build_metrics_router`` (``GET /metrics`` for the api's app);
- ``observability.instrument``: ``MeteredBus`` and ``instrument_handler``, which count at
  the bus seam so gateways and adapters need no metrics code;
- ``observability.lag``: ``KafkaLag``, consumer lag per group and partition from Kafka;
- ``observability.ops``: ``OpsServer``, the probes and ``/metrics`` for processes that do
  not run the api role;
- ``observability.logging``: JSON lines with the trace id of the message at hand.

Nothing here opens a socket or a client at import time; the composition root builds one
``Metrics`` per process and passes it down.
"""
