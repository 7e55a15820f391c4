// Clinicians: find a patient, then the linked record — identities, encounters, devices,
// staff and institutions, imaging, vitals — from the FHIR API (and linkage scores when the
// /linkage API is mounted).

import { announce, field, fill, h, s } from "./dom.js";
import { available, entries, fhirGet, linkageGet, LINKAGE_BASE } from "./fhir.js";
import {
  conceptText, fmtAgo, fmtDate, humanName, identifierText, refId, refType,
} from "./format.js";
import { VitalsView } from "./vitals.js";

export const GOLDEN_TAG = "https://caregraph.dev/fhir/CodeSystem/linkage|golden";

export function isGolden(patient) {
  return (patient.meta?.tag || []).some(
    (t) => `${t.system}|${t.code}` === GOLDEN_TAG,
  );
}

/** Source Patient ids a golden record lists in ``link`` (type seealso). */
export function memberIds(patient) {
  return (patient.link || [])
    .filter((l) => l.type === "seealso" || l.type === "refer")
    .map((l) => refId(l.other?.reference))
    .filter(Boolean);
}

// ---------------------------------------------------------------- search

export function searchView(params) {
  const name = h("input", { type: "search", name: "name", autocomplete: "off", value: params.get("name") || "" });
  const ident = h("input", { type: "search", name: "identifier", autocomplete: "off", value: params.get("identifier") || "" });
  const birth = h("input", { type: "date", name: "birthdate", value: params.get("birthdate") || "" });
  const results = h("div", { class: "results", "aria-live": "polite" });
  const form = h("form", { class: "search", role: "search", "aria-label": "Find a patient" },
    field("Name", name, "Family or given name, from the start")[0],
    field("Identifier", ident, "MRN or other identifier value (system|value also works)")[0],
    field("Birth date", birth)[0],
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of [["name", name], ["identifier", ident], ["birthdate", birth]]) {
      if (el.value.trim()) q.set(k, el.value.trim());
    }
    location.hash = `#/patients?${q}`;
  });
  const el = h("section", { class: "view" }, h("h1", {}, "Find a patient"), form, results);
  if ([...params.keys()].length) runSearch(params, results);
  else runSearch(new URLSearchParams(), results);
  return { el, focus: name, stop() {} };
}

async function runSearch(params, results) {
  fill(results, h("p", { class: "muted" }, "Searching…"));
  const q = [["_count", "50"], ["_sort", "family"]];
  for (const k of ["name", "identifier", "birthdate"]) if (params.get(k)) q.push([k, params.get(k)]);
  try {
    const bundle = await fhirGet("Patient", q);
    const patients = entries(bundle, "Patient");
    const goldens = patients.filter(isGolden);
    // A source whose golden record is in the list is shown through that golden record.
    const covered = new Set(goldens.flatMap(memberIds));
    const shown = [...goldens, ...patients.filter((p) => !isGolden(p) && !covered.has(p.id))];
    const total = bundle.total ?? patients.length;
    const hidden = patients.length - shown.length;
    const caption = `${[...params.keys()].length ? `${total} matching patient records` : `${total} patient records`}`
      + (hidden ? ` · ${shown.length} shown: a golden record stands for the sources it links` : "");
    if (!shown.length) {
      fill(results, h("p", {}, "No patient matches. Try fewer letters of the name, or only the birth date."));
      return;
    }
    fill(results, h("table", { class: "list patients" },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, ...["Name", "Birth date", "Sex", "Identifiers", "Record"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...shown.map((p) => h("tr", {},
        h("td", {}, h("a", { href: `#/patient/${encodeURIComponent(p.id)}` }, humanName(p))),
        h("td", {}, p.birthDate || "—"),
        h("td", {}, p.gender || "—"),
        h("td", {}, (p.identifier || []).slice(0, 3).map((i) => i.value).join(", ") || "—"),
        h("td", {}, isGolden(p)
          ? h("span", { class: "badge golden" }, `Golden record · ${memberIds(p).length} linked`)
          : h("span", { class: "badge" }, "Source record")))))));
  } catch (err) {
    fill(results, h("p", { class: "error", role: "alert" }, `Search failed: ${err.message}`));
  }
}

// ---------------------------------------------------------------- record

// Whether the /linkage API is mounted: asked once per page load, not once per record.
let linkageProbe = null;
function linkageMounted() {
  if (!linkageProbe) linkageProbe = available(`${LINKAGE_BASE}/review`);
  return linkageProbe;
}

