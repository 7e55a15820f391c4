// SMART App Launch, standalone: the authorization-code flow with PKCE (S256) against the
// hospital's authorization server, for jwks mode. The page is a public client: it keeps the
// code verifier and state in this tab's sessionStorage, sends the user to the server's
// authorization endpoint, and on return (``/app/?code=...&state=...``) exchanges the code
// at the token endpoint itself. No secret is involved anywhere.

const KEY = "caregraph.console.smart";

/** base64url without padding, of bytes. */
export function b64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random(n) {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

/** The S256 code challenge of ``verifier`` (RFC 7636 4.2). */
export async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return b64url(new Uint8Array(digest));
}

export function redirectUri() {
  return new URL(".", location.href.split("#")[0].split("?")[0]).href;
}

/** Leave for the authorization server; back here with a code (or an error). */
export async function startSignIn(smart, next) {
  const verifier = random(48); // 64 characters, within RFC 7636's 43..128
  const state = random(16);
  const aud = smart.audience || new URL("../fhir", redirectUri()).href;
  sessionStorage.setItem(KEY, JSON.stringify({ state, verifier, next, token_endpoint: smart.token_endpoint, client_id: smart.client_id, redirect_uri: redirectUri() }));
  const url = new URL(smart.authorization_endpoint);
  const params = {
    response_type: "code",
    client_id: smart.client_id,
    redirect_uri: redirectUri(),
    scope: smart.scope,
    state,
    aud,
    code_challenge: await challengeOf(verifier),
    code_challenge_method: "S256",
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  location.assign(url.href);
}

/** Whether this load is the return from the authorization server. */
export function returning(search = location.search) {
  const q = new URLSearchParams(search);
  return q.has("state") && (q.has("code") || q.has("error"));
}

/**
 * Finish the flow: ``{ token, next }`` or ``{ error }``. The URL's query is removed either
 * way (a code is single-use and must not stay in the address bar or history).
 */
export async function finishSignIn(search = location.search) {
  const q = new URLSearchParams(search);
  const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
  sessionStorage.removeItem(KEY);
  history.replaceState(null, "", location.pathname + location.hash);
  if (!saved || q.get("state") !== saved.state) return { error: "the sign-in answer does not belong to this tab (state mismatch); start again" };
  if (q.has("error")) return { error: `the authorization server said ${q.get("error")}${q.get("error_description") ? `: ${q.get("error_description")}` : ""}` };
  const body = new URLSearchParams({
    grant_type: "authorization_code",
    code: q.get("code"),
    redirect_uri: saved.redirect_uri,
    client_id: saved.client_id,
    code_verifier: saved.verifier,
  });
  let response;
  try {
    response = await fetch(saved.token_endpoint, { method: "POST", body, headers: { Accept: "application/json" } });
  } catch (err) {
    return { error: `the token endpoint did not answer (${err.message})` };
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || !answer.access_token) return { error: `the token endpoint refused: ${answer.error_description || answer.error || response.status}` };
  return { token: answer.access_token, next: saved.next };
}
