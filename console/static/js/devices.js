// Biomedical engineers: the device registry (FHIR Device), live status computed from the
// Observations each device produced (last reading, readings per minute, silent devices),
// registration and editing, and a device's own vitals charts.

import { announce, field, fill, h } from "./dom.js";
import { ApiError, authorizedFetch, entries, fhirGet, fhirPost, fhirPut } from "./fhir.js";
import { conceptText, effectiveMs, fmtAgo, fmtDate, humanName, iso, refId } from "./format.js";
import { deviceName } from "./patients.js";
import { allows } from "./session.js";
import { trailCard } from "./trail.js";
import { VitalsView } from "./vitals.js";

const POLL_MS = 5000;
// DeviceUseStatements that never count as an attachment (a mistake, or a plan).
const NOT_COUNTED = new Set(["entered-in-error", "intended"]);
const DEVICE_ID_SYSTEM = "urn:caregraph:device";

/** Silent when the last reading is older than ``silentMs`` (or there never was one). */
export function deviceState(lastMs, nowMs, silentMs) {
  if (lastMs === null || lastMs === undefined) return "no-readings";
  return nowMs - lastMs > silentMs ? "silent" : "ok";
}

const STATE_TEXT = { ok: "Sending", silent: "Silent", "no-readings": "No readings" };

/**
 * The devices to watch: registered top-level Devices, plus devices seen in recent
 * Observations (the last 15 minutes) that nobody registered yet. Each has the references its readings carry
 * (the Device, and the DeviceMetrics whose source it is, as HL7 PCD-01 reports them).
 */
async function inventory() {
  const now = Date.now();
  const [devBundle, metricBundle, obsBundle] = await Promise.all([
    fhirGet("Device", [["_count", "500"]]),
    fhirGet("DeviceMetric", [["_count", "1000"], ["_elements", "source,parent"]]),
    fhirGet("Observation", [["date", `ge${iso(now - 15 * 60e3)}`], ["_sort", "-date"], ["_count", "1000"], ["_elements", "device"]]),
  ]);
  const devices = entries(devBundle, "Device");
  const byId = new Map(devices.map((d) => [d.id, d]));
  const rows = new Map();
  for (const d of devices) {
    if (d.parent) continue; // channels and VMDs are shown inside their monitor
    const key = d.identifier?.find((i) => i.system === DEVICE_ID_SYSTEM)?.value || null;
    rows.set(d.id, { id: d.id, device: d, refs: new Set([`Device/${d.id}`]), label: deviceName(d), key });
  }
  for (const m of entries(metricBundle, "DeviceMetric")) {
    const top = topOf(refId(m.source?.reference), byId);
    if (top && rows.has(top)) rows.get(top).refs.add(`DeviceMetric/${m.id}`);
  }
  for (const o of entries(obsBundle, "Observation")) {
    const ref = o.device?.reference;
    if (!ref || !ref.startsWith("Device/")) continue;
    const id = refId(ref);
    const top = topOf(id, byId) || id;
    if (!rows.has(top)) {
      const key = o.device.identifier?.value || null;
      rows.set(top, { id: top, device: null, refs: new Set([ref]), label: key || o.device.display || id, key });
    } else {
      rows.get(top).refs.add(ref);
    }
  }
  const out = [...rows.values()];
  // The patient each device is attached to now (open DeviceUseStatements), else Device.patient.
  try {
    const uses = entries(await fhirGet("DeviceUseStatement", [["_count", "1000"]]), "DeviceUseStatement");
    for (const st of uses) {
      if (NOT_COUNTED.has(st.status) || st.timingPeriod?.end) continue;
      const row = rows.get(refId(st.device?.reference));
      if (row && st.subject?.reference) row.attachedTo = st.subject.reference;
    }
  } catch {
    // a token without DeviceUseStatement access: Device.patient only
  }
  for (const r of out) r.attachedTo ||= r.device?.patient?.reference || null;
  // Names of the patients the devices are attached to, in one search.
  const patientIds = [...new Set(out.map((r) => refId(r.attachedTo)).filter(Boolean))];
  if (patientIds.length) {
    try {
      const found = entries(await fhirGet("Patient", [["_id", patientIds.join(",")], ["_count", "500"], ["_elements", "name"]]), "Patient");
      const names = new Map(found.map((p) => [p.id, humanName(p)]));
      for (const r of out) r.patientName = names.get(refId(r.attachedTo)) || null;
    } catch {
      // a token without Patient access still sees its devices, with the bare reference
    }
  }
  return out;
}