/** The golden record and every linked source for ``id`` (golden or source). */
async function identities(id) {
  // The read, the golden-record search and the linkage probe at once, not one after the
  // other: three round trips less before the identities show. The search is wasted only
  // when ``id`` is itself a golden record, and its failure counts only when it is needed.
  const settle = (promise) => promise.then((value) => ({ value }), (error) => ({ error }));
  const linkedTo = settle(fhirGet("Patient", [["link", `Patient/${id}`], ["_tag", GOLDEN_TAG]]));
  const [patient, linkage] = await Promise.all([fhirGet(`Patient/${encodeURIComponent(id)}`), linkageMounted()]);
  let golden = isGolden(patient) ? patient : null;
  if (!golden) {
    const found = await linkedTo;
    if (found.error) throw found.error;
    golden = entries(found.value, "Patient")[0] || null;
  }
  let scores = new Map();
  if (!golden && linkage) {
    // Golden records not published to the store: ask the MPI for this source's record.
    try {
      const record = await linkageGet(`patients/${encodeURIComponent(id)}`);
      golden = record.golden?.resource || null;
      scores = new Map((record.golden?.members || []).map((m) => [m.source_id, m]));
    } catch {
      // not a source the MPI knows (yet)
    }
  }
  const ids = new Set([id]);
  if (golden) {
    ids.add(golden.id);
    for (const m of memberIds(golden)) ids.add(m);
  }
  const others = [...ids].filter((x) => x !== patient.id && x !== golden?.id);
  const members = others.length
    ? entries(await fhirGet("Patient", [["_id", others.join(",")], ["_count", "100"]]), "Patient")
    : [];
  const sources = [...(isGolden(patient) ? [] : [patient]), ...members];
  if (golden && linkage && !scores.size) {
    try {
      const record = await linkageGet(`golden/${encodeURIComponent(golden.id)}`);
      scores = new Map(record.members.map((m) => [m.source_id, m]));
    } catch {
      // the golden record may be newer than the MPI's view; the page works without scores
    }
  }
  return { patient, golden, sources, scores, ids: [...ids] };
}

function section(title, ...body) {
  return h("section", { class: "card", "aria-label": title }, h("h2", {}, title), ...body);
}

