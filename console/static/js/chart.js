// A time-series chart drawn as SVG: one panel, several series, drag to zoom, buttons to
// zoom and reset (for keyboards), live data appended without redrawing the page.
// Large series are reduced to the min and max of each pixel column before drawing, so a
// window of 100,000 readings costs a few hundred SVG points.

import { h, s, uid } from "./dom.js";
import { fmtClock, fmtTime } from "./format.js";

const W = 800;
const H = 220;
const M = { left: 52, right: 34, top: 12, bottom: 30 };
const PLOT_W = W - M.left - M.right;
const PLOT_H = H - M.top - M.bottom;
const MARKER_LIMIT = 240;
const DASHES = ["", "6 4", "2 3", "10 3 2 3"];

/** Nice tick values between lo and hi (about ``count`` of them). */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => x >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(6));
  return out;
}

const TIME_STEPS = [1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
  .map((x) => x * 1000);

/** Time ticks on round steps (1 s … 1 day), about ``count`` of them. */
export function timeTicks(t0, t1, count = 5) {
  const step = TIME_STEPS.find((x) => (t1 - t0) / x <= count) || 86400e3 * Math.ceil((t1 - t0) / count / 86400e3);
  const offset = new Date(t0).getTimezoneOffset() * 60e3; // align hours and days to local time
  const out = [];
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) out.push(t);
  return out;
}

/** Min/max per bucket of ``buckets`` equal time slices, keeping the time order. */
export function decimate(points, t0, t1, buckets) {
  const inView = points.filter((p) => p[0] >= t0 && p[0] <= t1);
  if (inView.length <= buckets * 2) return inView;
  const span = (t1 - t0) / buckets;
  const out = [];
  let i = 0;
  for (let b = 0; b < buckets; b += 1) {
    const end = t0 + (b + 1) * span;
    let lo = null;
    let hi = null;
    while (i < inView.length && (inView[i][0] <= end || b === buckets - 1)) {
      const p = inView[i];
      if (!lo || p[1] < lo[1]) lo = p;
      if (!hi || p[1] > hi[1]) hi = p;
      i += 1;
    }
    if (lo && hi) out.push(...(lo[0] <= hi[0] ? [lo, hi] : [hi, lo]));
  }
  return out;
}

export class TimeChart {
  /**
   * @param {{key:string,title:string,unit:string,yMin:number,yMax:number,
   *          series:{key:string,label:string}[]}} panel
   */
  constructor(panel) {
    this.panel = panel;
    this.data = new Map(panel.series.map((x) => [x.key, new Map()]));
    this.window = [Date.now() - 3600e3, Date.now()];
    this.zoom = null;
    const titleId = uid("chart-title");
    const descId = uid("chart-desc");
    this.desc = h("p", { id: descId, class: "sr-only" });
    this.svg = s("svg", {
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-labelledby": titleId,
      "aria-describedby": descId,
      class: "chart",
    });
    this.legend = h("ul", { class: "legend" });
    this.zoomLabel = h("span", { class: "zoom-label" });
    // Short visible text; the accessible name says which chart (it contains the text).
    const button = (text, action) =>
      h("button", { type: "button", class: "small", "aria-label": `${text} ${panel.title}`, onclick: action }, text);
    this.el = h(
      "figure",
      { class: "chart-panel", "data-panel": panel.key, "data-points": "0" },
      h(
        "figcaption",
        {},
        h("h3", { id: titleId }, `${panel.title} (${panel.unit})`),
        h(
          "span",
          { class: "chart-tools" },
          button("Zoom in", () => this.zoomBy(0.5)),
          button("Zoom out", () => this.zoomBy(2)),
          button("Reset zoom", () => this.resetZoom()),
          this.zoomLabel,
        ),
      ),
      this.svg,
      this.legend,
      this.desc,
    );
    this.bindDrag();
    this.render();
  }

  view() {
    return this.zoom || this.window;
  }

  setWindow(t0, t1) {
    this.window = [t0, t1];
    this.render();
  }

  /** Replace all data (e.g. a new window). */
  clear() {
    for (const m of this.data.values()) m.clear();
  }

  /** Add readings: [{series, id, t, v}]; an id seen before is replaced (upsert). */
  add(readings) {
    for (const r of readings) this.data.get(r.series)?.set(r.id, [r.t, r.v]);
  }

  points(key) {
    return [...this.data.get(key).values()].sort((a, b) => a[0] - b[0]);
  }

  zoomBy(factor) {
    const [t0, t1] = this.view();
    const mid = (t0 + t1) / 2;
    const half = Math.max(((t1 - t0) * factor) / 2, 5000);
    this.zoom = [Math.max(mid - half, this.window[0]), Math.min(mid + half, this.window[1])];
    if (this.zoom[0] <= this.window[0] && this.zoom[1] >= this.window[1]) this.zoom = null;
    this.render();
  }

