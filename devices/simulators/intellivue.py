"""A Philips IntelliVue monitor's MIB/RS232 data export: answers the association request,
sends its MDS create event report (absolute time + relative ticks), answers numeric polls
with HR, SpO2, pulse, NIBP and ABP (compound), respiration, temperature and etCO2."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

from adapters.serial import intellivue as iv
from adapters.serial.errors import WireError
from devices.simulators.base import Simulator
from devices.simulators.pty import PtyPort

BPM, RPM, PCT, MMHG, DEGC = 0x0AA0, 0x0AE0, 0x0220, 0x0F20, 0x17A0


class IntelliVueMonitor(Simulator):
    protocol = "intellivue"

    def __init__(
        self,
        port: PtyPort,
        *,
        seed: int = 1,
        rel_start_ticks: int = 123_456,
        association_timeout_s: float = 10.0,
        system_id: bytes = b"\x00\x09\xfb\x12\x34\x56",
        flood_bytes_per_s: float | None = None,
        flood_objects: int = 8,
        refuse_first: int = 0,
        ext_update_s: float = 1.0,
    ) -> None:
        super().__init__(port, seed=seed)
        self.rel_start_ticks = rel_start_ticks
        self.association_timeout_s = association_timeout_s
        self.system_id = system_id
        self._boot = self.clock.now()
        self._framer = iv.Framer()
        self._state = "idle"
        self._invoke = 0
        self._last_rx = 0.0
        self._now = 0.0
        self.polls_answered = 0
        self.absent_sent = 0
        self.refusals = 0
        self.extended_polls = 0
        self.ext_update_s = ext_update_s
        self._ext: tuple[int, int] | None = None
        self._ext_until = 0.0
        self._ext_next = 0.0
        self._ext_seq = 0
        self.refuse_first = refuse_first  # refuse this many associations (monitor busy)
        # Benchmarks: once associated, send poll results unasked, paced to this many bytes
        # per second (11,520 is a saturated 115200-baud 8N1 line).
        self.flood_bytes_per_s = flood_bytes_per_s
        self.flood_objects = flood_objects
        self._flood_start = 0.0
        self._flood_sent = 0
        self.flood_frames = 0

    def rel_ticks(self) -> int:
        elapsed = (self.clock.now() - self._boot).total_seconds()
        return (self.rel_start_ticks + int(elapsed * iv.TICKS_PER_SECOND)) & 0xFFFFFFFF

    def on_reset(self) -> None:
        self._state = "idle"
        self._framer = iv.Framer()

    def on_tick(self, now: float) -> None:
        self._now = now
        if self._state != "idle" and now - self._last_rx > self.association_timeout_s:
            self._state = "idle"  # the monitor drops an association nobody polls
            self._ext = None
        if self._ext is not None and self._state == "associated" and now >= self._ext_next:
            invoke_id, poll_number = self._ext
            last = now + self.ext_update_s > self._ext_until
            state = (
                None
                if last
                else (iv.RORLS_FIRST if self._ext_seq == 0 else iv.RORLS_NOT_FIRST_NOT_LAST)
            )
            reply, values = self._poll_result(
                invoke_id, poll_number, sequence_no=self._ext_seq, linked_state=state
            )
            self._ext_seq += 1
            self._ext_next = now + self.ext_update_s
            if last:
                self._ext = None
            self._send(reply, values)
        if self.flood_bytes_per_s and self._state == "associated":
            if not self._flood_start:
                self._flood_start = now
            budget = self.flood_bytes_per_s * (now - self._flood_start) - self._flood_sent
            while budget > 0:
                self._invoke = (self._invoke + 1) & 0xFFFF
                frame = iv.encode_frame(self._poll_result(self._invoke, self.flood_frames)[0])
                if not self.port.write(frame):
                    break
                self._flood_sent += len(frame)
                budget -= len(frame)
                self.flood_frames += 1

    def on_bytes(self, data: bytes) -> None:
        for ev in self._framer.feed(data):
            if isinstance(ev, iv.Frame):
                self._last_rx = time.monotonic()
                self._on_message(ev.user_data)

    def _send(self, user_data: bytes, values: list[tuple[str, Decimal]] | None = None) -> None:
        frame = iv.encode_frame(user_data)
        corrupt = self.faults.take("corrupt_checksum")
        if corrupt:
            frame = frame[:-3] + bytes([frame[-3] ^ 0x01]) + frame[-2:]
            if frame[-3] in (iv.BOF, iv.EOF, iv.ESC):  # keep the damage inside the FCS
                frame = frame[:-3] + b"\x00" + frame[-2:]
        if self.send(frame, corrupt=corrupt) and values:
            self.log.values.extend(values)

    def _on_message(self, user_data: bytes) -> None:
        kind = iv.session_type(user_data)
        if kind == iv.CN_SPDU:
            try:
                offer = iv.decode_user_info(user_data)
            except WireError:
                offer = None
            if offer is None or offer.system_type != iv.SYST_CLIENT or self.refuse_first > 0:
                self.refuse_first = max(0, self.refuse_first - 1)
                self.refusals += 1
                self._send(iv.association_refuse())
                return
            self._send(iv.association_response())
            self._invoke += 1
            self._send(
                iv.mds_create_event(
                    self._invoke, self.rel_ticks(), self.clock.now(), self.system_id
                )
            )
            self._state = "creating"
            self.log.handshakes += 1
            return
        if kind == iv.FN_SPDU:
            self._send(iv.release_response())
            self._state = "idle"
            return
        if kind is not None:
            return
        op = iv.decode_operation(user_data)
        if self._state == "creating" and op.ro_type == iv.RORS_APDU:
            self._state = "associated"
            return
        if self._state != "associated" or op.ro_type != iv.ROIV_APDU:
            return
        request = iv.decode_poll_request(op)
        if request is None:
            return
        if not request.extended:
            self._answer_poll(request.invoke_id, request.poll_number)
            return
        # Extended poll: send updates every ext_update_s for the requested period, as
        # linked results (first, then not-first-not-last), the last one as a plain result.
        period_s = request.period_ticks / iv.TICKS_PER_SECOND
        self._ext = (request.invoke_id, request.poll_number)
        self._ext_until = time.monotonic() + period_s
        self._ext_next = time.monotonic()
        self._ext_seq = 0
        self.extended_polls += 1

    def _answer_poll(self, invoke_id: int, poll_number: int) -> None:
        reply, values = self._poll_result(invoke_id, poll_number)
        self.polls_answered += 1
        self._send(reply, values)

    def _poll_result(
        self,
        invoke_id: int,
        poll_number: int,
        *,
        sequence_no: int | None = None,
        linked_state: int | None = None,
    ) -> tuple[bytes, list[tuple[str, Decimal]]]:
        v = self.vitals
        hr = v.value("hr", 78, 8, 30, 200)
        spo2 = v.value("spo2", 97, 2, 80, 100)
        pr = v.value("pr", 78, 8, 30, 200)
        nibp = (v.value("ns", 122, 10, 70, 200), v.value("nd", 76, 6, 40, 120))
        nibp_mean = Decimal(round((nibp[0] + 2 * nibp[1]) / 3))
        abp = (v.value("as", 118, 10, 70, 200), v.value("ad", 72, 6, 40, 120))
        abp_mean = Decimal(round((abp[0] + 2 * abp[1]) / 3))
        rr = v.value("rr", 16, 3, 6, 40)
        temp = v.value("t", 37.0, 0.3, 35.0, 40.0, 1)
        etco2 = v.value("co2", 38, 3, 20, 60)
        nan_temp = poll_number % 5 == 0  # the probe is off now and then
        objects = [
            _obj(1, 0x4182, BPM, hr),
            _obj(2, 0x4BB8, PCT, spo2),
            _obj(3, 0x4822, BPM, pr),
            iv.NumericObject(
                4,
                0x00024A04,
                tuple(
                    _nu(pid, MMHG, x)
                    for pid, x in ((0x4A05, nibp[0]), (0x4A06, nibp[1]), (0x4A07, nibp_mean))
                ),
            ),
            iv.NumericObject(
                5,
                0x00024A14,
                tuple(
                    _nu(pid, MMHG, x)
                    for pid, x in ((0x4A15, abp[0]), (0x4A16, abp[1]), (0x4A17, abp_mean))
                ),
            ),
            _obj(6, 0x500A, RPM, rr),
            iv.NumericObject(
                7,
                0x00024B48,
                (iv.NuObs(0x4B48, 0, DEGC, iv.FLOAT_NAN if nan_temp else iv.encode_float(temp)),),
            ),
            _obj(8, 0x50B0, MMHG, etco2),
        ]
        values = [
            ("0x4182", hr),
            ("0x4BB8", spo2),
            ("0x4822", pr),
            ("0x4A05", nibp[0]),
            ("0x4A06", nibp[1]),
            ("0x4A07", nibp_mean),
            ("0x4A15", abp[0]),
            ("0x4A16", abp[1]),
            ("0x4A17", abp_mean),
            ("0x500A", rr),
            ("0x50B0", etco2),
        ]
        if nan_temp:
            self.absent_sent += 1
        else:
            values.append(("0x4B48", temp))
        now: datetime = self.clock.now()
        objects = objects[: self.flood_objects] if self.flood_bytes_per_s else objects
        reply = iv.poll_reply(
            invoke_id,
            poll_number,
            self.rel_ticks(),
            now,
            objects,
            sequence_no=sequence_no,
            linked_state=linked_state,
        )
        return reply, values


def _nu(physio_id: int, unit: int, value: Decimal) -> iv.NuObs:
    return iv.NuObs(physio_id, 0, unit, iv.encode_float(value))


def _obj(handle: int, physio_id: int, unit: int, value: Decimal) -> iv.NumericObject:
    return iv.NumericObject(handle, 0x00020000 | physio_id, (_nu(physio_id, unit, value),))
