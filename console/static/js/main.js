// The console's shell: a hash router (so the server serves one page) that mounts one view
// at a time, stops the previous view's polling, and moves keyboard focus to the new view.

import { devicesView, deviceView, newDeviceView } from "./devices.js";
import { reviewView } from "./linkage.js";
import { recordView, searchView } from "./patients.js";

const ROUTES = [
  [/^#\/patients(?:\?(.*))?$/, (m) => searchView(new URLSearchParams(m[1] || "")), "patients"],
  [/^#\/patient\/([^/?]+)$/, (m) => recordView(decodeURIComponent(m[1])), "patients"],
  [/^#\/devices$/, () => devicesView(), "devices"],
  [/^#\/device-new$/, () => newDeviceView(), "devices"],
  [/^#\/device\/([^/?]+)$/, (m) => deviceView(decodeURIComponent(m[1])), "devices"],
  [/^#\/review$/, () => reviewView(), "review"],
];

let current = null;

function route(event) {
  const hash = location.hash;
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
route(null);
