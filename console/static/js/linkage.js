// Linkage review: the MPI's queue of possible matches and possible duplicates, each pair
// side by side with the per-field weights behind its score, and the decisions the linkage
// API offers (link, reject, merge, not a duplicate, unmerge). Needs the /linkage router.

import { announce, field, fill, h } from "./dom.js";
import { available, fhirGet, LINKAGE_BASE, linkageGet, linkagePost } from "./fhir.js";
import { humanName, identifierText } from "./format.js";
import { allows } from "./session.js";

const FIELDS = [
  ["Name", (p) => humanName(p)],
  ["Birth date", (p) => p.birthDate || "—"],
  ["Sex", (p) => p.gender || "—"],
  ["Identifiers", (p) => (p.identifier || []).map(identifierText).join("; ") || "—"],
  ["Address", (p) => (p.address || []).map((a) => [...(a.line || []), a.city, a.postalCode].filter(Boolean).join(", ")).join("; ") || "—"],
  ["Telecom", (p) => (p.telecom || []).map((t) => t.value).join(", ") || "—"],
];

async function patientOrGolden(id, golden) {
  if (!id) return null;
  if (golden) return (await linkageGet(`golden/${encodeURIComponent(id)}`)).resource;
  return fhirGet(`Patient/${encodeURIComponent(id)}`);
}

function weightsTable(explanation) {
  const fields = explanation?.fields || [];
  if (!fields.length) return h("p", { class: "muted" }, "No per-field explanation.");
  const max = Math.max(1, ...fields.map((f) => Math.abs(f.weight)));
  return h("table", { class: "list weights" },
    h("caption", {}, `Evidence: total weight ${explanation.weight} bits (prior ${explanation.prior_weight})${explanation.rule ? `, rule ${explanation.rule}` : ""}`),
    h("thead", {}, h("tr", {}, ...["Field", "Level", "Weight (bits)", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...fields.map((f) => h("tr", {},
      h("th", { scope: "row" }, f.comparison), h("td", {}, f.level + (f.tf_adjusted ? " (frequency adjusted)" : "")),
      h("td", { class: "num" }, f.weight.toFixed(2)),
      h("td", {}, h("meter", { min: "0", max: String(max), value: String(Math.abs(f.weight)),
        class: f.weight >= 0 ? "for" : "against", "aria-label": `${f.comparison} ${f.weight >= 0 ? "for" : "against"} a match` }))))));
}

function sideBySide(left, right, leftTitle, rightTitle) {
  return h("table", { class: "list compare" },
    h("caption", { class: "sr-only" }, "The two records side by side"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, leftTitle), h("th", { scope: "col" }, rightTitle))),
    h("tbody", {}, ...FIELDS.map(([label, get]) => {
      const a = left ? get(left) : "—";
      const b = right ? get(right) : "—";
      return h("tr", { class: a === b ? "same" : "differs" }, h("th", { scope: "row" }, label), h("td", {}, a), h("td", {}, b));
    })));
}

function itemCard(item, reload) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading records…"));
  const isMatch = item.kind === "possible_match";
  const title = isMatch ? "Possible match" : "Possible duplicate golden records";
  const card = h("article", { class: "card review-item", "data-kind": item.kind },
    h("h2", {}, `${title} · score ${item.score === null || item.score === undefined ? "?" : (item.score * 100).toFixed(1) + " %"}`), body);
  const act = (label, path, payload, done) => h("button", { type: "button", disabled: !allows("Patient", "u"), onclick: async (event) => {
    event.target.disabled = true;
    try {
      await linkagePost(path, payload);
      announce(done);
      reload();
    } catch (err) {
      announce(`${label} failed: ${err.message}`, "error");
      event.target.disabled = false;
    }
  } }, label);
  (async () => {
    const [left, right] = await Promise.all([
      patientOrGolden(isMatch ? item.source_id : item.other_golden_id, !isMatch),
      patientOrGolden(item.golden_id, true),
    ]);
    const actions = isMatch
      ? [act("Accept: link to this golden record", "links", { source_id: item.source_id, golden_id: item.golden_id }, "Linked"),
         act("Reject: a different person", "unlinks", { source_id: item.source_id, golden_id: item.golden_id }, "Rejected")]
      : [act("Merge into the golden record", "merges", { from_golden: item.other_golden_id, into_golden: item.golden_id }, "Merged"),
         act("Not duplicates", "not-duplicates", { golden_a: item.golden_id, golden_b: item.other_golden_id }, "Marked as different people")];
    fill(body,
      sideBySide(left, right, isMatch ? "Incoming source record" : "Other golden record", "Golden record"),
      weightsTable(item.explanation),
      h("div", { class: "actions" }, ...actions));
  })().catch((err) => fill(body, h("p", { class: "error", role: "alert" }, err.message)));
  return card;
}

export function reviewView() {
  const list = h("div", { class: "review-list" }, h("p", { class: "muted" }, "Loading the review queue…"));
  const unmergeId = h("input", { name: "golden", required: true });
  const unmerge = h("form", { class: "inline", "aria-label": "Undo a merge" },
    field("Golden record id that was merged away", unmergeId)[0],
    h("button", { type: "submit" }, "Unmerge"));
  unmerge.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await linkagePost("unmerges", { golden_id: unmergeId.value.trim() });
      announce("Unmerged");
      load();
    } catch (err) {
      announce(`Unmerge failed: ${err.message}`, "error");
    }
  });
  const el = h("section", { class: "view" }, h("h1", {}, "Linkage review"), list, h("section", { class: "card" }, h("h2", {}, "Undo a merge"), unmerge));
  const load = async () => {
    if (!(await available(`${LINKAGE_BASE}/review`))) {
      fill(list, h("p", { class: "notice" }, "The linkage API (/linkage) is not mounted in this caregraph, so there is nothing to review here."));
      unmerge.hidden = true;
      return;
    }
    try {
      const items = await linkageGet("review");
      if (!items.length) {
        fill(list, h("p", {}, "Nothing to review: every record is linked with certainty."));
      } else {
        fill(list, h("p", { class: "summary" }, `${items.length} items to review`), ...items.map((item) => itemCard(item, load)));
      }
      el.dataset.loaded = "true";
    } catch (err) {
      fill(list, h("p", { class: "error", role: "alert" }, err.message));
    }
  };
  load();
  return { el, focus: el.querySelector("h1"), stop() {} };
}
