// fetch() for the Estrade JSON API: CSRF header on unsafe methods, JSON errors as ApiError.

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * The API's error body (Litestar's): `extra` names the offending fields when it can.
 * @typedef {{status_code?: number, detail?: string, extra?: any}} ErrorBody
 */

/** An HTTP error from the API, with the server's `{status_code, detail, extra}` body. */
export class ApiError extends Error {
  /**
   * @param {number} status 0: no answer (network)
   * @param {ErrorBody | null} body
   */
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.detail = this.body.detail || "";
    this.extra = this.body.extra;
  }
}

/** @param {string} name */
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
 * @typedef {object} ApiOptions
 * @property {unknown} [json] sent as JSON
 * @property {BodyInit} [body] sent as is, with `type`
 * @property {string} [type] the body's Content-Type
 * @property {boolean} [raw] resolve to the Response
 * @property {boolean} [allow401] a 401 is an ApiError, not a trip to the sign-in page
 */

/**
 * Call the API. `options.json` is sent as JSON, `options.body` as is (with `options.type`).
 * Resolves to the parsed JSON (or the Response when `options.raw`); rejects with ApiError.
 * A 401 sends the visitor to the sign-in page unless `options.allow401`.
 * @param {string} method
 * @param {string} path
 * @param {ApiOptions} [options]
 * @returns {Promise<any>}
 */
export async function api(method, path, options = {}) {
  /** @type {Record<string, string>} */
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
  const data = type.includes("json") ? await response.json().catch(() => /** @type {any} */ (null)) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/**
 * Keep `next` only when it is a path on this site (no open redirect).
 * @param {unknown} next
 * @param {string} [fallback]
 * @returns {string}
 */
export function safeNext(next, fallback = "/") {
  if (typeof next !== "string" || !next.startsWith("/") || next.startsWith("//")) return fallback;
  // Browsers drop tabs and newlines and read a backslash as "/": "/\t/evil" would become "//evil".
  // eslint-disable-next-line no-control-regex -- control characters are what it looks for
  if (/[\\\s\u0000-\u001f]/.test(next)) return fallback;
  return next;
}

let leaving = false;

/**
 * Leave the page for `url`; a 401 met meanwhile does not send the visitor elsewhere.
 * @param {string} url
 */
export function leaveFor(url) {
  leaving = true;
  location.assign(url);
}