  resetZoom() {
    this.zoom = null;
    this.render();
  }

  bindDrag() {
    let start = null;
    let band = null;
    const toT = (event) => {
      const rect = this.svg.getBoundingClientRect();
      const x = ((event.clientX - rect.left) / rect.width) * W;
      const [t0, t1] = this.view();
      const f = Math.min(1, Math.max(0, (x - M.left) / PLOT_W));
      return [t0 + f * (t1 - t0), Math.min(M.left + PLOT_W, Math.max(M.left, x))];
    };
    this.svg.addEventListener("pointerdown", (event) => {
      start = toT(event);
      band = s("rect", { class: "zoom-band", x: start[1], y: M.top, width: 0, height: PLOT_H });
      this.svg.append(band);
      this.svg.setPointerCapture(event.pointerId);
    });
    this.svg.addEventListener("pointermove", (event) => {
      if (!start) return;
      const [, x] = toT(event);
      band.setAttribute("x", Math.min(x, start[1]));
      band.setAttribute("width", Math.abs(x - start[1]));
    });
    this.svg.addEventListener("pointerup", (event) => {
      if (!start) return;
      const [t] = toT(event);
      const [a, b] = [Math.min(t, start[0]), Math.max(t, start[0])];
      start = null;
      band.remove();
      if (b - a > 2000) {
        this.zoom = [a, b];
        this.render();
      }
    });
  }

  render() {
    const [t0, t1] = this.view();
    const series = this.panel.series.map((x) => ({ ...x, all: this.points(x.key) }));
    const visible = series.map((x) => decimate(x.all, t0, t1, Math.floor(PLOT_W / 2)));
    let lo = this.panel.yMin;
    let hi = this.panel.yMax;
    for (const pts of visible) for (const p of pts) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
    const pad = (hi - lo) * 0.05 || 1;
    lo -= pad;
    hi += pad;
    const x = (t) => M.left + ((t - t0) / (t1 - t0)) * PLOT_W;
    const y = (v) => M.top + (1 - (v - lo) / (hi - lo)) * PLOT_H;

    const grid = s("g", { class: "grid" });
    for (const v of ticks(lo, hi, 4)) {
      grid.append(
        s("line", { x1: M.left, x2: M.left + PLOT_W, y1: y(v), y2: y(v) }),
        s("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)),
      );
    }
    for (const t of timeTicks(t0, t1, 6)) {
      grid.append(
        s("line", { x1: x(t), x2: x(t), y1: M.top, y2: M.top + PLOT_H }),
        s("text", { x: x(t), y: H - 10, "text-anchor": "middle" }, fmtClock(t, t1 - t0)),
      );
    }
    const lines = s("g", { class: "series" });
    let plotted = 0;
    visible.forEach((pts, i) => {
      if (!pts.length) return;
      plotted += pts.length;
      const cls = `s${i}`;
      lines.append(
        s("polyline", {
          class: `line ${cls}`,
          points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
          "stroke-dasharray": DASHES[i % DASHES.length] || undefined,
          "data-series": series[i].key,
        }),
      );
      if (pts.length <= MARKER_LIMIT) {
        const marks = s("g", { class: `marks ${cls}` });
        for (const p of pts) marks.append(s("circle", { class: "pt", cx: x(p[0]), cy: y(p[1]), r: 2.5 }));
        lines.append(marks);
      }
    });
    const frame = s("rect", { class: "frame", x: M.left, y: M.top, width: PLOT_W, height: PLOT_H });
    this.svg.replaceChildren(frame, grid, lines);
    if (!plotted) {
      this.svg.append(
        s("text", { class: "empty", x: M.left + PLOT_W / 2, y: M.top + PLOT_H / 2, "text-anchor": "middle" },
          "No readings in this window"),
      );
    }
    this.el.dataset.points = String(plotted);
    this.zoomLabel.textContent = this.zoom ? `zoomed: ${fmtTime(t0)} – ${fmtTime(t1)}` : "";

    const summary = [];
    this.legend.replaceChildren(
      ...series.map((x, i) => {
        const last = x.all[x.all.length - 1];
        const text = last ? `${last[1]} ${this.panel.unit} at ${fmtTime(last[0])}` : "no readings";
        summary.push(`${x.label}: ${x.all.length} readings, latest ${text}`);
        return h("li", { class: `s${i}` }, h("span", { class: "swatch", "aria-hidden": "true" }),
          `${x.label}: `, h("strong", {}, last ? `${last[1]}` : "—"),
          last ? ` ${this.panel.unit} · ${fmtTime(last[0])}` : "");
      }),
    );
    this.desc.textContent = `${this.panel.title}. ${summary.join(". ")}.`;
  }
}
