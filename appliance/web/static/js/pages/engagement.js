// The engagement page of a cohort (trainers of the cohort, admins): learners sorted by
// signals, each with its reasons and a strip of the last class days drawn as inline SVG;
// a learner's detail; a date range; the CSV export; the cohort's thresholds.
import { api } from "../api.js";
import { $, clear, h, labelCells } from "../dom.js";
import * as i18n from "../i18n.js";
import { boot, busy, errorText, notify, showError, t } from "../ui.js";

await boot({ title: "eng.title", signedIn: true });

const cohortId = Number(document.body.dataset.cohortId);
const SVG = "http://www.w3.org/2000/svg";
const THRESHOLDS = [
  "absent_half_days", "attendance_min_pct", "attendance_days", "silent_days", "poll_days",
  "poll_drop_pct", "network_days", "network_bad_days", "disconnections_per_day",
  "low_bandwidth_minutes", "late_minutes",
];
let view = null;
let detail = null;
let cohortName = "";

const pct = (x) => (x === null || x === undefined ? "—" : `${Math.round(100 * x)} %`);

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

const shortDates = {};

/** "25 Nov" / "25 nov." : the days a signal is based on, short enough to list. */
function shortDate(iso) {
  const lang = i18n.language();
  shortDates[lang] ||= new Intl.DateTimeFormat(lang, { day: "numeric", month: "short", timeZone: "UTC" });
  return shortDates[lang].format(new Date(`${iso}T00:00:00Z`));
}

function dayList(days) {
  return days.map(shortDate).join(", ");
}

const num = (x) => Number(x).toLocaleString(i18n.language(), { maximumFractionDigits: 1 });

/** One sentence per signal, with its figures and days. */
function signalText(s) {
  const d = { ...s.detail };
  for (const k of ["rate_pct", "before_pct"]) if (k in d) d[k] = num(d[k]);
  const days = dayList(s.days);
  switch (s.rule) {
    case "absent":
      return t("eng.sig.absent", { n: d.half_days, days });
    case "low_attendance":
      return t("eng.sig.low_attendance", { rate: d.rate_pct, threshold: d.threshold_pct, from: shortDate(d.from), to: shortDate(d.to), days });
    case "silent":
      return t("eng.sig.silent", { n: d.days, days });
    case "polls_falling":
      return t("eng.sig.polls_falling", { rate: d.rate_pct, before: d.before_pct, days });
    case "network":
      return t("eng.sig.network", { n: d.bad_days, of: d.of_days, days });
    default:
      return s.rule;
  }
}

function signalItem(s, withAdvice) {
  const li = h("li", { class: `eng-signal eng-${s.rule}`, dataset: { rule: s.rule } },
    h("strong", { text: t(`eng.rule.${s.rule}`) }), " ", h("span", { class: "small", text: signalText(s) }));
  if (withAdvice && s.advice === "low_bandwidth_mode") li.append(h("br"), h("span", { class: "small", text: t("eng.advice.low_bandwidth_mode") }));
  return li;
}

/** A strip of the last class days: a square per day (filled by the share of half-days
 * attended) and a dot under it when the learner took part. */
function strip(days, name) {
  const w = 12;
  const width = Math.max(days.length, 1) * w;
  const attended = days.reduce((n, d) => n + d[2], 0);
  const expected = days.reduce((n, d) => n + d[1], 0);
  const active = days.filter((d) => d[4] > 0).length;
  const label = t("eng.strip_label", { name, days: days.length, attended, expected, active });
  const root = svg("svg", { class: "eng-strip", width, height: 24, viewBox: `0 0 ${width} 24`, role: "img", "aria-label": label });
  days.forEach(([day, halves, signed, minutes, actions], i) => {
    const x = i * w + 1;
    const share = halves ? signed / halves : 0;
    const tip = t("eng.strip_day", { day: i18n.formatDate(day), signed, halves, minutes, actions });
    const g = svg("g", {}, svg("title", {}, document.createTextNode(tip)));
    g.append(svg("rect", { x, y: 1, width: w - 2, height: 12, rx: 2, class: "eng-att-none" }));
    if (share > 0) {
      const hgt = Math.max(2, Math.round(12 * share));
      g.append(svg("rect", { x, y: 13 - hgt, width: w - 2, height: hgt, rx: 2, class: "eng-att-full" }));
    }
    if (actions > 0) g.append(svg("circle", { cx: x + (w - 2) / 2, cy: 19.5, r: Math.min(4, 1.5 + actions / 4), class: "eng-act" }));
    root.append(g);
  });
  return root;
}