function topOf(id, byId) {
  let d = byId.get(id);
  const seen = new Set();
  while (d?.parent && !seen.has(d.id)) {
    seen.add(d.id);
    const up = byId.get(refId(d.parent.reference));
    if (!up) break;
    d = up;
  }
  return d?.id || null;
}

/** Last reading time and readings in the last minute for one device's references. */
async function status(refs) {
  const device = [...refs].join(",");
  const now = Date.now();
  const [last, minute] = await Promise.all([
    fhirGet("Observation", [["device", device], ["_sort", "-date"], ["_count", "1"], ["_elements", "effectiveDateTime,effectiveInstant,effectivePeriod,issued"]]),
    fhirGet("Observation", [["device", device], ["date", `ge${iso(now - 60e3)}`], ["_summary", "count"]]),
  ]);
  const o = entries(last, "Observation")[0];
  const received = o?.issued ? Date.parse(o.issued) : null;
  return { last: o ? effectiveMs(o) : null, received, perMinute: minute.total ?? 0 };
}

/** The serial gateway's live figures (``/devices/health``) when that router is mounted. */
let healthMounted = true;
async function gatewayHealth() {
  if (!healthMounted) return null; // asked once: not mounted in this caregraph
  const response = await authorizedFetch("/devices/health", { headers: { Accept: "application/json" } });
  if (response.status === 404) {
    healthMounted = false;
    return null;
  }
  if (!response.ok) throw new ApiError(response.status, `devices/health: ${response.status}`);
  return response.json();
}

function lineText(hl) {
  if (!hl) return "—";
  const parts = [hl.connected ? "connected" : "disconnected"];
  if (hl.frames_per_s !== null && hl.frames_per_s !== undefined) parts.push(`${hl.frames_per_s} frames/s`);
  if (hl.checksum_errors) parts.push(`${hl.checksum_errors} checksum errors`);
  if (hl.reconnects) parts.push(`${hl.reconnects} reconnects`);
  if (hl.line) parts.push(hl.line);
  return parts.join(" · ");
}

