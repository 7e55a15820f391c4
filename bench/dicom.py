"""C-STORE throughput: caregraph's DICOM gateway vs dcmtk's storescp, same files, same run.

    python bench/dicom.py [--files 300] [--bus embedded|memory] [--no-fsync] [--rounds 1]
                          [--no-journal] [--serial-publish]

Makes ``--files`` copies of pydicom's ``CT_small.dcm`` (39 KB, one study and series, new SOP
Instance UIDs), then sends them with dcmtk's ``storescu`` over one association on loopback,
first into ``storescp`` and then into ``DicomGateway`` (file fsynced, header published to
the bus, indexed, before each success). Prints files/s for both and the ratio; the issue's
target is >= 0.5. ``TCP_NODELAY=1`` is set for the dcmtk tools (the gateway sets it on its
side): with Nagle on, both sides crawl at 10-20 files/s and the ratio means nothing.

Fairness: storescp writes each file without fsync; the gateway fsyncs the file and its
directory, and with ``--bus embedded`` (the default, as deployed on one machine) the bus
fsyncs its log too: three journal commits per file, which on a disk shared with other busy
processes cost milliseconds each. By default the gateway makes an instance durable with one
append to its intake journal (``devices.dicom.journal``: one fdatasync, no new inode) and
publishes to the bus at the same time; ``--no-journal`` (file and directory fsynced) and
``--serial-publish`` (file first, then the bus) show what each of the two saves.
``--no-fsync`` (gateway and embedded bus both without
fsync: what storescp promises) and ``--bus memory`` show the costs apart. A third leg
sends the same files to the gateway's upper layer alone (``devices.dicom.ul`` answering
success without any work): the protocol engine's own share.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

# Run as a script, bench/ would come first on sys.path and bench/bus.py would shadow the
# bus package; put the repository first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bus.base import Bus
from bus.embedded import EmbeddedBus
from bus.memory import MemoryBus
from devices.dicom import DicomGateway
from devices.dicom.access import OPERATIONS
from devices.dicom.ul import Listener, Peer, Retrievable, StoreRequest

AE_TITLE = "CAREGRAPH"
ENV = dict(os.environ, TCP_NODELAY="1")


def dcmtk(tool: str) -> str:
    """The dcmtk binary (a virtualenv may shadow the names with pynetdicom's apps)."""
    found = shutil.which(tool, path="/usr/bin:/usr/local/bin")
    if found is None:
        sys.exit(f"{tool} not found: apt-get install -y dcmtk")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port}")


def make_files(directory: Path, count: int) -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = pydicom.dcmread(path)
    for i in range(count):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.save_as(directory / f"{i:05d}.dcm", enforce_file_format=True)


def send(port: int, files: Path) -> float:
    """Seconds storescu takes to send every file in ``files`` over one association."""
    started = time.perf_counter()
    result = subprocess.run(
        [dcmtk("storescu"), "-aec", AE_TITLE, "+sd", "127.0.0.1", str(port), str(files)],
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"storescu failed: {result.stderr[-500:]}")
    return elapsed


def into_storescp(files: Path, work: Path, count: int) -> float:
    out = work / "storescp"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [dcmtk("storescp"), "-aet", AE_TITLE, "-od", str(out), str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        elapsed = send(port, files)
    finally:
        proc.terminate()
        proc.wait(5)
    stored = len(list(out.iterdir()))
    if stored != count:
        sys.exit(f"storescp stored {stored} of {count} files")
    return elapsed


def into_gateway(
    files: Path,
    work: Path,
    count: int,
    bus_kind: str,
    fsync: bool,
    *,
    journal: bool = True,
    parallel_publish: bool = True,
) -> float:
    bus: Bus = EmbeddedBus(work / "bus", fsync=fsync) if bus_kind == "embedded" else MemoryBus()
    gateway = DicomGateway(
        work / "dicom",
        bus,
        ae_title=AE_TITLE,
        host="127.0.0.1",
        port=0,
        fsync=fsync,
        journal=journal,
        parallel_publish=parallel_publish,
    )
    try:
        gateway.start()
        elapsed = send(gateway.port, files)
        if gateway.stats.stored != count:
            sys.exit(f"the gateway stored {gateway.stats.stored} of {count} files")
    finally:
        gateway.stop()
        bus.close()
    return elapsed


class _Null:
    """Upper-layer services that accept everything and do nothing."""

    def __init__(self) -> None:
        self.stored = 0

    def operations(self, peer: Peer) -> frozenset[str] | None:
        return OPERATIONS

    def destination(self, ae_title: str) -> tuple[str, int] | None:
        return None

    def retrieve(self, peer: Peer, identifier: pydicom.Dataset) -> list[Retrievable]:
        return []

    def store(self, request: StoreRequest) -> pydicom.Dataset:
        self.stored += 1
        status = pydicom.Dataset()
        status.Status = 0
        return status

    def find(self, peer: Peer, identifier: pydicom.Dataset) -> Iterator[tuple[int, None]]:
        return iter(())


def into_engine_only(files: Path, count: int) -> float:
    services = _Null()
    listener = Listener(
        services,
        ae_title=AE_TITLE,
        host="127.0.0.1",
        port=0,
        max_pdu=131072,
        max_message_bytes=1 << 30,
        max_associations=4,
        timeout_s=30,
        on_refused_pdu=lambda: None,
    )
    listener.start()
    try:
        elapsed = send(listener.port, files)
    finally:
        listener.stop()
    if services.stored != count:
        sys.exit(f"the upper layer saw {services.stored} of {count} files")
    return elapsed


def fsync_probe(directory: Path, count: int = 20) -> float:
    """Milliseconds to create, write, fsync a 39 KB file and fsync its directory: the
    durability cost of one stored instance on this disk, right now."""
    payload = b"\0" * 39_000
    started = time.perf_counter()
    for n in range(count):
        with open(directory / f"probe{n}", "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return (time.perf_counter() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--bus", choices=("embedded", "memory"), default="embedded")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-fsync", action="store_true", help="no fsync in gateway and bus")
    parser.add_argument("--no-journal", action="store_true", help="fsync file and directory")
    parser.add_argument("--serial-publish", action="store_true", help="file, then bus")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="caregraph-bench-dicom-") as tmp:
        files = Path(tmp) / "files"
        files.mkdir()
        make_files(files, args.files)
        for n in range(args.rounds):
            work = Path(tmp) / f"round{n}"
            work.mkdir()
            dcmtk_rate = args.files / into_storescp(files, work, args.files)
            ours_rate = args.files / into_gateway(
                files,
                work,
                args.files,
                args.bus,
                not args.no_fsync,
                journal=not args.no_journal,
                parallel_publish=not args.serial_publish,
            )
            engine_rate = args.files / into_engine_only(files, args.files)
            probe_ms = fsync_probe(work)
            durability = "no fsync" if args.no_fsync else "fsync"
            if not args.no_fsync:
                durability += ", file+dir" if args.no_journal else ", journal"
                durability += ", serial" if args.serial_publish else ", parallel"
            print(
                f"{args.files} x CT_small.dcm (39 KB): storescp {dcmtk_rate:6.1f} files/s | "
                f"caregraph gateway ({args.bus} bus, {durability}) {ours_rate:6.1f} files/s, "
                f"ratio {ours_rate / dcmtk_rate:.2f} (target >= 0.5) | "
                f"upper layer alone {engine_rate:6.1f} files/s, "
                f"ratio {engine_rate / dcmtk_rate:.2f} | "
                f"file+dir fsync {probe_ms:.1f} ms, load {os.getloadavg()[0]:.1f}"
            )


if __name__ == "__main__":
    main()