function participation(tot) {
  return t("eng.participation_value", { messages: tot.messages + tot.questions, polls: pct(tot.poll_rate), reactions: tot.reactions + tot.hands });
}

function render() {
  if (!view) return;
  $("#eng-title").textContent = cohortName ? t("eng.title_named", { name: cohortName }) : t("eng.title");
  const learners = view.learners;
  const flagged = learners.filter((l) => l.signals.length).length;
  $("#eng-count").textContent = t("eng.count", { n: learners.length, flagged });
  $("#eng-empty").hidden = learners.length > 0;
  $("#eng-table").hidden = learners.length === 0;
  const body = clear($("#eng-body"));
  for (const l of learners) {
    const sigs = h("ul", { class: "eng-signals compact" }, l.signals.map((s) => signalItem(s, false)));
    if (!l.signals.length) sigs.append(h("li", { class: "muted", text: t("eng.no_signal") }));
    body.append(h("tr", { dataset: { user: l.user_id } },
      h("td", {}, h("button", { type: "button", class: "linkish", "aria-label": t("eng.open_named", { name: l.display_name }), onclick: () => openDetail(l.user_id), text: l.display_name })),
      h("td", {}, sigs),
      h("td", {}, h("strong", { text: pct(l.totals.attendance_rate) }), h("br"), h("span", { class: "small muted", text: t("eng.half_days_value", { signed: l.totals.half_days_signed, n: l.totals.half_days }) })),
      h("td", { class: "small", text: participation(l.totals) }),
      h("td", {}, strip(l.strip, l.display_name))));
  }
  labelCells($("#eng-table"));
  const computed = view.computed_at ? i18n.formatDateTime(view.computed_at) : "—";
  $("#eng-status").textContent = t("eng.status", { days: view.class_days.length, computed });
  renderDetail();
  renderSettings();
}

function renderDetail() {
  const box = $("#eng-detail");
  box.hidden = !detail;
  if (!detail) return;
  $("#eng-detail-title").textContent = detail.display_name;
  const list = clear($("#eng-detail-signals"));
  for (const s of detail.signals) list.append(signalItem(s, true));
  if (!detail.signals.length) list.append(h("li", { class: "muted", text: t("eng.no_signal") }));
  const tot = detail.totals;
  const dl = clear($("#eng-detail-totals"));
  const fig = (key, value) => dl.append(h("div", { class: "figure" }, h("dt", { text: t(key) }), h("dd", { text: value })));
  fig("eng.attendance", pct(tot.attendance_rate));
  fig("eng.half_days", `${tot.half_days_signed} / ${tot.half_days}`);
  fig("eng.minutes", String(tot.minutes_connected));
  fig("eng.poll_rate", pct(tot.poll_rate));
  fig("eng.messages", `${tot.messages} / ${tot.questions} / ${tot.plus_ones}`);
  fig("eng.late", String(tot.late));
  const body = clear($("#eng-days-body"));
  for (const d of [...detail.days].reverse()) {
    body.append(h("tr", {},
      h("td", { text: i18n.formatDate(d.day) }),
      h("td", { text: `${d.half_days_signed} / ${d.half_days}` }),
      h("td", { text: String(d.minutes_connected || 0) }),
      h("td", { text: d.late ? t("eng.yes") : "" }),
      h("td", { text: `${d.disconnections || 0} / ${d.low_bandwidth_minutes || 0} min` }),
      h("td", { text: `${d.messages || 0} / ${d.questions || 0} / ${d.plus_ones || 0}` }),
      h("td", { text: d.polls ? `${d.polls_answered || 0} / ${d.polls}` : "—" }),
      h("td", { text: `${d.reactions || 0} / ${d.hands || 0}` })));
  }
  labelCells($("#eng-days"));
}

