// Vital-sign charts for a set of Observations (a patient's identities, or one device):
// one query for all charts, newest first, drawn page by page so the first view is quick,
// then polled for newer readings while "Live" is on.

import { TimeChart } from "./chart.js";
import { announce, field, h, uid } from "./dom.js";
import { allPages, authorizedFetch, entries, fhirGet } from "./fhir.js";
import { effectiveMs, fmtTime, iso } from "./format.js";

export const WINDOWS = [
  ["Last 15 minutes", 15 * 60e3],
  ["Last hour", 3600e3],
  ["Last 6 hours", 6 * 3600e3],
  ["Last 24 hours", 24 * 3600e3],
  ["Last 7 days", 7 * 24 * 3600e3],
];
const PAGE = 1000;
// The first page only has to draw the first view: the newest readings of every vital sign
// (250 is about four minutes of six vital signs every 5 s). A 1000-entry first page cost
// four times the server time and 540 KB before anything was drawn (bench/console.py).
const FIRST_PAGE = 250;
const MAX_PAGES = 100;
const POLL_MS = 5000;
const ELEMENTS = "code,effectiveDateTime,effectiveInstant,effectivePeriod,issued,valueQuantity,device";

let table = null;

/** The chart table served by the console router (one source with the server's tests). */
export function vitalsTable() {
  // One request, shared by every caller (main.js starts it as the page loads).
  if (!table) {
    table = authorizedFetch("vitals.json").then((response) => {
      if (!response.ok) throw new Error(`vitals.json: ${response.status}`);
      return response.json();
    });
    table.catch(() => { table = null; }); // a failure is asked again next time
  }
  return table;
}

/** "system|code" -> [panel key, series key], over every panel. */
export function codeIndex(panels) {
  const index = new Map();
  for (const panel of panels) {
    for (const series of panel.series) for (const code of series.codes) index.set(code, [panel.key, series.key]);
  }
  return index;
}

/** An Observation as a chart reading, or null (no number, no time, no charted code). */
export function reading(obs, index) {
  const v = obs.valueQuantity?.value;
  const t = effectiveMs(obs);
  if (typeof v !== "number" || t === null) return null;
  for (const c of obs.code?.coding || []) {
    const key = index.get(`${c.system}|${c.code}`);
    if (key) return { panel: key[0], series: key[1], id: obs.id, t, v, device: obs.device };
  }
  return null;
}

export class VitalsView {
  /** @param {[string,string][]} filter FHIR search parameters that pick the Observations. */
  constructor(filter, { title = "Vital signs", windowMs = 3600e3 } = {}) {
    this.filter = filter;
    this.windowMs = windowMs;
    this.charts = new Map();
    this.index = new Map();
    this.codes = "";
    this.latest = 0;
    /** Device reference -> {first, last, count, label}: the devices that measured these. */
    this.devices = new Map();
    this.onDevices = null;
    /** Resolves once the charts exist (``start`` has read the chart table). */
    this.ready = Promise.resolve();
    this.timer = null;
    this.generation = 0;
    const select = h("select", { name: "window" },
      ...WINDOWS.map(([label, ms]) => h("option", { value: ms, selected: ms === windowMs }, label)));
    select.addEventListener("change", () => {
      this.windowMs = Number(select.value);
      this.reload();
    });
    this.live = h("input", { type: "checkbox", name: "live", id: uid("live"), checked: true });
    this.live.addEventListener("change", () => this.schedule());
    this.updated = h("span", { class: "updated", "aria-live": "off" });
    this.grid = h("div", { class: "charts" });
    this.el = h("section", { class: "vitals", "aria-label": title },
      h("h2", {}, title),
      h("div", { class: "toolbar" },
        field("Window", select)[0],
        h("div", { class: "field check" }, this.live, h("label", { for: this.live.id }, "Live (every 5 s)")),
        this.updated),
      this.grid);
  }

