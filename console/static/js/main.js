// The console's shell: a hash router (so the server serves one page) that mounts one view
// at a time, stops the previous view's polling, and moves keyboard focus to the new view.

import { devicesView, deviceView, newDeviceView } from "./devices.js";
import { fill, h } from "./dom.js";
import { reviewView } from "./linkage.js";
import { recordView, searchView } from "./patients.js";
import { allows, claims, signIn, signOut, token } from "./session.js";
import { signInView, verify } from "./signin.js";
import { finishSignIn, returning } from "./smart.js";
import { vitalsTable } from "./vitals.js";

const ROUTES = [
  [/^#\/patients(?:\?(.*))?$/, (m) => searchView(new URLSearchParams(m[1] || "")), "patients"],
  [/^#\/patient\/([^/?]+)$/, (m) => recordView(decodeURIComponent(m[1])), "patients"],
  [/^#\/devices$/, () => devicesView(), "devices"],
  [/^#\/device-new$/, () => newDeviceView(), "devices"],
  [/^#\/device\/([^/?]+)$/, (m) => deviceView(decodeURIComponent(m[1])), "devices"],
  [/^#\/review$/, () => reviewView(), "review"],
  [/^#\/sign-in(?:\?(.*))?$/, (m) => signInView(new URLSearchParams(m[1] || "")), "sign-in"],
];

// What each section needs from the token's scopes (the server enforces it regardless).
const SECTION_NEEDS = { patients: ["Patient", "s"], devices: ["Device", "s"], review: ["Patient", "r"] };

function sectionAllowed(section) {
  const need = SECTION_NEEDS[section];
  return !need || allows(...need);
}

function drawSession() {
  const box = document.getElementById("session");
  const who = claims();
  for (const a of document.querySelectorAll("nav a[data-section]")) {
    a.parentElement.hidden = !token() || !sectionAllowed(a.dataset.section);
  }
  if (!who) {
    fill(box);
    return;
  }
  const out = h("button", { type: "button", class: "small" }, "Sign out");
  out.addEventListener("click", () => {
    signOut();
    current?.stop();
    current = null;
    location.hash = "#/sign-in";
  });
  const expires = typeof who.exp === "number" ? ` · until ${new Date(who.exp * 1000).toLocaleTimeString()}` : "";
  fill(box, h("span", { class: "who", title: who.scope || "" }, `${who.sub || "signed in"}${who.patient ? ` (patient ${who.patient})` : ""}${expires}`), out);
}

let current = null;

function route(event) {
  let hash = location.hash;
  if (!token() && !hash.startsWith("#/sign-in")) {
    const next = hash.startsWith("#/") ? `?next=${encodeURIComponent(hash)}` : "";
    history.replaceState(null, "", `#/sign-in${next}`);
    hash = location.hash;
  }
  drawSession();
  if (!hash.startsWith("#/")) {
    if (!current) {
      history.replaceState(null, "", "#/patients"); // no hashchange: still the first load
      route(event);
    }
    return;
  }
  const found = ROUTES.map(([re, make, section]) => [hash.match(re), make, section]).find(([m]) => m);
  current?.stop();
  const main = document.getElementById("main");
  if (!found) {
    current = null;
    main.replaceChildren(Object.assign(document.createElement("h1"), { textContent: "Not found" }));
    return;
  }
  const [m, make, section] = found;
  if (!sectionAllowed(section)) {
    current = null;
    main.replaceChildren(h("section", { class: "view" }, h("h1", {}, "Not allowed"),
      h("p", {}, "Your token's scopes do not allow this page. Sign in with a token that does.")));
    return;
  }
  current = make(m);
  main.replaceChildren(current.el);
  for (const a of document.querySelectorAll("nav a[data-section]")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  // Move focus to the new view on navigation (so keyboard and screen-reader users land on
  // it), but not on first load: there the page starts at the top, skip link first.
  const focus = event ? current.focus : null;
  if (focus) {
    if (!focus.hasAttribute("tabindex") && !/^(INPUT|SELECT|TEXTAREA|BUTTON|A)$/.test(focus.tagName)) focus.tabIndex = -1;
    focus.focus({ preventScroll: false });
  }
  document.title = `${main.querySelector("h1")?.textContent || "caregraph"} · caregraph console`;
}

document.querySelector("[data-skip]")?.addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});
window.addEventListener("hashchange", route);
window.addEventListener("caregraph:signed-in", drawSession);
window.addEventListener("caregraph:unauthorized", () => {
  if (!token()) return;
  signOut();
  current?.stop();
  current = null;
  location.hash = "#/sign-in?expired=1";
});
// Back from the hospital's authorization server (SMART, jwks mode): keep the token it gave
// once this server accepts it, then carry on where the user was going.
if (returning()) {
  const done = await finishSignIn();
  const problem = done.token ? await verify(done.token) : `Not signed in: ${done.error}.`;
  if (problem) {
    history.replaceState(null, "", `#/sign-in?failed=${encodeURIComponent(problem)}`);
  } else {
    signIn(done.token);
    history.replaceState(null, "", done.next || "#/patients");
  }
}

// The charts' code table, asked for now: the first Observation query needs it.
if (token()) vitalsTable().catch(() => {});
route(null);
