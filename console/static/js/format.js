// Small, pure formatting helpers for FHIR data types.

/** "Family, Given" from the official (or first) HumanName. */
export function humanName(resource) {
  const names = resource?.name || [];
  const n = names.find((x) => x.use === "official") || names[0];
  if (!n) return "(no name)";
  if (n.text) return n.text;
  const given = (n.given || []).join(" ");
  return [n.family, given].filter(Boolean).join(", ") || "(no name)";
}

/** "value (system)" for an Identifier, short system names for the usual ones. */
export function identifierText(ident) {
  const type = ident?.type?.coding?.[0]?.code || ident?.type?.text;
  const system = ident?.system ? ` — ${ident.system}` : "";
  return `${type ? type + " " : ""}${ident?.value ?? "?"}${system}`;
}

/** The id part of a reference "Type/id" (or a full URL). */
export function refId(reference) {
  if (!reference) return null;
  const parts = String(reference).split("/");
  return parts[parts.length - 1] || null;
}

/** The type part of a reference "Type/id". */
export function refType(reference) {
  if (!reference) return null;
  const parts = String(reference).split("/");
  return parts.length >= 2 ? parts[parts.length - 2] : null;
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit",
});
const timeOnly = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** A FHIR date or dateTime for people; a bare date stays a date. */
export function fmtDate(value) {
  if (!value) return "—";
  if (/^\d{4}(-\d{2}(-\d{2})?)?$/.test(value)) return value;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : dateTime.format(d);
}

const hourMinute = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayHour = new Intl.DateTimeFormat(undefined, { month: "short", day: "2-digit", hour: "2-digit" });

/** An axis label: seconds only for short spans, the day for spans over a day. */
export function fmtClock(ms, spanMs) {
  if (spanMs > 36 * 3600e3) return dayHour.format(new Date(ms));
  if (spanMs > 10 * 60e3) return hourMinute.format(new Date(ms));
  return timeOnly.format(new Date(ms));
}

export function fmtTime(ms) {
  return timeOnly.format(new Date(ms));
}

/** "12 s ago", "3 min ago", "2 h ago" from milliseconds. */
export function fmtAgo(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "never";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min ago`;
  const hrs = Math.round(m / 60);
  if (hrs < 48) return `${hrs} h ago`;
  return `${Math.round(hrs / 24)} d ago`;
}

/** The time of an Observation (effective[x]), in epoch ms, or null. */
export function effectiveMs(obs) {
  const t = obs.effectiveDateTime || obs.effectiveInstant || obs.effectivePeriod?.start || obs.issued;
  if (!t) return null;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

/** Display text of a CodeableConcept. */
export function conceptText(cc) {
  if (!cc) return "—";
  return cc.text || cc.coding?.find((c) => c.display)?.display || cc.coding?.[0]?.code || "—";
}

/** An ISO instant with milliseconds, for FHIR date search prefixes. */
export function iso(ms) {
  return new Date(ms).toISOString();
}