  async start() {
    let built;
    this.ready = new Promise((resolve) => { built = resolve; });
    const { panels } = await vitalsTable();
    this.index = codeIndex(panels);
    this.codes = [...this.index.keys()].join(",");
    for (const panel of panels) {
      const chart = new TimeChart(panel);
      this.charts.set(panel.key, chart);
      this.grid.append(chart.el);
    }
    built();
    await this.reload();
  }

  // One query for every chart, newest first: the first page (the latest readings of all
  // vital signs) draws the first view; older pages fill the window in behind it.
  params(since, count = PAGE) {
    return [...this.filter, ["code", this.codes], ["date", `ge${iso(since)}`],
      ["_sort", "-date"], ["_count", count], ["_elements", ELEMENTS], ["_total", "none"]];
  }

  async reload() {
    const generation = ++this.generation;
    const now = Date.now();
    const start = now - this.windowMs;
    this.latest = 0;
    this.devices.clear();
    for (const chart of this.charts.values()) {
      chart.clear();
      chart.zoom = null;
      chart.window = [start, now];
    }
    try {
      const first = await fhirGet("Observation", this.params(start, FIRST_PAGE));
      const more = await allPages(first, (bundle) => {
        if (generation !== this.generation) return false; // superseded: stop paging
        this.ingest(bundle);
        if (!this.el.dataset.firstView) performance.mark("caregraph:vitals-first-points");
        this.el.dataset.firstView = "true";
      }, MAX_PAGES, undefined, PAGE);
      if (more) announce(`Vital signs: showing the newest ${FIRST_PAGE + (MAX_PAGES - 1) * PAGE} readings of this window`);
    } catch (err) {
      announce(`Vital signs: ${err.message}`, "error");
    }
    if (generation === this.generation) {
      for (const chart of this.charts.values()) chart.render();
      if (!this.el.dataset.loaded) performance.mark("caregraph:vitals-window-loaded");
      this.el.dataset.loaded = "true";
      this.updated.textContent = `Updated ${fmtTime(Date.now())}`;
      this.schedule();
    }
  }

  ingest(bundle) {
    const touched = new Set();
    const byPanel = new Map();
    for (const obs of entries(bundle)) {
      const r = reading(obs, this.index);
      if (!r) continue;
      if (!byPanel.has(r.panel)) byPanel.set(r.panel, []);
      byPanel.get(r.panel).push(r);
      this.latest = Math.max(this.latest, r.t);
      const ref = r.device?.reference;
      if (ref) {
        const seen = this.devices.get(ref) || { first: r.t, last: r.t, count: 0, label: r.device.identifier?.value || r.device.display };
        seen.first = Math.min(seen.first, r.t);
        seen.last = Math.max(seen.last, r.t);
        seen.count += 1;
        this.devices.set(ref, seen);
      }
    }
    for (const [key, readings] of byPanel) {
      this.charts.get(key).add(readings);
      touched.add(key);
    }
    for (const key of touched) this.charts.get(key).render();
    this.onDevices?.(this.devices);
  }

  schedule() {
    clearTimeout(this.timer);
    if (this.live.checked && this.el.isConnected) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async poll() {
    const generation = this.generation;
    const now = Date.now();
    // ``ge`` rather than ``gt``: a reading in the same millisecond is not lost, and the
    // charts upsert by id, so the one seen before is not drawn twice.
    const since = this.latest || now - this.windowMs;
    try {
      const first = await fhirGet("Observation", this.params(since));
      for (const chart of this.charts.values()) chart.window = [now - this.windowMs, now];
      await allPages(first, (bundle) => {
        if (generation !== this.generation) return false;
        this.ingest(bundle);
        return true;
      }, MAX_PAGES);
      for (const chart of this.charts.values()) chart.render();
    } catch (err) {
      announce(`Vital signs: ${err.message}`, "error");
    }
    if (generation === this.generation) {
      this.updated.textContent = `Updated ${fmtTime(Date.now())}`;
      this.schedule();
    }
  }

  stop() {
    this.generation += 1;
    clearTimeout(this.timer);
    this.timer = null;
  }
}