export function devicesView() {
  const silentAfter = h("input", { type: "number", name: "silent", min: "5", max: "86400", step: "5", value: "30" });
  const live = h("input", { type: "checkbox", name: "live", id: "devices-live", checked: true });
  const tbody = h("tbody", {});
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const alerts = h("div", { class: "alerts" });
  const table = h("table", { class: "list devices" },
    h("caption", {}, "Devices and their live status"),
    h("thead", {}, h("tr", {}, ...["Device", "Type", "Registry", "Location", "Patient", "Last reading", "Readings / min", "Serial line", "State"].map((t) => h("th", { scope: "col" }, t)))),
    tbody);
  const el = h("section", { class: "view" },
    h("h1", {}, "Devices"),
    h("div", { class: "toolbar" },
      field("Silent after (seconds)", silentAfter)[0],
      h("div", { class: "field check" }, live, h("label", { for: live.id }, "Live (every 5 s)")),
      allows("Device", "u") ? h("a", { href: "#/device-new", class: "button" }, "Register a device") : null),
    summary, alerts, table);
  let rows = [];
  let timer = null;
  let stopped = false;
  const cells = new Map();

  const draw = () => {
    fill(tbody, ...rows.map((r) => {
      const c = { last: h("td", {}, "…"), rate: h("td", {}, "…"), line: h("td", {}, "—"), state: h("td", {}, "…"), tr: null };
      c.tr = h("tr", { "data-device": r.id },
        h("th", { scope: "row" }, h("a", { href: `#/device/${encodeURIComponent(r.id)}` }, r.label || r.id)),
        h("td", {}, conceptText(r.device?.type)),
        h("td", {}, r.device ? r.device.status || "—" : h("span", { class: "badge warn" }, "not registered")),
        h("td", {}, r.device?.location?.display || "—"),
        h("td", {}, r.attachedTo ? h("a", { href: `#/patient/${encodeURIComponent(refId(r.attachedTo))}` }, r.patientName || refId(r.attachedTo)) : "—"),
        c.last, c.rate, c.line, c.state);
      cells.set(r.id, c);
      return c.tr;
    }));
    if (!rows.length) fill(tbody, h("tr", {}, h("td", { colspan: "9" }, "No devices registered or sending.")));
  };

  const refresh = async () => {
    const now = Date.now();
    const silentMs = Math.max(5, Number(silentAfter.value) || 30) * 1000;
    let silent = 0;
    let health = null;
    try {
      health = await gatewayHealth();
    } catch (err) {
      fill(alerts, h("p", { class: "notice" }, `Serial gateway figures unavailable: ${err.message}`));
    }
    const byKey = new Map((health?.devices || []).map((d) => [d.device_id, d]));
    if (health) {
      fill(alerts,
        ...(health.alerts || []).map((a) => h("p", { class: "notice", role: "alert" },
          `Silence alert: ${a.device_id} since ${fmtDate(a.since)}${a.detail ? ` — ${a.detail}` : ""}`)),
        ...(health.not_served || []).map((p) => h("p", { class: "notice" },
          `Not served by the serial gateway: ${p.device_id} — ${p.reason}`)));
    }
    await Promise.all(rows.map(async (r) => {
      const c = cells.get(r.id);
      const line = r.key ? byKey.get(r.key) : null;
      c.line.textContent = lineText(line);
      try {
        const st = await status(r.refs);
        let state = deviceState(st.received ?? st.last, now, silentMs);
        // A line that is down or silent makes a device that has sent silent (readings in
        // the store, or frames the gateway saw); one that never sent anything stays
        // "no readings" whatever its line does (the line cell says which it is).
        const sent = state === "ok" || (line?.last_frame_at ?? null) !== null;
        if (sent && (line?.silent || (line && !line.connected))) state = "silent";
        if (state !== "ok") silent += 1;
        c.last.textContent = st.last === null ? "never" : `${fmtAgo(now - (st.received ?? st.last))} (${fmtDate(new Date(st.last).toISOString())})`;
        c.rate.textContent = String(st.perMinute);
        fill(c.state, h("span", { class: `badge state-${state}` }, STATE_TEXT[state]));
        c.tr.classList.toggle("silent", state !== "ok");
        c.tr.dataset.state = state;
      } catch (err) {
        fill(c.state, h("span", { class: "badge state-silent" }, "Error"));
        c.last.textContent = err.message;
      }
    }));
    summary.textContent = `${rows.length} devices, ${silent} silent or without readings (silent after ${silentMs / 1000} s).`;
    el.dataset.loaded = "true";
    if (!stopped && live.checked) timer = setTimeout(refresh, POLL_MS);
  };

  const load = async () => {
    try {
      rows = await inventory();
      draw();
      await refresh();
    } catch (err) {
      fill(tbody, h("tr", {}, h("td", { colspan: "9", class: "error", role: "alert" }, `Could not load devices: ${err.message}`)));
    }
  };
  live.addEventListener("change", () => { clearTimeout(timer); if (live.checked) refresh(); });
  silentAfter.addEventListener("change", () => { clearTimeout(timer); refresh(); });
  load();
  return { el, focus: el.querySelector("h1"), stop() { stopped = true; clearTimeout(timer); } };
}

// ---------------------------------------------------------------- one device

const CONNECTION_URL = "urn:caregraph:fhir:extension:serial-connection";
const PLACEMENT_URL = "urn:caregraph:fhir:extension:placement";
const PROTOCOLS = ["astm", "intellivue", "datex", "medibus"];

function sub(ext, url) {
  return (ext?.extension || []).find((x) => x.url === url);
}

// An absolute URI, as Identifier.system must be (the check ``adapters/registry`` makes).
const ABSOLUTE_URI = /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/;

/**
 * The registry's serial-connection extension (see ``adapters/registry/device.py``) with
 * protocol, port and baud rate set, and the patient id system when ``patientIdSystem`` is
 * given ("" removes it; undefined keeps what was there); line settings and driver options
 * already there are kept. Null when no protocol or no port: the device is then not served
 * by the gateway.
 */
export function connectionExtension(previous, protocol, port, baudrate, patientIdSystem) {
  if (!protocol || !port) return null;
  const ours = ["protocol", "port", "baudrate", ...(patientIdSystem === undefined ? [] : ["patient-id-system"])];
  const kept = (previous?.extension || []).filter((x) => !ours.includes(x.url));
  const subs = [{ url: "protocol", valueCode: protocol }, { url: "port", valueString: port }];
  if (baudrate) subs.push({ url: "baudrate", valueInteger: baudrate });
  if (patientIdSystem) subs.push({ url: "patient-id-system", valueUri: patientIdSystem });
  return { url: CONNECTION_URL, extension: [...subs, ...kept] };
}