function renderSettings() {
  const form = $("#eng-settings");
  if (!view || form.dataset.filled) {
    for (const label of form.querySelectorAll("label")) label.textContent = t(`eng.t.${label.htmlFor.slice(6)}`);
    return;
  }
  form.dataset.filled = "1";
  for (const key of THRESHOLDS) {
    form.append(h("div", { class: "field" },
      h("label", { for: `eng-t-${key}`, text: t(`eng.t.${key}`) }),
      h("input", { type: "number", id: `eng-t-${key}`, name: key, min: 0, inputmode: "numeric", value: view.thresholds[key] })));
  }
  form.append(h("div", { class: "actions wide" }, h("button", { type: "submit", class: "primary", id: "eng-settings-save", text: t("common.save") })));
}

function range() {
  return { from: $("#eng-from").value, to: $("#eng-to").value };
}

function query() {
  const { from, to } = range();
  return `date_from=${encodeURIComponent(from)}&date_to=${encodeURIComponent(to)}`;
}

async function load() {
  showError($("#eng-error"), null);
  const { from, to } = range();
  const first = !view && !from && !to; // first visit: the server's default range (cohort time zone)
  if (!first && (!from || !to)) {
    $("#eng-error").textContent = t("eng.need_dates");
    return;
  }
  try {
    view = await api("GET", `/api/cohorts/${cohortId}/engagement${first ? "" : `?${query()}`}`);
    $("#eng-from").value = view.date_from;
    $("#eng-to").value = view.date_to;
    $("#eng-csv").href = `/api/cohorts/${cohortId}/engagement.csv?${query()}`;
    if (detail) detail = await api("GET", `/api/cohorts/${cohortId}/engagement/learners/${detail.user_id}?${query()}`);
    render();
  } catch (err) {
    showError($("#eng-error"), err);
  }
}

async function openDetail(userId) {
  try {
    detail = await api("GET", `/api/cohorts/${cohortId}/engagement/learners/${userId}?${query()}`);
    renderDetail();
    $("#eng-detail").focus();
    $("#eng-detail").scrollIntoView({ block: "start" });
  } catch (err) {
    notify(errorText(err), "error");
  }
}

$("#eng-detail-close").addEventListener("click", () => {
  const id = detail && detail.user_id;
  detail = null;
  renderDetail();
  const back = id && /** @type {HTMLElement | null} */ (document.querySelector(`#eng-body tr[data-user="${id}"] button`));
  if (back) back.focus();
});

$("#eng-range").addEventListener("submit", (ev) => {
  ev.preventDefault();
  load();
});

$("#eng-refresh").addEventListener("click", (ev) =>
  busy(ev.currentTarget, $("#eng-error"), async () => {
    await api("POST", `/api/cohorts/${cohortId}/engagement/refresh`);
    await load();
  }));

$("#eng-settings").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  const data = {};
  for (const key of THRESHOLDS) data[key] = Number(form.elements[key].value);
  busy($("#eng-settings-save"), $("#eng-settings-error"), async () => {
    await api("PUT", `/api/cohorts/${cohortId}/engagement/settings`, { json: data });
    notify(t("eng.saved"));
    await load();
  });
});

i18n.onChange(render);
$("#eng-back").href = `/cohorts/${cohortId}/console`;
const params = new URLSearchParams(location.search);
if (params.get("from") && params.get("to")) {
  $("#eng-from").value = params.get("from");
  $("#eng-to").value = params.get("to");
}
try {
  const cohorts = await api("GET", "/api/cohorts");
  const mine = cohorts.find((c) => c.id === cohortId);
  cohortName = mine ? mine.name : "";
} catch {
  cohortName = "";
}
await load();
document.documentElement.dataset.loaded = "true";
