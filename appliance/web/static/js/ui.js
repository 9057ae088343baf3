// What every page shares: start-up (language, top bar), error messages, notices.

import { api, ApiError } from "./api.js";
import { $, clear, h } from "./dom.js";
import * as i18n from "./i18n.js";

const { t } = i18n;

/**
 * The signed-in user, as GET /api/me gives it.
 * @typedef {{id: number, email: string, display_name: string,
 *   role: "admin" | "operator" | "trainer" | "learner", locale?: string | null}} Me
 */

/** @type {Record<string, Array<[string, string]>>} */
const NAV = {
  admin: [
    ["/admin", "nav.cohorts"],
    ["/admin/people", "nav.people"],
    ["/operator", "nav.operator"],
  ],
  operator: [["/operator", "nav.operator"]],
  trainer: [["/cohorts", "nav.my_cohorts"]],
  learner: [],
};

let titleKey = "";
/** @type {Me | null} */
let me = null;

/**
 * The signed-in user (`/api/me`), or null.
 * @returns {Me | null}
 */
export function currentUser() {
  return me;
}

/**
 * Start a page: language, translations, top bar. Resolves to the signed-in user (or null).
 *
 * @param {object} options
 * @param {string} options.title i18n key of the page title
 * @param {boolean} [options.signedIn] the page needs a user (401 leads to sign-in)
 */
export async function boot({ title, signedIn = false }) {
  titleKey = title;
  await i18n.load(i18n.preferredLanguage());
  i18n.apply();
  // Error pages do not know who asks: they look, so the way back (top bar) is there.
  if (signedIn || document.body.dataset.role || document.documentElement.dataset.page === "error") {
    try {
      me = await api("GET", "/api/me", { allow401: !signedIn });
    } catch (err) {
      if (signedIn) throw err;
      me = null;
    }
  }
  renderTopbar();
  setTitle();
  i18n.onChange(() => {
    renderTopbar();
    setTitle();
  });
  document.documentElement.classList.add("ready");
  return me;
}

function setTitle() {
  document.title = titleKey ? `${t(titleKey)} · Estrade` : "Estrade";
}

function renderTopbar() {
  const nav = $("#topnav");
  clear(nav);
  const here = location.pathname;
  for (const [href, key] of (me && NAV[me.role]) || []) {
    const isCurrent =
      here === href ||
      (href === "/admin" && here.startsWith("/admin/cohorts/")) ||
      (href === "/cohorts" && here.startsWith("/cohorts/"));
    nav.append(h("a", { href, "aria-current": isCurrent ? "page" : false, text: t(key) }));
  }
  const tools = clear($("#topbar-tools"));
  const other = i18n.language() === "fr" ? "en" : "fr";
  tools.append(
    h("button", {
      type: "button",
      class: "ghost lang-switch",
      id: "lang-switch",
      lang: other,
      "aria-label": t("common.switch_language"),
      text: other === "en" ? "English" : "Français",
      onclick: () => switchLanguage(other),
    }),
  );
  if (me) {
    tools.append(h("span", { class: "who", text: me.display_name }));
    tools.append(
      h("button", { type: "button", class: "ghost", id: "sign-out", text: t("common.sign_out"), onclick: signOut }),
    );
  }
}

/** @param {string} lang */
async function switchLanguage(lang) {
  await i18n.switchTo(lang);
  if (me) {
    // The account remembers the choice too, for other devices and for what the server writes.
    try {
      me = await api("PATCH", "/api/me", { json: { locale: lang } });
    } catch {
      // Remembered in this browser already; the account keeps its previous language.
    }
  }
  $("#lang-switch")?.focus();
}

async function signOut() {
  try {
    await api("POST", "/api/auth/logout", { allow401: true });
  } finally {
    location.assign("/login");
  }
}

const FIELD_KEYS = new Set(["name", "email", "display_name", "first_day", "last_day", "time_zone", "password", "role", "body"]);

/**
 * A translated, human sentence for an error (ApiError or anything thrown).
 * @param {unknown} err
 * @returns {string}
 */
export function errorText(err) {
  if (!(err instanceof ApiError)) return t("error.unexpected");
  if (err.status === 0) return t("error.network");
  const field = Array.isArray(err.extra) && err.extra[0] && err.extra[0].key;
  const detail = err.detail || "";
  switch (err.status) {
    case 400:
    case 422: {
      if (field && FIELD_KEYS.has(field)) {
        return t("error.field", { field: t(`field.${field}`), detail: (err.extra[0].message || detail) });
      }
      return t("error.invalid", { detail });
    }
    case 401:
      return t("error.401");
    case 403:
      return t("error.403");
    case 404:
      return t("error.404");
    case 409:
      return t("error.409", { detail: (err.extra && err.extra[0] && err.extra[0].message) || detail });
    case 413:
      return t("error.413");
    case 415:
      return t("error.415");
    case 429:
      return t("error.429");
    case 500:
      return t("error.500");
    case 502:
    case 503:
    case 504:
      // Only a temporary failure is worth trying again later.
      return t("error.temporary", { status: err.status });
    default:
      return t("error.server", { status: err.status });
  }
}

/**
 * Show `err` (or clear with null) in the element, which should have role="alert".
 * @param {HTMLElement} el
 * @param {unknown} err
 */
export function showError(el, err) {
  el.textContent = err ? errorText(err) : "";
}

/**
 * A short message that announces itself and goes away.
 * @param {string} message
 * @param {"ok" | "error"} [kind]
 */
export function notify(message, kind = "ok") {
  const box = $("#notices");
  const note = h("p", { class: `notice ${kind}`, text: message });
  box.append(note);
  setTimeout(() => note.remove(), 6000);
}

/**
 * Run `fn` with `button` disabled (no double submit); errors go to `errorEl`.
 * @template T
 * @param {HTMLButtonElement} button
 * @param {HTMLElement | null} errorEl
 * @param {() => Promise<T>} fn
 * @returns {Promise<T | undefined>}
 */
export async function busy(button, errorEl, fn) {
  if (errorEl) showError(errorEl, null);
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await fn();
  } catch (err) {
    if (errorEl) showError(errorEl, err);
    else notify(errorText(err), "error");
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

export { t };