function deviceForm(device, identifierValue, onSaved) {
  const d = device || {};
  const conn = (d.extension || []).find((x) => x.url === CONNECTION_URL);
  const ident = h("input", { name: "identifier", required: true, value: d.identifier?.find((i) => i.system === DEVICE_ID_SYSTEM)?.value || identifierValue || "", readonly: device ? true : undefined });
  const name = h("input", { name: "name", required: true, value: d.deviceName?.[0]?.name || "" });
  const type = h("input", { name: "type", value: d.type?.text || "" });
  const manufacturer = h("input", { name: "manufacturer", value: d.manufacturer || "" });
  const model = h("input", { name: "model", value: d.modelNumber || "" });
  const serial = h("input", { name: "serial", value: d.serialNumber || "" });
  const current = sub(conn, "protocol")?.valueCode || "";
  const protocol = h("select", { name: "protocol" }, h("option", { value: "" }, "not on a serial line"),
    ...PROTOCOLS.map((p) => h("option", { value: p, selected: p === current }, p)));
  const port = h("input", { name: "port", value: sub(conn, "port")?.valueString || "" });
  const baud = h("input", { name: "baudrate", type: "number", min: "1", step: "1", value: sub(conn, "baudrate")?.valueInteger ?? "" });
  const idSystem = h("input", { name: "patient-id-system", value: sub(conn, "patient-id-system")?.valueUri || "" });
  const statusSel = h("select", { name: "status" }, ...["active", "inactive", "entered-in-error"].map((v) => h("option", { value: v, selected: (d.status || "active") === v }, v === "inactive" ? "inactive (retired)" : v)));
  const message = h("p", { role: "status" });
  const canWrite = allows("Device", "u");
  const form = h("form", { class: "device-form", "aria-label": device ? "Edit device" : "Register device" },
    canWrite ? null : h("p", { class: "notice" }, "Your token may read devices but not change them."),
    field("Device identifier (as the driver reports it)", ident, "e.g. demo-icu-monitor-1")[0],
    field("Name", name)[0], field("Type", type)[0], field("Manufacturer", manufacturer)[0],
    field("Model", model)[0], field("Serial number", serial)[0],
    field("Serial protocol", protocol)[0],
    field("Serial port", port, "e.g. /dev/ttyUSB0")[0],
    field("Baud rate", baud, "empty: the protocol's default")[0],
    field("Patient id system", idSystem, "of the patient ids an analyzer reports, e.g. urn:oid:1.2.3; empty: any system")[0],
    field("Status", statusSel)[0],
    h("div", { class: "actions" }, h("button", { type: "submit", disabled: !canWrite }, device ? "Save changes" : "Register")),
    message);
  if (!canWrite) for (const control of form.querySelectorAll("input, select")) control.disabled = true;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      if (protocol.value && !port.value.trim()) throw new Error("a serial protocol needs a port");
      const system = idSystem.value.trim();
      if (system && !ABSOLUTE_URI.test(system)) throw new Error(`patient id system ${system} is not an absolute URI (e.g. urn:oid:1.2.3)`);
      if (system && !protocol.value) throw new Error("a patient id system is part of the serial connection: choose a protocol and a port");
      const idResponse = await authorizedFetch(`device-id/${encodeURIComponent(ident.value.trim())}`);
      if (!idResponse.ok) throw new Error(`device id: ${idResponse.status}`);
      const { id } = await idResponse.json();
      // Placement history, patient attachments and other extensions are kept as they are:
      // the registry owns them (caregraph device place|attach, or the cards below).
      const resource = {
        ...d,
        resourceType: "Device",
        id,
        identifier: [{ system: DEVICE_ID_SYSTEM, value: ident.value.trim() }],
        status: statusSel.value,
        deviceName: [{ name: name.value.trim(), type: "user-friendly-name" }],
      };
      for (const [key, value] of [["manufacturer", manufacturer.value], ["modelNumber", model.value], ["serialNumber", serial.value]]) {
        if (value.trim()) resource[key] = value.trim(); else delete resource[key];
      }
      if (type.value.trim()) resource.type = { text: type.value.trim() }; else delete resource.type;
      const ext = connectionExtension(conn, protocol.value, port.value.trim(), Number(baud.value) || null, system);
      resource.extension = [...(d.extension || []).filter((x) => x.url !== CONNECTION_URL), ...(ext ? [ext] : [])];
      if (!resource.extension.length) delete resource.extension;
      delete resource.meta;
      const saved = await fhirPut(`Device/${id}`, resource);
      message.textContent = device ? "Saved." : "Registered.";
      message.className = "";
      announce(`Device ${name.value.trim()} saved`);
      onSaved(saved);
    } catch (err) {
      message.textContent = `Not saved: ${err.message}`;
      message.className = "error";
    }
  });
  return form;
}