function identitiesCard({ golden, sources, scores }) {
  const rows = [];
  if (golden) {
    rows.push(h("tr", { class: "golden" },
      h("th", { scope: "row" }, h("span", { class: "badge golden" }, "Golden record")),
      h("td", {}, humanName(golden)), h("td", {}, golden.birthDate || "—"),
      h("td", { class: "wrap" }, (golden.identifier || []).map(identifierText).join("; ") || "—"),
      h("td", {}, "—")));
  }
  for (const p of sources) {
    const link = scores.get(p.id);
    const score = link?.score !== undefined && link?.score !== null
      ? `${(link.score * 100).toFixed(1)} % (${link.state}, ${link.origin})` : "—";
    rows.push(h("tr", {},
      h("th", { scope: "row", class: "wrap" }, p.meta?.source || (p.identifier?.[0]?.system ?? "source")),
      h("td", {}, humanName(p)), h("td", {}, p.birthDate || "—"),
      h("td", { class: "wrap" }, (p.identifier || []).map(identifierText).join("; ") || "—"),
      h("td", {}, score)));
  }
  return section("Identities",
    h("table", { class: "list" },
      h("caption", { class: "sr-only" }, "Golden record and linked source records"),
      h("thead", {}, h("tr", {}, ...["Source", "Name", "Birth date", "Identifiers", "Match score"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)),
    golden ? null : h("p", { class: "muted" }, "No golden record links this patient yet (linkage has not seen it, or it is not published to the store)."));
}

function period(p) {
  return `${fmtDate(p?.start)} – ${p?.end ? fmtDate(p.end) : "ongoing"}`;
}

function timelineSvg(encounters) {
  const spans = encounters
    .map((e) => [Date.parse(e.period?.start), e.period?.end ? Date.parse(e.period.end) : Date.now(), e])
    .filter(([a]) => !Number.isNaN(a));
  if (!spans.length) return null;
  const t0 = Math.min(...spans.map((x) => x[0]));
  const t1 = Math.max(Date.now(), ...spans.map((x) => x[1]));
  const W = 800;
  const row = 14;
  const x = (t) => 10 + ((t - t0) / Math.max(t1 - t0, 1)) * (W - 20);
  return s("svg", { viewBox: `0 0 ${W} ${spans.length * row + 24}`, class: "timeline", role: "img",
    "aria-label": `Encounter timeline from ${fmtDate(new Date(t0).toISOString())} to now` },
  ...spans.map(([a, b, e], i) => s("rect", { x: x(a), y: 4 + i * row, width: Math.max(x(b) - x(a), 3), height: row - 4,
    class: e.status === "in-progress" ? "enc active" : "enc" }, s("title", {}, `${conceptText(e.class ? { coding: [e.class] } : null)} ${period(e.period)}`))),
  s("text", { x: 10, y: spans.length * row + 18 }, fmtDate(new Date(t0).toISOString())),
  s("text", { x: W - 10, y: spans.length * row + 18, "text-anchor": "end" }, "now"));
}

function nameOf(resource) {
  if (!resource) return null;
  if (resource.resourceType === "Practitioner") return humanName(resource);
  return resource.name || resource.id;
}

function encountersCard(encounters, included) {
  const byRef = (ref) => included.get(ref?.reference) || null;
  return section("Encounters",
    timelineSvg(encounters),
    encounters.length ? h("ol", { class: "timeline-list" }, ...encounters.map((e) => h("li", {},
      h("strong", {}, period(e.period)), " · ",
      e.class?.display || e.class?.code || "encounter", " · ", e.status,
      e.location?.length ? [" · ", e.location.map((l) => nameOf(byRef(l.location)) || l.location?.display || l.location?.reference).join(", ")] : null,
      e.serviceProvider ? [" · ", nameOf(byRef(e.serviceProvider)) || e.serviceProvider.display || e.serviceProvider.reference] : null,
      (e.participant || []).length ? h("div", { class: "muted" }, (e.participant || []).map((p) =>
        `${conceptText(p.type?.[0])}: ${nameOf(byRef(p.individual)) || p.individual?.display || p.individual?.reference || "?"}`).join("; ")) : null,
    ))) : h("p", { class: "muted" }, "No encounters."));
}

function partiesCard(encounters, included, patients) {
  const staff = new Map();
  const orgs = new Map();
  const note = (map, key, label, role) => {
    if (!key || !label) return;
    const entry = map.get(key) || { label, roles: new Set() };
    entry.roles.add(role);
    map.set(key, entry);
  };
  for (const e of encounters) {
    for (const p of e.participant || []) {
      const r = included.get(p.individual?.reference);
      note(staff, p.individual?.reference || p.individual?.display, nameOf(r) || p.individual?.display || p.individual?.reference, conceptText(p.type?.[0]));
    }
    const sp = included.get(e.serviceProvider?.reference);
    note(orgs, e.serviceProvider?.reference, nameOf(sp) || e.serviceProvider?.display || e.serviceProvider?.reference, "care provider");
  }
  for (const p of patients) {
    for (const gp of p.generalPractitioner || []) {
      const r = included.get(gp.reference);
      const map = refType(gp.reference) === "Organization" ? orgs : staff;
      note(map, gp.reference, nameOf(r) || gp.display || gp.reference, "general practitioner");
    }
    const mo = p.managingOrganization;
    if (mo) note(orgs, mo.reference || mo.display, nameOf(included.get(mo.reference)) || mo.display || mo.reference, "managing organization");
  }
  const list = (map) => map.size
    ? h("ul", {}, ...[...map.values()].map((x) => h("li", {}, h("strong", {}, x.label), ` — ${[...x.roles].join(", ")}`)))
    : h("p", { class: "muted" }, "None recorded.");
  return section("Staff and institutions", h("h3", {}, "Staff"), list(staff), h("h3", {}, "Institutions"), list(orgs));
}

/** ``metricSource``: "DeviceMetric/x" -> "Device/y", so a monitor's metrics (as HL7
 * PCD-01 reports readings) count as the monitor's own readings. */
function devicesCard(devices, seen, metricSource = new Map(), attachments = []) {
  const rows = new Map();
  for (const d of devices) rows.set(`Device/${d.id}`, { device: d, first: null, last: null, count: 0, periods: [] });
  for (const st of attachments) {
    const ref = st.device?.reference;
    if (!ref) continue;
    const row = rows.get(ref) || { device: null, label: st.device.identifier?.value, first: null, last: null, count: 0, periods: [] };
    row.periods.push(st.timingPeriod || {});
    rows.set(ref, row);
  }
  for (const [seenRef, info] of seen) {
    const ref = metricSource.get(seenRef) || seenRef;
    const row = rows.get(ref) || { device: null, label: info.label, first: null, last: null, count: 0, periods: [] };
    row.first = row.first === null ? info.first : Math.min(row.first, info.first);
    row.last = row.last === null ? info.last : Math.max(row.last, info.last);
    row.count += info.count;
    rows.set(ref, row);
  }
  if (!rows.size) return section("Devices", h("p", { class: "muted" }, "No devices attached or measuring."));
  return section("Devices",
    h("table", { class: "list" },
      h("caption", { class: "sr-only" }, "Devices attached to or measuring this patient"),
      h("thead", {}, h("tr", {}, ...["Device", "Type", "Status", "Attached", "Readings in the chart window", "First", "Last"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...[...rows.entries()].map(([ref, r]) => h("tr", {},
        h("td", {}, h("a", { href: `#/device/${encodeURIComponent(refId(ref))}` }, deviceName(r.device) || r.label || ref)),
        h("td", {}, conceptText(r.device?.type)),
        h("td", {}, r.device?.status || "not registered"),
        h("td", {}, r.periods.length ? r.periods.map((p) => `${fmtDate(p.start)} – ${p.end ? fmtDate(p.end) : "now"}`).join("; ") : "—"),
        h("td", {}, String(r.count)),
        h("td", {}, r.first ? fmtDate(new Date(r.first).toISOString()) : "—"),
        h("td", {}, r.last ? fmtAgo(Date.now() - r.last) : "—"))))));
}

export function deviceName(d) {
  if (!d) return null;
  return d.deviceName?.[0]?.name || d.identifier?.[0]?.value || d.type?.text || d.id;
}

function imagingCard(studies) {
  if (!studies.length) return section("Imaging", h("p", { class: "muted" }, "No imaging studies."));
  return section("Imaging", h("ul", { class: "studies" }, ...studies.map((st) => h("li", {},
    h("details", {},
      h("summary", {}, h("strong", {}, fmtDate(st.started)), " · ",
        (st.modality || []).map((m) => m.code).join(", ") || "?", " · ",
        st.description || "(no description)", ` · ${st.numberOfSeries ?? (st.series || []).length} series, ${st.numberOfInstances ?? "?"} instances`),
      h("table", { class: "list" },
        h("caption", { class: "sr-only" }, "Series"),
        h("thead", {}, h("tr", {}, ...["Series", "Modality", "Body site", "Description", "Instances"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, ...(st.series || []).map((se) => h("tr", {},
          h("td", {}, String(se.number ?? se.uid)), h("td", {}, se.modality?.code || "—"),
          h("td", {}, se.bodySite?.display || se.bodySite?.code || "—"),
          h("td", {}, se.description || "—"),
          h("td", {}, String(se.numberOfInstances ?? (se.instance || []).length)))))))))));
}

/** A short paragraph for a failed search: a refusal by the token's scopes, or an error. */
function failure(error) {
  if (error?.status === 403) return h("p", { class: "notice" }, `Your token is not allowed to see this: ${error.message}`);
  return h("p", { class: "error" }, `Could not load: ${error?.message || error}`);
}

function withNote(card, error) {
  if (error) card.querySelector("h2").after(failure(error));
  return card;
}

export function recordView(id) {
  const body = h("div", { class: "record" }, h("p", { class: "muted" }, "Loading the linked record…"));
  const heading = h("h1", {}, "Patient record");
  const el = h("section", { class: "view" }, h("p", {}, h("a", { href: "#/patients" }, "← Find another patient")), heading, body);
  let vitals = null;
  const load = async () => {
    try {
      // The charts start with this patient at once (their first page is the first view)
      // while the linked identities are looked up; the cards fill in as their searches answer.
      vitals = new VitalsView([["subject", `Patient/${id}`]], { title: "Vital signs" });
      const loading = () => h("p", { class: "muted" }, "Loading…");
      const cards = {
        identities: section("Identities", loading()),
        parties: section("Staff and institutions", loading()),
        encounters: section("Encounters", loading()),
        devices: section("Devices", loading()),
        imaging: section("Imaging", loading()),
      };
      fill(body, h("div", { class: "grid2" }, cards.identities, cards.parties), vitals.el,
        cards.encounters, cards.devices, cards.imaging);
      let charts = vitals.start();
      const who = await identities(id);
      const main = who.golden || who.patient;
      heading.textContent = `${humanName(main)} · ${main.birthDate || "birth date unknown"} · ${main.gender || ""}`.trim();
      const subjects = who.ids.map((x) => `Patient/${x}`).join(",");
      if (who.ids.length > 1) {
        // Linked records: the charts show every identity's readings.
        await vitals.ready;
        vitals.filter = [["subject", subjects]];
        charts = vitals.reload();
      }
      const swap = (key, card) => { cards[key].replaceWith(card); cards[key] = card; };
      swap("identities", identitiesCard(who));
      performance.mark("caregraph:identities"); // bench/console.py reads these marks
      // Each card stands alone: a search the token does not allow (403) or that fails
      // leaves a note in its card, and the rest of the record still shows.
      const settle = (promise) => promise.then((value) => ({ value }), (error) => ({ error }));
      const [enc, dev, img, pat, use] = await Promise.all([
        fhirGet("Encounter", [["subject", subjects], ["_sort", "-date"], ["_count", "100"],
          ["_include", "Encounter:participant"], ["_include", "Encounter:service-provider"], ["_include", "Encounter:location"]]),
        fhirGet("Device", [["patient", subjects], ["_count", "100"]]),
        fhirGet("ImagingStudy", [["subject", subjects], ["_sort", "-started"], ["_count", "50"]]),
        fhirGet("Patient", [["_id", who.ids.join(",")], ["_include", "Patient:general-practitioner"], ["_include", "Patient:organization"]]),
        fhirGet("DeviceUseStatement", [["subject", subjects], ["_count", "200"], ["_include", "DeviceUseStatement:device"]]),
      ].map(settle));
      const included = new Map();
      for (const b of [enc.value, pat.value]) {
        for (const e of b?.entry || []) if (e.resource) included.set(`${e.resource.resourceType}/${e.resource.id}`, e.resource);
      }
      const encounters = enc.value ? entries(enc.value, "Encounter") : [];
      swap("parties", withNote(partiesCard(encounters, included, pat.value ? entries(pat.value, "Patient") : [who.patient]), enc.error || pat.error));
      swap("encounters", enc.error ? section("Encounters", failure(enc.error)) : encountersCard(encounters, included));
      swap("imaging", img.error ? section("Imaging", failure(img.error)) : imagingCard(entries(img.value, "ImagingStudy")));
      // Devices attached over time (the registry's DeviceUseStatements) and Device.patient.
      const attachments = use.value ? entries(use.value, "DeviceUseStatement").filter((st) => !["entered-in-error", "intended"].includes(st.status)) : [];
      const devices = [...(dev.value ? entries(dev.value, "Device") : []), ...(use.value ? entries(use.value, "Device") : [])]
        .filter((d, i, all) => all.findIndex((x) => x.id === d.id) === i);
      const metricSource = new Map();
      const asked = new Set();
      const drawDevices = (seen) => swap("devices", withNote(devicesCard(devices, seen, metricSource, attachments), dev.error));
      const resolveMetrics = async (seen) => {
        const unknown = [...seen.keys()].filter((r) => r.startsWith("DeviceMetric/") && !asked.has(r));
        if (!unknown.length) return;
        unknown.forEach((r) => asked.add(r));
        try {
          const found = await fhirGet("DeviceMetric", [["_id", unknown.map(refId).join(",")], ["_count", "500"], ["_elements", "source"]]);
          for (const m of entries(found, "DeviceMetric")) if (m.source?.reference) metricSource.set(`DeviceMetric/${m.id}`, m.source.reference);
          drawDevices(vitals.devices);
        } catch {
          // without DeviceMetric access the metrics stay rows of their own
        }
      };
      drawDevices(vitals.devices);
      let pending = null;
      vitals.onDevices = (seen) => {
        // Pages arrive quickly one after another; redraw the table once per frame at most.
        if (!pending) pending = requestAnimationFrame(() => { pending = null; drawDevices(seen); resolveMetrics(seen); });
      };
      await charts;
    } catch (err) {
      fill(body, h("p", { class: "error", role: "alert" }, `Could not load this patient: ${err.message}`));
      announce(err.message, "error");
    }
  };
  load();
  return { el, focus: heading, stop() { vitals?.stop(); } };
}
