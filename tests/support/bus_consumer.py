"""A consumer process for the kill tests: runs ``bus.worker.run_consumer`` and appends the
value of every message it handled to a file, one line each, before the batch is committed.

    python -m tests.support.bus_consumer (--data-dir DIR | --bootstrap HOST:PORT)
        --group G --topic T --out FILE [--per-message-s S] [--batch-size N] [--mark-batches]

Each line is written with one unbuffered ``write`` on an O_APPEND file, so a SIGKILL leaves
whole lines only; ``--per-message-s`` slows the handler so that the kill lands mid-batch,
and ``--mark-batches`` writes ``--begin-batch``/``--end-batch`` lines around each batch so
the test can see where it landed.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

from bus.base import Bus, Message
from bus.worker import run_consumer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", type=Path)
    where.add_argument("--bootstrap")
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-message-s", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--mark-batches", action="store_true", help="write batch bounds too")
    args = parser.parse_args()

    bus: Bus
    if args.data_dir is not None:
        from bus.embedded import EmbeddedBus

        bus = EmbeddedBus(args.data_dir, session_timeout_s=3.0)
    else:
        from bus.kafka import KafkaBus

        bus = KafkaBus(args.bootstrap)

    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def handler(batch: list[Message]) -> None:
        if args.mark_batches:
            os.write(fd, b"--begin-batch\n")
        for message in batch:
            os.write(fd, message.value + b"\n")
            if args.per_message_s:
                time.sleep(args.per_message_s)
        if args.mark_batches:
            os.write(fd, b"--end-batch\n")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with bus:
        run_consumer(bus, args.group, [args.topic], handler, stop=stop, batch_size=args.batch_size)


if __name__ == "__main__":
    main()