/** Where the device stood over time: the registry's placement extensions. */
function placementsCard(device) {
  const rows = (device?.extension || []).filter((x) => x.url === PLACEMENT_URL).map((x) => ({
    where: sub(x, "location")?.valueReference,
    period: sub(x, "period")?.valuePeriod || {},
  })).sort((a, b) => String(b.period.start).localeCompare(String(a.period.start)));
  return h("section", { class: "card", "aria-label": "Placement" }, h("h2", {}, "Placement"),
    rows.length ? h("ul", {}, ...rows.map((r) => h("li", {}, h("strong", {}, r.where?.display || r.where?.reference || "?"),
      ` — ${fmtDate(r.period.start)} to ${r.period.end ? fmtDate(r.period.end) : "now"}`)))
      : h("p", { class: "muted" }, "Not placed at a bed (caregraph device place sets it)."));
}

/** Patients the device was attached to over time (DeviceUseStatement), attach and detach. */
function attachmentsCard(id, deviceIdentifier, onChange) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const patient = h("input", { name: "patient" });
  const canWrite = allows("DeviceUseStatement", "c") && allows("DeviceUseStatement", "u");
  const form = h("form", { class: "inline", "aria-label": "Attach to a patient" },
    field("Patient id", patient, "the Patient this device measures from now on")[0],
    h("button", { type: "submit", disabled: !canWrite }, "Attach"));
  const card = h("section", { class: "card", "aria-label": "Patient attachments" }, h("h2", {}, "Patient attachments"), body, canWrite ? form : null);
  let open = [];
  const endOpen = async (when) => {
    // As the registry does: an open attachment ends where the next one starts.
    for (const st of open) {
      await fhirPut(`DeviceUseStatement/${st.id}`, { ...st, meta: undefined, status: "completed", timingPeriod: { ...st.timingPeriod, end: when } });
    }
  };
  const load = async () => {
    try {
      const statements = entries(await fhirGet("DeviceUseStatement", [["device", `Device/${id}`], ["_count", "200"]]), "DeviceUseStatement")
        .filter((st) => !NOT_COUNTED.has(st.status))
        .sort((a, b) => String(b.timingPeriod?.start).localeCompare(String(a.timingPeriod?.start)));
      open = statements.filter((st) => !st.timingPeriod?.end);
      const ids = [...new Set(statements.map((st) => refId(st.subject?.reference)).filter(Boolean))];
      const names = new Map();
      if (ids.length) {
        try {
          for (const p of entries(await fhirGet("Patient", [["_id", ids.join(",")], ["_elements", "name"]]), "Patient")) names.set(p.id, humanName(p));
        } catch {
          // without Patient access, the references alone
        }
      }
      const detach = h("button", { type: "button", class: "small", disabled: !canWrite || !open.length }, "Detach now");
      detach.addEventListener("click", async () => {
        await endOpen(new Date().toISOString());
        announce("Detached");
        await load();
        onChange();
      });
      fill(body, statements.length ? h("table", { class: "list" },
        h("caption", { class: "sr-only" }, "Patients this device was attached to"),
        h("thead", {}, h("tr", {}, ...["Patient", "From", "Until", "Status"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, ...statements.map((st) => {
          const pid = refId(st.subject?.reference);
          return h("tr", {},
            h("td", {}, pid ? h("a", { href: `#/patient/${encodeURIComponent(pid)}` }, names.get(pid) || pid) : "—"),
            h("td", {}, fmtDate(st.timingPeriod?.start)), h("td", {}, st.timingPeriod?.end ? fmtDate(st.timingPeriod.end) : "attached now"),
            h("td", {}, st.status));
        }))) : h("p", { class: "muted" }, "Never attached to a patient."), open.length ? detach : null);
    } catch (err) {
      fill(body, h("p", { class: err.status === 403 ? "notice" : "error" }, err.message));
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const pid = patient.value.trim();
    if (!pid) return;
    try {
      await fhirGet(`Patient/${encodeURIComponent(pid)}`, [["_elements", "id"]]);
      const now = new Date().toISOString();
      await endOpen(now);
      await fhirPost("DeviceUseStatement", {
        resourceType: "DeviceUseStatement",
        status: "active",
        subject: { reference: `Patient/${pid}` },
        device: { reference: `Device/${id}`, ...(deviceIdentifier ? { identifier: { system: DEVICE_ID_SYSTEM, value: deviceIdentifier } } : {}) },
        timingPeriod: { start: now },
        recordedOn: now,
      });
      patient.value = "";
      announce(`Attached to patient ${pid}`);
      await load();
      onChange();
    } catch (err) {
      announce(`Not attached: ${err.message}`, "error");
    }
  });
  load();
  return card;
}

export function newDeviceView() {
  const el = h("section", { class: "view" }, h("p", {}, h("a", { href: "#/devices" }, "← All devices")), h("h1", {}, "Register a device"));
  el.append(deviceForm(null, "", (saved) => { location.hash = `#/device/${encodeURIComponent(saved.id)}`; }));
  return { el, focus: el.querySelector("input"), stop() {} };
}

export function deviceView(id) {
  const heading = h("h1", {}, "Device");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const el = h("section", { class: "view" }, h("p", {}, h("a", { href: "#/devices" }, "← All devices")), heading, body);
  let vitals = null;
  let trail = null;
  let stopped = false;
  const load = async () => {
    let device = null;
    try {
      device = await fhirGet(`Device/${encodeURIComponent(id)}`);
    } catch (err) {
      if (!(err instanceof ApiError && (err.status === 404 || err.status === 410))) {
        fill(body, h("p", { class: "error", role: "alert" }, err.message));
        return;
      }
    }
    const [metrics, recent] = await Promise.all([
      fhirGet("DeviceMetric", [["source", `Device/${id}`], ["_count", "200"]]),
      fhirGet("Observation", [["device", `Device/${id}`], ["_sort", "-date"], ["_count", "20"]]),
    ]);
    const refs = [`Device/${id}`, ...entries(metrics, "DeviceMetric").map((m) => `DeviceMetric/${m.id}`)];
    const readings = entries(recent, "Observation");
    const seenAs = readings[0]?.device?.identifier?.value;
    heading.textContent = device ? `Device: ${deviceName(device)}` : `Unregistered device ${seenAs || id}`;
    vitals = new VitalsView([["device", refs.join(",")]], { title: "Readings", windowMs: 15 * 60e3 });
    const identifierValue = device?.identifier?.find((i) => i.system === DEVICE_ID_SYSTEM)?.value || seenAs;
    if (stopped) return;
    trail = identifierValue && allows("Device", "r") ? trailCard(identifierValue) : null;
    fill(body,
      h("section", { class: "card" }, h("h2", {}, device ? "Registry entry" : "Register this device"),
        device ? null : h("p", {}, "Readings arrive from this device, but it has no Device resource yet."),
        deviceForm(device, seenAs, (saved) => { heading.textContent = `Device: ${deviceName(saved)}`; })),
      device ? h("div", { class: "grid2" }, placementsCard(device), attachmentsCard(id, identifierValue, () => {})) : null,
      vitals.el,
      h("section", { class: "card" }, h("h2", {}, "Latest readings"),
        readings.length ? h("table", { class: "list" },
          h("caption", { class: "sr-only" }, "Latest readings of this device"),
          h("thead", {}, h("tr", {}, ...["Time", "Measurement", "Value", "Status"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, ...readings.map((o) => h("tr", {},
            h("td", {}, fmtDate(o.effectiveDateTime || o.issued)),
            h("td", {}, conceptText(o.code)),
            h("td", {}, o.valueQuantity ? `${o.valueQuantity.value} ${o.valueQuantity.unit || ""}` : o.valueString || conceptText(o.dataAbsentReason)),
            h("td", {}, o.status))))) : h("p", { class: "muted" }, "No readings yet.")),
      trail?.el);
    await vitals.start();
  };
  load().catch((err) => fill(body, h("p", { class: "error", role: "alert" }, err.message)));
  return { el, focus: heading, stop() { stopped = true; vitals?.stop(); trail?.stop(); } };
}
