// fetch() for the Estrade JSON API: CSRF header on unsafe methods, JSON errors as ApiError.

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** An HTTP error from the API, with the server's `{status_code, detail, extra}` body. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.detail = this.body.detail || "";
    this.extra = this.body.extra;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** The CSRF token from the `csrftoken` cookie, asking the server to set it when missing. */
export async function csrfToken() {
  let token = cookie("csrftoken");
  if (!token) {
    await fetch("/api/auth/csrf", { credentials: "same-origin" });
    token = cookie("csrftoken");
  }
  return token;
}

/**
 * Call the API. `options.json` is sent as JSON, `options.body` as is (with `options.type`).
 * Resolves to the parsed JSON (or the Response when `options.raw`); rejects with ApiError.
 * A 401 sends the visitor to the sign-in page unless `options.allow401`.
 */
export async function api(method, path, options = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  } else if (options.body !== undefined) {
    headers["Content-Type"] = options.type || "application/octet-stream";
    body = options.body;
  }
  if (!SAFE.has(method)) headers["X-CSRFToken"] = await csrfToken();
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: "same-origin" });
  } catch (err) {
    throw new ApiError(0, { detail: "network" });
  }
  if (response.status === 401 && !options.allow401) {
    const signIn = `/login?next=${encodeURIComponent(location.pathname)}`;
    if (document.body && document.body.dataset.capacity === "learner") {
      // A learner's link was revoked or expired: the classroom socket's close (4401) says which
      // and leaves for the page that explains it. A request may meet the 401 first: give the
      // socket a moment before falling back to the sign-in page (which, while the session
      // still names the link, also sends a learner to that page).
      setTimeout(() => { if (!leaving) location.assign(signIn); }, 3000);
    } else if (!leaving) {
      location.assign(signIn);
    }
    // The page is going away: settle nothing, so no handler acts on a half-loaded page.
    return new Promise(() => {});
  }
  if (options.raw && response.ok) return response;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Keep `next` only when it is a path on this site (no open redirect). */
export function safeNext(next, fallback = "/") {
  if (typeof next !== "string" || !next.startsWith("/") || next.startsWith("//")) return fallback;
  // Browsers drop tabs and newlines and read a backslash as "/": "/\t/evil" would become "//evil".
  if (/[\\\s\u0000-\u001f]/.test(next)) return fallback;
  return next;
}

let leaving = false;

/** Leave the page for `url`; a 401 met meanwhile does not send the visitor elsewhere. */
export function leaveFor(url) {
  leaving = true;
  location.assign(url);
}
