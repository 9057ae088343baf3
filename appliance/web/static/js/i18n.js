// Translations: French and English, the browser's language by default, the choice remembered.
//
// Markup names its strings with data-i18n (text), data-i18n-label (aria-label) and
// data-i18n-title (title); code calls t("key", {name}) and inserts the result as text.

export const LANGUAGES = ["fr", "en"];
const STORAGE_KEY = "estrade.lang";
let current = "fr";
/** @type {Record<string, string>} */
let strings = {};
/** @type {Array<(lang: string) => void>} */
const listeners = [];

/** The remembered choice, else the browser's first language we have, else French. */
export function preferredLanguage() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage may be disabled: fall back to the browser's language.
  }
  if (LANGUAGES.includes(saved)) return saved;
  for (const tag of navigator.languages || [navigator.language || ""]) {
    const base = String(tag).slice(0, 2).toLowerCase();
    if (LANGUAGES.includes(base)) return base;
  }
  return LANGUAGES[0];
}

export function language() {
  return current;
}

/** @param {string} lang */
export async function load(lang) {
  const response = await fetch(`/static/i18n/${lang}.json`, { credentials: "same-origin" });
  strings = await response.json();
  current = lang;
  document.documentElement.lang = lang;
  // Pages the server renders (the printable sign-in sheet) follow the language shown here.
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `estrade_lang=${lang}; Path=/; Max-Age=31536000; SameSite=Lax${secure}`;
}

/**
 * The string for `key` with `{name}` placeholders filled; the key itself if missing.
 * @param {string} key
 * @param {Record<string, string | number | boolean>} [vars]
 * @returns {string}
 */
export function t(key, vars = {}) {
  const template = strings[key];
  if (typeof template !== "string") return key;
  return template.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : ""));
}

/** @param {string} key */
export function has(key) {
  return typeof strings[key] === "string";
}

/**
 * Translate the marked elements under `root`.
 * @param {ParentNode} [root]
 */
export function apply(root = document) {
  /** @param {string} selector */
  const marked = (selector) => /** @type {NodeListOf<HTMLElement>} */ (root.querySelectorAll(selector));
  for (const el of marked("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of marked("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of marked("[data-i18n-title]")) el.setAttribute("title", t(el.dataset.i18nTitle));
}

/**
 * Call `fn` after each language change (pages re-render their dynamic parts).
 * @param {(lang: string) => void} fn
 */
export function onChange(fn) {
  listeners.push(fn);
}

/**
 * Switch language, remember it in this browser, and re-translate the page.
 * @param {string} lang
 */
export async function switchTo(lang) {
  if (!LANGUAGES.includes(lang)) return;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Not remembered in this browser; the account's preference still is (see ui.js).
  }
  await load(lang);
  apply();
  for (const fn of listeners) fn(lang);
}

/** @type {Record<string, Intl.DateTimeFormat>} */
const dateFormats = {};

/**
 * A calendar date ("2026-11-02") in the current language.
 * @param {string | null | undefined} iso
 */
export function formatDate(iso) {
  if (!iso) return "";
  const key = current;
  dateFormats[key] ||= new Intl.DateTimeFormat(key, { dateStyle: "medium", timeZone: "UTC" });
  return dateFormats[key].format(new Date(`${iso.slice(0, 10)}T00:00:00Z`));
}

/** @param {string | null | undefined} iso */
export function formatDateTime(iso) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(iso),
  );
}
