// The signed-in session: a SMART access token kept in this tab's sessionStorage (gone when
// the tab closes), its claims for display, and what its scopes allow, so pages offer only
// what the server would permit. The server decides; this only avoids offering dead ends.

const KEY = "caregraph.console.token";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

/** The JWT's payload, or null when ``jwt`` is not a readable JWT. */
export function claimsOf(jwt) {
  const parts = String(jwt || "").trim().split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const text = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const claims = JSON.parse(decodeURIComponent(escape(text)));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/** Why ``jwt`` cannot be used, or null when it looks usable (the server still checks it). */
export function problemWith(jwt, nowMs = Date.now()) {
  const claims = claimsOf(jwt);
  if (!claims) return "this is not an access token (a JWT has three dot-separated parts)";
  if (typeof claims.exp === "number" && claims.exp * 1000 <= nowMs) return "this token has expired";
  return null;
}

export function signIn(jwt) {
  sessionStorage.setItem(KEY, jwt.trim());
}

export function claims() {
  return claimsOf(token());
}

const V1 = { read: "rs", write: "cud", "*": "cruds" };

/** Permission letters (cruds) the scopes grant on ``type``, any context. */
export function permissionsFor(scope, type) {
  const granted = new Set();
  for (const s of String(scope || "").split(/\s+/)) {
    const m = s.match(/^(patient|user|system)\/([A-Z][A-Za-z]*|\*)\.([a-z*]+)$/);
    if (!m || (m[2] !== "*" && m[2] !== type)) continue;
    for (const letter of V1[m[3]] || m[3]) if ("cruds".includes(letter)) granted.add(letter);
  }
  return granted;
}

/** Whether the signed-in token allows ``letter`` (c, r, u, d, s) on ``type``. */
export function allows(type, letter) {
  return permissionsFor(claims()?.scope, type).has(letter);
}
