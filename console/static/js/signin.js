// Development sign-in: paste an access token minted by ``caregraph token`` (or issued by
// the hospital's authorization server). The token stays in this tab only.

import { field, fill, h } from "./dom.js";
import { FHIR_BASE } from "./fhir.js";
import { problemWith, signIn } from "./session.js";

export function signInView(params) {
  const input = h("textarea", { name: "token", rows: "4", spellcheck: "false", autocomplete: "off", required: true });
  const message = h("p", { role: "alert", class: "error" });
  if (params.get("expired")) message.textContent = "Your session ended or the token was rejected: sign in again.";
  const form = h("form", { class: "signin", "aria-label": "Sign in" },
    field("Access token", input, 'Development: run  caregraph token --scope "user/*.cruds"  and paste what it prints.')[0],
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")),
    message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const jwt = input.value.trim();
    const problem = problemWith(jwt);
    if (problem) {
      message.textContent = `Not signed in: ${problem}.`;
      return;
    }
    // Ask the server before keeping the token: one it does not accept answers 401 here.
    const response = await fetch(`${FHIR_BASE}/metadata`, {
      headers: { Accept: "application/fhir+json", Authorization: `Bearer ${jwt}` },
    });
    if (response.status === 401) {
      fill(message, "Not signed in: the server does not accept this token.");
      return;
    }
    signIn(jwt);
    window.dispatchEvent(new CustomEvent("caregraph:signed-in"));
    location.hash = params.get("next") || "#/patients";
  });
  const el = h("section", { class: "view narrow" },
    h("h1", {}, "Sign in to the caregraph console"),
    h("p", {}, "Every page shows only what your token allows: its scopes decide which records you can see and change."),
    form);
  return { el, focus: input, stop() {} };
}
