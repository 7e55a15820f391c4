"""The MLLP listener: HL7 v2 senders in, ``raw.hl7v2`` on the bus, ACKs out.

Threads (all daemons, all stopped by ``stop``):

- one acceptor, blocking in ``accept``;
- one per connection (at most ``max_connections``; more are closed at once), reading
  frames in order: MLLP senders wait for each ACK, so one connection is one sequence;
- one publisher doing group commit: connections hand it their records and wait; it
  publishes whatever has queued up in one ``publish_many`` (one fsync for the lot on the
  embedded bus), so many connections share the cost of durability.

Per frame: ``adapters.hl7v2.intake.judge`` decides AA/AE/AR without I/O. AA means: publish
the raw bytes (key = patient key, else MSH-10; headers from ``bus.headers.make_headers``),
wait until the bus says durable, remember the ACK (``AckCache``, in memory; its file is
written after the answers), answer. AE/AR are
answered at once and nothing is published. With ``admit`` (``caregraph.backpressure``)
an accepted message first waits there while the store writer is far behind: its ACK is
held, which slows the sender. If the bus fails, the answer is AR (code 207,
"try again"), nothing is remembered, and the sender's retry gets a fresh attempt. Broken
framing, garbage and oversize frames are answered with AR and the connection goes on.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from adapters.hl7v2.ack import AckError, ack_wanted, build_ack
from adapters.hl7v2.datatypes import Options
from adapters.hl7v2.handoff import Handoff
from adapters.hl7v2.header import Header, peek_header
from adapters.hl7v2.intake import Verdict, judge
from adapters.hl7v2.normalize import DEFAULT_OPTIONS, MAX_MESSAGE_BYTES
from bus.base import Bus, Record
from bus.headers import make_headers
from bus.topics import RAW_HL7V2
from devices.mllp.dedup import AckCache
from devices.mllp.framing import Frame, FramingError, FramingProblem, MllpDecoder, encode_frame

log = logging.getLogger(__name__)

CONTENT_TYPE_HL7V2 = "application/hl7-v2"
HEADER_SENDER = "hl7-sender"
RECV_BYTES = 65536


@dataclass
class ListenerStats:
    """Counters for health and benchmarks (read without a lock: approximate is fine)."""

    connections: int = 0
    frames: int = 0
    accepted: int = 0
    duplicates: int = 0
    errors: int = 0  # AE
    rejected: int = 0  # AR (scope, framing, bus down)
    publish_failures: int = 0
    held: int = 0  # accepted messages whose ACK ``admit`` held
    by_code: dict[str, int] = field(default_factory=dict)


class _Outcome:
    """Whether a record was published: set once by the publisher, awaited by its
    connection and by the connections of its repeats (any number of waiters).

    A lock held from the start and released when set; each waiter takes it and gives it
    back, so every waiter passes. A ``Future`` did the same with a condition variable:
    handing a record to the publisher and back cost ~21 us of CPU with it, ~13 us with
    this (8 threads and one publisher, no I/O).
    """

    __slots__ = ("_error", "_gate")

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._gate.acquire()
        self._error: BaseException | None = None

    def set(self, error: BaseException | None = None) -> None:
        """Published (``error`` None) or not; call once."""
        self._error = error
        self._gate.release()

    def wait(self, timeout: float) -> None:
        """Return once published.

        Raises:
            TimeoutError: not set within ``timeout`` seconds.
            BaseException: what the publish raised.
        """
        if not self._gate.acquire(timeout=timeout):
            raise TimeoutError(f"not published within {timeout} s")
        self._gate.release()
        if self._error is not None:
            raise self._error


@dataclass
class _Pending:
    record: Record
    dedup_key: str
    ack: bytes
    done: _Outcome = field(default_factory=_Outcome)


class _GroupCommitPublisher:
    """One thread publishing queued records in batches; each submitter waits on its
    ``_Outcome``."""

    def __init__(self, bus: Bus, cache: AckCache, max_batch: int = 1000) -> None:
        self._bus = bus
        self._cache = cache
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mllp-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def submit(self, pending: _Pending) -> _Outcome:
        self._queue.put(pending)
        return pending.done

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._publish(batch)
            if stopping:
                return

    def _publish(self, batch: list[_Pending]) -> None:
        try:
            self._bus.publish_many([p.record for p in batch])
        except Exception as exc:  # every waiter must hear; BusError is the expected kind
            for p in batch:
                p.done.set(exc)
            return
        acks = [(p.dedup_key, p.ack) for p in batch]
        self._cache.remember_many(acks)
        for p in batch:
            p.done.set()
        # after the answers: the file only serves repeats after a restart
        try:
            self._cache.persist_many(acks)
        except Exception:  # the publish is durable: a lost cache entry only risks a repeat
            log.exception("could not remember %d ACKs", len(batch))


class MllpListener:
    """An MLLP server feeding ``raw.hl7v2`` (see the module docstring).

    ``port`` 0 picks a free port (read it from ``address`` after ``start``). ``tls`` is a
    server-side context, e.g. ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)`` with
    a certificate loaded (and ``verify_mode = CERT_REQUIRED`` for mutual TLS).
    ``map_content`` (default True) maps every message before AA so unmappable content gets
    AE; False checks scope and structure only (about 30x cheaper per message) and leaves
    content errors to the normalizer's dead letters. ``ack_cache`` with a ``path`` keeps
    the repeat detection across restarts. ``allow_facility`` (MSH-4 -> may it send?)
    answers AR to every other sending facility; None accepts all. ``handoff`` receives
    the mapping of each accepted message, for a normalizer in this process.
    """

    def __init__(
        self,
        host: str,
        port: int,
        bus: Bus,
        *,
        tls: ssl.SSLContext | None = None,
        options: Options = DEFAULT_OPTIONS,
        ack_cache: AckCache | None = None,
        max_frame: int = MAX_MESSAGE_BYTES,
        max_connections: int = 64,
        idle_timeout_s: float = 300.0,
        publish_timeout_s: float = 30.0,
        source: str = "mllp",
        map_content: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        allow_facility: Callable[[str], bool] | None = None,
        handoff: Handoff | None = None,
        admit: Callable[[], bool] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.bus = bus
        self.tls = tls
        self.options = options
        self.ack_cache = ack_cache if ack_cache is not None else AckCache()
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.publish_timeout_s = publish_timeout_s
        self.source = source
        self.map_content = map_content
        self.handoff = handoff
        self.admit = admit
        self.clock = clock
        self.allow_facility = allow_facility
        self.stats = ListenerStats()
        self._server: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._inflight: dict[str, _Outcome] = {}
        self._publisher = _GroupCommitPublisher(bus, self.ack_cache)

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("the listener is not started")
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind, listen and start the threads; returns at once."""
        server = socket.create_server((self.host, self.port), backlog=128, reuse_port=False)
        self._server = server
        self._publisher.start()
        acceptor = threading.Thread(target=self._accept_loop, name="mllp-accept", daemon=True)
        self._threads.append(acceptor)
        acceptor.start()
        log.info("MLLP listening on %s:%d%s", *self.address, " (TLS)" if self.tls else "")

    def stop(self) -> None:
        """Stop accepting, close every connection, finish publishing, join the threads."""
        self._stopping.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=10)
        self._publisher.stop()

    def __enter__(self) -> MllpListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- connections ----------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stopping.is_set():
            try:
                conn, peer = self._server.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("accept failed")
                continue
            with self._lock:
                full = len(self._conns) >= self.max_connections
            if full:
                log.warning("refusing %s: %d connections open", peer, self.max_connections)
                conn.close()
                continue
            self.stats.connections += 1
            thread = threading.Thread(
                target=self._serve, args=(conn, peer), name=f"mllp-{peer[0]}:{peer[1]}", daemon=True
            )
            with self._lock:
                self._conns[id(conn)] = conn
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        key = id(conn)
        stream: socket.socket = conn
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.idle_timeout_s)
            if self.tls is not None:
                stream = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                with self._lock:
                    self._conns[key] = stream
                stream.do_handshake()
            self._read_frames(stream, f"{peer[0]}:{peer[1]}")
        except (OSError, ssl.SSLError) as exc:
            if not self._stopping.is_set():
                log.info("connection %s:%d ended: %s", peer[0], peer[1], exc)
        except Exception:  # one broken connection must not take the listener down
            log.exception("connection %s:%d failed", peer[0], peer[1])
        finally:
            with self._lock:
                self._conns.pop(key, None)
            for sock in (stream, conn):
                with contextlib.suppress(OSError):
                    sock.close()

    def _read_frames(self, stream: socket.socket, peer: str) -> None:
        decoder = MllpDecoder(self.max_frame)
        while not self._stopping.is_set():
            try:
                data = stream.recv(RECV_BYTES)
            except TimeoutError:
                log.info("closing idle connection %s", peer)
                return
            if not data:
                for event in decoder.close():
                    log.warning(
                        "%s: %s", peer, event.reason if isinstance(event, FramingError) else ""
                    )
                return
            for event in decoder.feed(data):
                answer = self._answer(event, peer)
                if answer:
                    stream.sendall(encode_frame(answer))

    # --- one frame --------------------------------------------------------------------

    def _count(self, code: str) -> None:
        self.stats.by_code[code] = self.stats.by_code.get(code, 0) + 1

    def _answer(self, event: Frame | FramingError, peer: str) -> bytes | None:
        """The ACK for one decoder event, or None when the sender asked for none."""
        self.stats.frames += 1
        received_at = self.clock()
        if isinstance(event, FramingError):
            self.stats.rejected += 1
            self._count("AR")
            log.warning("%s: %s", peer, event.reason)
            code = "104" if event.problem is FramingProblem.OVERSIZE else "100"
            return build_ack(
                event.head, "AR", AckError(f"MLLP: {event.reason}", code), at=received_at
            )
        raw = event.payload
        header = peek_header(raw)
        if (
            header is not None
            and self.allow_facility is not None
            and not self.allow_facility(header.sending_facility)
        ):
            self.stats.rejected += 1
            self._count("AR")
            log.warning("%s: sending facility %r is not allowed", peer, header.sending_facility)
            text = f"sending facility {header.sending_facility!r} may not send to caregraph"
            return build_ack(raw, "AR", AckError(text, "207"), at=received_at)
        if header is not None and header.control_id:
            cached = self._await_duplicate(header.dedup_key)
            if cached is not None:
                self.stats.duplicates += 1
                self._count("AA")
                return cached if ack_wanted(header, "AA") else None
        try:
            verdict = judge(
                raw,
                received_at=received_at,
                options=self.options,
                max_bytes=self.max_frame,
                map_content=self.map_content,
                peeked=header,
            )
        except Exception as exc:  # a mapping bug: answer, keep the connection, log it
            log.exception("%s: the mapping failed on %s", peer, header and header.control_id)
            error = AckError(f"caregraph could not process this message ({type(exc).__name__})")
            verdict = Verdict("AE", header, error)
        if verdict.outcome != "AA" or verdict.header is None:
            if verdict.outcome == "AE":
                self.stats.errors += 1
            else:
                self.stats.rejected += 1
            self._count(verdict.outcome)
            log.info("%s: %s %s", peer, verdict.outcome, verdict.error)
            ack = build_ack(raw, verdict.outcome, verdict.error, at=received_at)
            return ack if ack_wanted(verdict.header, verdict.outcome) else None
        if self.admit is not None and self.admit():
            self.stats.held += 1
        if self.handoff is not None and verdict.normalized is not None:
            # before the publish: the normalizer may read the message at once
            self.handoff.put(raw, received_at, self.options, verdict.normalized)
        return self._accept(raw, verdict.header, verdict.key, received_at, peer)

    def _await_duplicate(self, dedup_key: str) -> bytes | None:
        """The remembered ACK of a repeat; waits for the first copy if it is in flight."""
        with self._lock:
            inflight = self._inflight.get(dedup_key)
        if inflight is not None:
            try:
                inflight.wait(timeout=self.publish_timeout_s)
            except Exception:
                return None
        return self.ack_cache.get(dedup_key)

    def _accept(
        self, raw: bytes, header: Header, key: str | None, received_at: datetime, peer: str
    ) -> bytes | None:
        ack = build_ack(header, "AA", at=received_at)
        headers = make_headers(
            f"{self.source}:{peer}",
            header.control_id,
            CONTENT_TYPE_HL7V2,
            received_at=received_at,
        )
        headers[HEADER_SENDER] = header.dedup_key.replace("\x1f", "|")
        record = Record(RAW_HL7V2, raw, (key or header.control_id).encode("utf-8"), headers)
        pending = _Pending(record, header.dedup_key, ack)
        with self._lock:
            self._inflight[header.dedup_key] = pending.done
        try:
            self._publisher.submit(pending).wait(timeout=self.publish_timeout_s)
        except Exception as exc:  # BusError, a timeout, anything: the sender hears AR
            self.stats.publish_failures += 1
            self.stats.rejected += 1
            if self.handoff is not None:
                self.handoff.take(raw, received_at, self.options)  # never published
            self._count("AR")
            log.error("could not publish %s from %s: %s", header.control_id, peer, exc)
            error = AckError(
                f"could not store the message now ({type(exc).__name__}); resend", "207"
            )
            nack = build_ack(header, "AR", error, at=received_at)
            return nack if ack_wanted(header, "AR") else None
        finally:
            with self._lock:
                self._inflight.pop(header.dedup_key, None)
        self.stats.accepted += 1
        self._count("AA")
        return ack if ack_wanted(header, "AA") else None
