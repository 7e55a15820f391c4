// A device's line trace for biomedical engineers: the last raw frames it sent (as the
// serial gateway put them on raw.device), the bytes its driver refused on the line (bad
// checksum, bad framing, garbage between frames, with the reason) and the dead letters
// concerning it (frames or readings a consumer gave up on, with the error), from
// /devices/{id}/frames, /rejected and /dead-letters. Polled while the page is open.

import { fill, h } from "./dom.js";
import { ApiError, authorizedFetch } from "./fhir.js";
import { fmtDate } from "./format.js";

const POLL_MS = 3000;
const SHOWN = 20;

/** The hex of a frame in rows of ``width`` bytes: ``["01 24 37 ...", ...]``. */
export function hexRows(hex, width = 16) {
  const bytes = String(hex || "").split(/\s+/).filter(Boolean);
  const rows = [];
  for (let i = 0; i < bytes.length; i += width) rows.push(bytes.slice(i, i + width).join(" "));
  return rows;
}

async function getJson(path) {
  const response = await authorizedFetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    let text = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body?.detail === "string") text = body.detail;
    } catch {
      // not JSON: the status line
    }
    throw new ApiError(response.status, text);
  }
  return response.json();
}

function bytesCell(entry) {
  return h("td", { class: "bytes" },
    h("pre", { class: "hex", "aria-label": "hex" }, hexRows(entry.hex).join("\n")),
    h("pre", { class: "ascii", "aria-label": "ASCII" }, entry.ascii));
}

function framesTable(frames) {
  if (!frames.length) return h("p", { class: "muted" }, "No frames from this device yet.");
  return h("table", { class: "list trail", "data-kind": "frames" },
    h("caption", {}, `Last ${frames.length} raw frames, newest first`),
    h("thead", {}, h("tr", {}, ...["Received", "Bytes", "Frame (hex and ASCII)"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...frames.map((f) => h("tr", { "data-message": f.message_id || "" },
      h("td", {}, fmtDate(f.at), h("br"), h("span", { class: "hint" }, f.bus)),
      h("td", { class: "num" }, String(f.size)),
      bytesCell(f)))));
}

function rejectedTable(rejected) {
  if (!rejected.length) return h("p", { class: "muted" }, "No rejected frames: every frame on the line was well formed.");
  return h("table", { class: "list trail", "data-kind": "rejected" },
    h("caption", {}, `Last ${rejected.length} rejected frames, newest first`),
    h("thead", {}, h("tr", {}, ...["Received", "Reason", "Bytes (hex and ASCII)"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...rejected.map((r) => h("tr", { "data-message": r.message_id || "" },
      h("td", {}, fmtDate(r.at), h("br"), h("span", { class: "hint" }, `${r.size} bytes · ${r.bus}`)),
      h("td", { class: "wrap error-text" }, r.reason),
      bytesCell(r)))));
}

function deadTable(letters) {
  if (!letters.length) return h("p", { class: "muted" }, "No dead letters: caregraph handled everything this device sent.");
  return h("table", { class: "list trail", "data-kind": "dead-letters" },
    h("caption", {}, `Last ${letters.length} dead letters, newest first`),
    h("thead", {}, h("tr", {}, ...["Failed", "Error", "Message (hex and ASCII)"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...letters.map((d) => h("tr", {},
      h("td", {}, fmtDate(d.at), h("br"), h("span", { class: "hint" }, `${d.group} · ${d.origin}`)),
      h("td", { class: "wrap error-text" }, d.error),
      bytesCell(d)))));
}

/** The card; ``deviceId`` is the device's own id (``urn:caregraph:device``). */
export function trailCard(deviceId) {
  const frames = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const dead = h("div", {});
  const rejected = h("div", {});
  const updated = h("p", { class: "updated", "aria-live": "off" });
  const el = h("section", { class: "card", "aria-label": "Raw frames and dead letters" },
    h("h2", {}, "Raw frames and dead letters"), updated,
    h("h3", {}, "Dead letters"), dead,
    h("h3", {}, "Rejected frames"), rejected,
    h("h3", {}, "Raw frames"), frames);
  const base = `/devices/${encodeURIComponent(deviceId)}`;
  let timer = null;
  let stopped = false;
  const load = async () => {
    try {
      const [f, d, r] = await Promise.all([
        getJson(`${base}/frames?limit=${SHOWN}`),
        getJson(`${base}/dead-letters?limit=${SHOWN}`),
        getJson(`${base}/rejected?limit=${SHOWN}`),
      ]);
      fill(frames, framesTable(f.frames));
      fill(dead, deadTable(d.dead_letters));
      fill(rejected, rejectedTable(r.rejected));
      el.dataset.frames = String(f.frames.length);
      el.dataset.deadLetters = String(d.dead_letters.length);
      el.dataset.rejected = String(r.rejected.length);
      updated.textContent = `Updated ${new Date().toLocaleTimeString()} · the newest ${f.kept} of each are kept`;
    } catch (err) {
      const text = err.status === 404 ? "This caregraph does not keep raw frames (no device trail mounted)." : err.message;
      fill(frames, h("p", { class: err.status === 404 || err.status === 403 ? "notice" : "error" }, text));
      fill(dead);
      fill(rejected);
      if (err.status === 404 || err.status === 403) return; // asking again will not help
    }
    if (!stopped) timer = setTimeout(load, POLL_MS);
  };
  load();
  return { el, stop() { stopped = true; clearTimeout(timer); } };
}
