// The console's only way to data: the FHIR REST API (and the linkage JSON API when mounted),
// with the session's bearer token. Errors carry the server's OperationOutcome text so the
// page can say what went wrong; a 401 ends the session (the page asks to sign in again).

import { token } from "./session.js";

function meta(name, fallback) {
  return document.querySelector(`meta[name="${name}"]`)?.content || fallback;
}

export const FHIR_BASE = meta("fhir-base", "/fhir");
export const LINKAGE_BASE = meta("linkage-base", "/linkage");

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function explain(response) {
  try {
    const body = await response.json();
    const issues = body?.issue?.map((i) => i.diagnostics || i.details?.text).filter(Boolean);
    if (issues?.length) return issues.join("; ");
    if (body?.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    // not JSON: fall through to the status line
  }
  return `${response.status} ${response.statusText}`;
}

/** Build a query string from [[name, value], ...] (names may repeat) or an object. */
export function query(params) {
  const q = new URLSearchParams();
  const pairs = Array.isArray(params) ? params : Object.entries(params || {});
  for (const [k, v] of pairs) if (v !== undefined && v !== null && v !== "") q.append(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** ``fetch`` with the session's bearer token; a 401 signals "sign in again". */
export async function authorizedFetch(url, options = {}) {
  const headers = { ...(options.headers || {}) };
  const jwt = token();
  if (jwt) headers.Authorization = `Bearer ${jwt}`;
  const response = await fetch(url, { ...options, headers });
  if (response.status === 401) window.dispatchEvent(new CustomEvent("caregraph:unauthorized"));
  return response;
}

async function request(url, options = {}) {
  const response = await authorizedFetch(url, {
    ...options,
    headers: { Accept: "application/fhir+json, application/json", ...(options.headers || {}) },
  });
  if (!response.ok) throw new ApiError(response.status, await explain(response));
  if (response.status === 204) return null;
  return response.json();
}

/** GET a FHIR path ("Patient", "Patient/1/$everything") with parameters. */
export function fhirGet(path, params, options) {
  return request(`${FHIR_BASE}/${path}${query(params)}`, options);
}

/** Follow an absolute "next" link the server handed out. */
export function follow(url, options) {
  return request(url, options);
}

export function fhirPut(path, resource) {
  return request(`${FHIR_BASE}/${path}`, {
    method: "PUT",
    headers: { "Content-Type": "application/fhir+json" },
    body: JSON.stringify(resource),
  });
}

export function fhirPost(path, resource) {
  return request(`${FHIR_BASE}/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/fhir+json" },
    body: JSON.stringify(resource),
  });
}

export function linkageGet(path, params) {
  return request(`${LINKAGE_BASE}/${path}${query(params)}`);
}

export function linkagePost(path, body) {
  return request(`${LINKAGE_BASE}/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Caregraph-Actor": "console" },
    body: JSON.stringify(body),
  });
}

/** The resources of a searchset Bundle: matches only, or those of ``type`` (includes too). */
export function entries(bundle, type) {
  const out = [];
  for (const e of bundle?.entry || []) {
    const r = e.resource;
    if (!r) continue;
    if (type ? r.resourceType === type : e.search?.mode !== "include") out.push(r);
  }
  return out;
}

export function nextLink(bundle) {
  return bundle?.link?.find((l) => l.relation === "next")?.url || null;
}

/** ``url`` (a search's next link) asking for ``count`` entries a page; the server pages by
 * offset, so the next link after it carries on from where this page ends. */
export function withCount(url, count) {
  const u = new URL(url, location.href);
  u.searchParams.set("_count", String(count));
  return u.href;
}

/** Every page of a search, up to ``maxPages``; calls ``onPage(bundle)`` as each arrives,
 * and stops early when it returns ``false``. With ``nextCount``, the pages after the first
 * ask for that many entries (a small first page draws sooner, big ones then fill in). */
export async function allPages(first, onPage, maxPages = 10, options, nextCount) {
  let bundle = first;
  let pages = 0;
  while (bundle) {
    if (onPage(bundle) === false) return false;
    pages += 1;
    const next = nextLink(bundle);
    if (!next || pages >= maxPages) return Boolean(next);
    bundle = await follow(nextCount ? withCount(next, nextCount) : next, options);
  }
  return false;
}

/** Whether an API answers at all (the linkage router may not be mounted). */
export async function available(url) {
  try {
    const response = await authorizedFetch(url, { headers: { Accept: "application/json" } });
    return response.status !== 404;
  } catch {
    return false;
  }
}
