// Sign-in. The server says which ways it offers (``sign-in/options``): in development auth
// mode a development sign-in (choose who you are, your scopes and optionally a patient; the
// server mints the token), always the paste of an access token (from ``caregraph token`` or
// the hospital's authorization server). The token stays in this tab only.

import { field, fill, h } from "./dom.js";
import { FHIR_BASE } from "./fhir.js";
import { problemWith, signIn } from "./session.js";
import { startSignIn } from "./smart.js";

const OPTIONS_URL = "sign-in/options";
const DEVELOPMENT_URL = "sign-in/development";

/** Why the server would not accept ``jwt``, or null when it does. */
export async function verify(jwt) {
  const problem = problemWith(jwt);
  if (problem) return `Not signed in: ${problem}.`;
  // Ask the server before keeping the token: one it does not accept answers 401 here.
  const response = await fetch(`${FHIR_BASE}/metadata`, {
    headers: { Accept: "application/fhir+json", Authorization: `Bearer ${jwt}` },
  });
  if (response.status === 401) return "Not signed in: the server does not accept this token.";
  return null;
}

/** Keep ``jwt`` as the session once the server accepts it; an error text otherwise. */
async function accept(jwt, params) {
  const problem = await verify(jwt);
  if (problem) return problem;
  signIn(jwt);
  window.dispatchEvent(new CustomEvent("caregraph:signed-in"));
  location.hash = params.get("next") || "#/patients";
  return null;
}

async function detail(response) {
  try {
    const body = await response.json();
    if (typeof body?.detail === "string") return body.detail;
    if (Array.isArray(body?.detail)) return body.detail.map((d) => d.msg).join("; ");
  } catch {
    // not JSON
  }
  return `${response.status} ${response.statusText}`;
}

/** The development sign-in form for ``dev`` (the options' ``development`` part). */
function developmentForm(dev, params) {
  const users = dev.users || [];
  const who = h("select", { name: "user" },
    ...users.map((u, i) => h("option", { value: String(i) }, u.label)),
    h("option", { value: "other" }, "Someone else"));
  const subject = h("input", { name: "subject", autocomplete: "username", required: true, spellcheck: "false" });
  const scope = h("input", { name: "scope", required: true, spellcheck: "false", class: "wide" });
  const patient = h("input", { name: "patient", spellcheck: "false" });
  const message = h("p", { role: "alert", class: "error" });
  const preset = () => {
    const u = users[Number(who.value)];
    if (!u) return;
    subject.value = u.subject;
    scope.value = u.scope;
    patient.required = Boolean(u.needs_patient);
  };
  who.addEventListener("change", preset);
  preset();
  const form = h("form", { class: "signin", "aria-label": "Development sign-in" },
    field("User", who, "who you are in the demo; it fills in the user name and scopes")[0],
    field("User name", subject, "the token's subject (sub)")[0],
    field("Scopes", scope, "SMART scopes, space-separated, e.g. user/*.rs or patient/*.rs")[0],
    field("Patient id", patient, "optional: limit the token to one patient's records (needed for patient/ scopes)")[0],
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Start development session")),
    message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    const response = await fetch(DEVELOPMENT_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ subject: subject.value.trim(), scope: scope.value.trim(), patient: patient.value.trim() || null }),
    });
    if (!response.ok) {
      fill(message, `Not signed in: ${await detail(response)}.`);
      return;
    }
    const issued = await response.json();
    const problem = await accept(issued.access_token, params);
    if (problem) fill(message, problem);
  });
  return h("section", { class: "card", "aria-labelledby": "dev-sign-in" },
    h("h2", { id: "dev-sign-in" }, "Development sign-in"),
    h("p", {}, `This caregraph runs in development auth mode: it issues a token for whom you choose, valid ${Math.round((dev.lifetime_s || 3600) / 60)} minutes. It is never offered with a real authorization server.`),
    form);
}

function pasteForm(params, hint) {
  const input = h("textarea", { name: "token", rows: "4", spellcheck: "false", autocomplete: "off", required: true });
  const message = h("p", { role: "alert", class: "error" });
  // Why the last session ended, or why a sign-in elsewhere failed, in the one alert.
  if (params.get("expired")) message.textContent = "Your session ended or the token was rejected: sign in again.";
  if (params.get("failed")) message.textContent = params.get("failed");
  const form = h("form", { class: "signin", "aria-label": "Sign in" },
    field("Access token", input, hint)[0],
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")),
    message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = await accept(input.value.trim(), params);
    if (problem) fill(message, problem);
  });
  return [form, input];
}

/** "Sign in with <issuer>": SMART authorization code with PKCE (jwks mode, configured). */
function smartCard(options, params) {
  const go = h("button", { type: "button" }, `Sign in with ${options.issuer}`);
  go.addEventListener("click", () => {
    go.disabled = true;
    startSignIn(options.smart, params.get("next") || "#/patients").catch((err) => {
      go.disabled = false;
      go.after(h("p", { role: "alert", class: "error" }, `Not signed in: ${err.message}`));
    });
  });
  return h("section", { class: "card", "aria-labelledby": "smart-sign-in" },
    h("h2", { id: "smart-sign-in" }, "Hospital sign-in"),
    h("p", {}, "You will sign in at your hospital's authorization server and come back here; it decides what you may see."),
    h("div", { class: "actions" }, go));
}

/** Where a real token comes from in jwks mode, from what the options say. */
function issuerNote(options) {
  const smart = options.smart;
  const issuer = options.issuer;
  if (!issuer) return null;
  const missing = smart?.missing?.length ? ` Signing in from this page (SMART authorization code with PKCE) still needs: ${smart.missing.join(", ")}.` : "";
  return h("p", { class: "notice" },
    `Tokens come from your hospital's authorization server (${issuer}). Sign in there with a SMART app registered for caregraph and paste the access token it gives you.${missing}`);
}

export function signInView(params) {
  const heading = h("h1", {}, "Sign in to the caregraph console");
  const offered = h("div", {});
  const [paste, input] = pasteForm(params, 'Development: run  caregraph token --scope "user/*.cruds"  and paste what it prints.');
  const el = h("section", { class: "view narrow" },
    heading,
    h("p", {}, "Every page shows only what your token allows: its scopes decide which records you can see and change."),
    offered,
    h("section", { class: "card", "aria-labelledby": "token-sign-in" }, h("h2", { id: "token-sign-in" }, "Sign in with a token you already have"), paste));
  const view = { el, focus: input, stop() {} };
  fetch(OPTIONS_URL, { headers: { Accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : null))
    .then((options) => {
      if (!options) return;
      if (options.development) {
        fill(offered, developmentForm(options.development, params));
      } else if (options.smart && !options.smart.missing?.length) {
        fill(offered, smartCard(options, params));
      } else {
        fill(offered, issuerNote(options));
      }
    })
    .catch(() => {
      // no options: the token paste still works
    });
  return view;
}
