// Vital-sign charts for a set of Observations (a patient's identities, or one device):
// one query per chart, newest first, rendered page by page so the first view is quick,
// then polled for newer readings while "Live" is on.

import { TimeChart } from "./chart.js";
import { announce, field, h, uid } from "./dom.js";
import { allPages, entries, fhirGet } from "./fhir.js";
import { effectiveMs, fmtTime, iso } from "./format.js";

export const WINDOWS = [
  ["Last 15 minutes", 15 * 60e3],
  ["Last hour", 3600e3],
  ["Last 6 hours", 6 * 3600e3],
  ["Last 24 hours", 24 * 3600e3],
  ["Last 7 days", 7 * 24 * 3600e3],
];
const PAGE = 1000;
const POLL_MS = 5000;
const ELEMENTS = "code,effectiveDateTime,effectiveInstant,effectivePeriod,issued,valueQuantity";

let table = null;

/** The chart table served by the console router (one source with the server's tests). */
export async function vitalsTable() {
  if (!table) {
    const response = await fetch("vitals.json");
    if (!response.ok) throw new Error(`vitals.json: ${response.status}`);
    table = await response.json();
  }
  return table;
}

/** "system|code" -> series key, for one panel. */
export function codeIndex(panel) {
  const index = new Map();
  for (const series of panel.series) for (const code of series.codes) index.set(code, series.key);
  return index;
}

/** An Observation as a chart reading, or null (no number, no time, not this panel). */
export function reading(obs, index) {
  const v = obs.valueQuantity?.value;
  const t = effectiveMs(obs);
  if (typeof v !== "number" || t === null) return null;
  for (const c of obs.code?.coding || []) {
    const key = index.get(`${c.system}|${c.code}`);
    if (key) return { series: key, id: obs.id, t, v };
  }
  return null;
}

export class VitalsView {
  /** @param {[string,string][]} filter FHIR search parameters that pick the Observations. */
  constructor(filter, { title = "Vital signs", windowMs = 3600e3 } = {}) {
    this.filter = filter;
    this.windowMs = windowMs;
    this.charts = new Map();
    this.indexes = new Map();
    this.latest = new Map();
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
    const { panels } = await vitalsTable();
    for (const panel of panels) {
      const chart = new TimeChart(panel);
      this.charts.set(panel.key, chart);
      this.indexes.set(panel.key, codeIndex(panel));
      this.grid.append(chart.el);
    }
    await this.reload();
  }

  params(panel, extra) {
    const codes = panel.series.flatMap((x) => x.codes).join(",");
    return [...this.filter, ["code", codes], ...extra, ["_sort", "-date"], ["_count", PAGE], ["_elements", ELEMENTS]];
  }

  async reload() {
    const generation = ++this.generation;
    const now = Date.now();
    const start = now - this.windowMs;
    this.latest.clear();
    const { panels } = await vitalsTable();
    await Promise.all(panels.map(async (panel) => {
      const chart = this.charts.get(panel.key);
      chart.clear();
      chart.zoom = null;
      chart.setWindow(start, now);
      try {
        const first = await fhirGet("Observation", this.params(panel, [["date", `ge${iso(start)}`]]));
        const more = await allPages(first, (bundle) => {
          if (generation !== this.generation) return;
          this.ingest(panel, bundle);
          chart.render();
        }, 20);
        if (more) announce(`${panel.title}: showing the newest ${20 * PAGE} readings of this window`);
      } catch (err) {
        announce(`${panel.title}: ${err.message}`, "error");
      }
    }));
    if (generation === this.generation) {
      this.el.dataset.loaded = "true";
      this.updated.textContent = `Updated ${fmtTime(Date.now())}`;
      this.schedule();
    }
  }

  ingest(panel, bundle) {
    const index = this.indexes.get(panel.key);
    const readings = entries(bundle).map((o) => reading(o, index)).filter(Boolean);
    this.charts.get(panel.key).add(readings);
    const newest = Math.max(this.latest.get(panel.key) || 0, ...readings.map((r) => r.t));
    this.latest.set(panel.key, newest);
  }

  schedule() {
    clearTimeout(this.timer);
    if (this.live.checked && this.el.isConnected) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async poll() {
    const generation = this.generation;
    const now = Date.now();
    const { panels } = await vitalsTable();
    await Promise.all(panels.map(async (panel) => {
      const since = this.latest.get(panel.key) || now - this.windowMs;
      try {
        // ``ge`` rather than ``gt``: a reading in the same millisecond is not lost, and the
        // chart upserts by id, so the one seen before is not drawn twice.
        const bundle = await fhirGet("Observation", this.params(panel, [["date", `ge${iso(since)}`]]));
        if (generation !== this.generation) return;
        this.ingest(panel, bundle);
        const chart = this.charts.get(panel.key);
        chart.window = [now - this.windowMs, now];
        chart.render();
      } catch (err) {
        announce(`${panel.title}: ${err.message}`, "error");
      }
    }));
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
