// Admin: one cohort — details, trainers, learners and their join links, CSV import.
import { api } from "../api.js";
import { $, clear, h, labelCells } from "../dom.js";
import * as i18n from "../i18n.js";
import { boot, busy, notify, showError, t } from "../ui.js";
import { inZone, zonedIso } from "../zones.js";
import { recordingPolicy } from "../admin-recording.js";

await boot({ title: "cohort.page_title", signedIn: true });

const cohortId = Number(document.body.dataset.cohortId);
const base = `/api/admin/cohorts/${cohortId}`;
let cohort = null;
let links = [];
let candidates = [];
let lastReport = null;
let sessions = [];

async function refresh() {
  const [detail, statuses, users, classSessions] = await Promise.all([
    api("GET", base),
    api("GET", `${base}/join-links`),
    api("GET", "/api/admin/users"),
    api("GET", `${base}/sessions`),
  ]);
  sessions = classSessions;
  cohort = detail;
  links = statuses;
  const enrolled = new Set([...detail.trainers, ...detail.learners].map((m) => m.id));
  candidates = users.filter((u) => u.active && (u.role === "trainer" || u.role === "learner") && !enrolled.has(u.id));
  render();
}

function fillForm() {
  $("#edit-name").value = cohort.name;
  $("#edit-first").value = cohort.first_day;
  $("#edit-last").value = cohort.last_day;
  $("#edit-tz").value = cohort.time_zone;
}

function render() {
  $("#cohort-title").textContent = cohort.name;
  document.title = `${cohort.name} · Estrade`;
  $("#archived-badge").hidden = !cohort.archived;
  $("#archive-button").hidden = cohort.archived;
  renderTrainers();
  renderAttendance();
  renderCandidates();
  renderLearners();
  renderSessions();
  if (lastReport) renderReport(lastReport);
}

function removeButton(member) {
  return h("button", {
    type: "button",
    class: "small",
    "aria-label": t("cohort.remove_named", { name: member.display_name }),
    text: t("cohort.remove"),
    onclick: (e) => unenrol(e.currentTarget, member),
  });
}

function renderTrainers() {
  const list = clear($("#trainer-list"));
  for (const m of cohort.trainers) {
    list.append(h("li", {}, h("span", {}, h("strong", { text: m.display_name }), " ", h("span", { class: "muted", text: m.email })), removeButton(m)));
  }
  $("#trainers-empty").hidden = cohort.trainers.length > 0;
}

function renderCandidates() {
  const select = clear($("#enrol-user"));
  select.append(h("option", { value: "", text: t("cohort.enrol_choose") }));
  for (const role of ["trainer", "learner"]) {
    const group = h("optgroup", { label: t(`role.${role}s`) });
    for (const u of candidates.filter((c) => c.role === role)) {
      group.append(h("option", { value: u.id, text: `${u.display_name} <${u.email}>` }));
    }
    if (group.children.length) select.append(group);
  }
}

function linkState(status) {
  const label = t(`link.status.${status.status}`);
  if (status.status === "active" && status.expires_at) {
    return t("link.status.active_until", { date: i18n.formatDateTime(status.expires_at) });
  }
  return label;
}

function renderLearners() {
  const body = clear($("#learner-table tbody"));
  const byId = new Map(links.map((l) => [l.user_id, l]));
  for (const m of cohort.learners) {
    const status = byId.get(m.id) || { status: "none", expires_at: null };
    const actions = h("td", { class: "row-actions" });
    actions.append(
      h("button", {
        type: "button",
        class: "small",
        "aria-label": t(status.status === "none" ? "cohort.issue_named" : "cohort.reissue_named", { name: m.display_name }),
        text: t(status.status === "none" ? "cohort.issue" : "cohort.reissue"),
        onclick: (e) => issue(e.currentTarget, m),
      }),
    );
    if (status.status === "active") {
      actions.append(
        h("button", {
          type: "button",
          class: "small",
          "aria-label": t("cohort.revoke_named", { name: m.display_name }),
          text: t("cohort.revoke"),
          onclick: (e) => revoke(e.currentTarget, m),
        }),
        h("button", {
          type: "button",
          class: "small",
          "aria-label": t("cohort.expire_named", { name: m.display_name }),
          text: t("cohort.expire"),
          onclick: (e) => expireNow(e.currentTarget, m),
        }),
      );
    }
    actions.append(removeButton(m));
    body.append(
      h(
        "tr",
        { dataset: { userId: m.id } },
        h("td", { text: m.display_name }),
        h("td", { text: m.email }),
        h("td", {}, h("span", { class: `state state-${status.status}`, text: linkState(status) })),
        actions,
      ),
    );
  }
  labelCells($("#learner-table"));
  $("#learners-empty").hidden = cohort.learners.length > 0;
  $("#learner-table").hidden = cohort.learners.length === 0;
}

function sessionState(cs) {
  if (cs.ended_at) return "ended";
  if (cs.started_at) return "live";
  return "scheduled";
}

function renderSessions() {
  const zone = cohort.time_zone;
  const lang = i18n.language();
  $("#sessions-zone").textContent = t("sessions.zone", { zone });
  const body = clear($("#session-table tbody"));
  for (const cs of sessions) {
    // A class started from the console has no schedule: its real times stand in (never
    // `new Date(null)`, which is 1 January 1970).
    const start = cs.started_at || cs.scheduled_start;
    const end = cs.ended_at || cs.scheduled_end;
    const day = start ? inZone(start, zone, lang, { weekday: "long", day: "numeric", month: "long", year: "numeric" }) : "—";
    const from = start ? inZone(start, zone, lang, { timeStyle: "short" }) : "—";
    const hours = end
      ? t("sessions.range", { from, to: inZone(end, zone, lang, { timeStyle: "short" }) })
      : t("sessions.since", { from });
    const state = sessionState(cs);
    body.append(
      h("tr", {}, h("td", { text: day }), h("td", { text: hours }), h("td", {}, h("span", { class: `state state-${state}`, text: t(`sessions.${state}`) }))),
    );
  }
  labelCells($("#session-table"));
  $("#sessions-empty").hidden = sessions.length > 0;
  $("#session-table").hidden = sessions.length === 0;
}

$("#session-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const errorEl = $("#session-error");
  const { day, start, end } = /** @type {Record<string, string>} */ (Object.fromEntries(new FormData(form)));
  if (!day || !start || !end) {
    errorEl.textContent = t("form.required");
    return;
  }
  if (end <= start) {
    errorEl.textContent = t("sessions.end_before_start");
    return;
  }
  await busy(form.querySelector("button[type=submit]"), errorEl, async () => {
    const zone = cohort.time_zone;
    await api("POST", `${base}/sessions`, {
      json: { scheduled_start: zonedIso(day, start, zone), scheduled_end: zonedIso(day, end, zone) },
    });
    notify(t("sessions.scheduled_done"));
    await refresh();
  });
});

async function issue(button, member) {
  await busy(button, null, async () => {
    const hours = Number($("#link-hours").value);
    const options = Number.isInteger(hours) && hours > 0 ? { json: { hours } } : {};
    const link = await api("POST", `${base}/learners/${member.id}/join-link`, options);
    $("#issued").hidden = false;
    $("#issued-label").textContent = t("cohort.issued_for", { name: member.display_name });
    $("#issued-url").value = link.url;
    notify(t("cohort.issued", { name: member.display_name }));
    await refresh();
    $("#issued-url").focus();
    $("#issued-url").select();
  });
}

async function revoke(button, member) {
  if (!window.confirm(t("cohort.revoke_confirm", { name: member.display_name }))) return;
  await busy(button, null, async () => {
    await api("POST", `${base}/learners/${member.id}/join-link/revoke`);
    notify(t("cohort.revoked", { name: member.display_name }));
    await refresh();
  });
}

async function expireNow(button, member) {
  if (!window.confirm(t("cohort.expire_confirm", { name: member.display_name }))) return;
  await busy(button, null, async () => {
    await api("POST", `${base}/learners/${member.id}/join-link/expire`);
    notify(t("cohort.expired", { name: member.display_name }));
    await refresh();
  });
}

async function unenrol(button, member) {
  if (!window.confirm(t("cohort.remove_confirm", { name: member.display_name }))) return;
  await busy(button, null, async () => {
    await api("DELETE", `${base}/enrolments/${member.id}`);
    notify(t("cohort.removed", { name: member.display_name }));
    await refresh();
  });
}

$("#copy-link").addEventListener("click", async () => {
  const input = $("#issued-url");
  try {
    await navigator.clipboard.writeText(input.value);
    notify(t("cohort.copied"));
  } catch {
    input.select();
    notify(t("cohort.copy_manually"), "error");
  }
});

$("#edit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const data = /** @type {Record<string, string>} */ (Object.fromEntries(new FormData(form)));
  data.name = data.name.trim();
  if (!data.name || !data.first_day || !data.last_day || !data.time_zone) {
    $("#edit-error").textContent = t("form.required");
    return;
  }
  await busy(form.querySelector("button[type=submit]"), $("#edit-error"), async () => {
    await api("PATCH", base, { json: data });
    notify(t("cohort.saved"));
    await refresh();
    fillForm();
  });
});

$("#archive-button").addEventListener("click", async (event) => {
  if (!window.confirm(t("cohort.archive_confirm", { name: cohort.name }))) return;
  await busy(event.currentTarget, $("#edit-error"), async () => {
    await api("POST", `${base}/archive`);
    notify(t("cohort.archived_done", { name: cohort.name }));
    await refresh();
  });
});

$("#enrol-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const value = $("#enrol-user").value;
  if (!value) {
    $("#enrol-error").textContent = t("cohort.enrol_choose");
    return;
  }
  await busy(event.currentTarget.querySelector("button[type=submit]"), $("#enrol-error"), async () => {
    const member = await api("POST", `${base}/enrolments`, { json: { user_id: Number(value) } });
    notify(t("cohort.enrolled", { name: member.display_name }));
    await refresh();
  });
});

$("#import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("#import-file").files[0];
  const errorEl = $("#import-error");
  showError(errorEl, null);
  if (!file) {
    errorEl.textContent = t("import.choose");
    return;
  }
  await busy(event.currentTarget.querySelector("button[type=submit]"), errorEl, async () => {
    let report;
    try {
      report = await api("POST", `${base}/learners/import`, { body: await file.arrayBuffer(), type: "text/csv" });
    } catch (err) {
      // 422 with a report: some rows are wrong and nothing was imported.
      if (err.status === 422 && err.body && Array.isArray(err.body.rows)) report = err.body;
      else throw err;
    }
    lastReport = { report, fileName: file.name };
    renderReport(lastReport);
    if (report.imported) {
      $("#import-form").reset();
      await refresh();
    }
    $("#import-summary").focus();
  });
});

// The server's reasons for refusing a line (English), said in the page's language.
/** @type {Array<[RegExp, string]>} */
const IMPORT_ERRORS = [
  [/too many columns/, "import.err.columns"],
  [/name is empty/, "import.err.name_empty"],
  [/name is longer/, "import.err.name_long"],
  [/is not an email address/, "import.err.email"],
  [/appears twice/, "import.err.twice"],
  [/belongs to an? (\w+)/, "import.err.role"],
];

function importError(message) {
  for (const [pattern, key] of IMPORT_ERRORS) {
    const match = pattern.exec(message);
    if (match) return t(key, { role: match[1] ? t(`role.${match[1]}`) : "" });
  }
  return message;
}

function renderReport({ report, fileName }) {
  $("#import-result").hidden = false;
  const summary = $("#import-summary");
  summary.tabIndex = -1;
  summary.className = report.imported ? "summary ok" : "summary error";
  summary.textContent = report.imported
    ? t("import.done", { created: report.created, enrolled: report.enrolled })
    : t("import.refused", { errors: report.errors });
  $("#import-caption").textContent = t("import.caption", { file: fileName });
  const body = clear($("#import-table tbody"));
  for (const row of report.rows) {
    const statusText =
      row.status === "error" ? t("import.status.error", { error: importError(row.error || "") }) : t(`import.status.${row.status}`);
    body.append(
      h(
        "tr",
        { class: row.status === "error" ? "row-error" : "" },
        h("td", { text: row.row }),
        h("td", { text: row.display_name }),
        h("td", { text: row.email }),
        h("td", {}, h("span", { class: `state state-${row.status}`, text: statusText })),
      ),
    );
  }
  labelCells($("#import-table"));
}

$("#export-links").addEventListener("click", async (event) => {
  if (!window.confirm(t("cohort.export_confirm"))) return;
  await busy(event.currentTarget, null, async () => {
    const response = await api("POST", `${base}/join-links/export`, { raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: `cohort-${cohortId}-join-links.csv`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    notify(t("cohort.exported"));
    await refresh();
  });
});

i18n.onChange(render);

try {
  await refresh();
  fillForm();
} catch (err) {
  showError($("#edit-error"), err);
}

/** The attendance CSV over the cohort's dates and one printable sheet per class day. */
function renderAttendance() {
  const list = clear($("#attendance-links"));
  const maxTo = new Date(Date.parse(cohort.first_day) + 365 * 86400000).toISOString().slice(0, 10);
  const to = cohort.last_day < maxTo ? cohort.last_day : maxTo;
  list.append(h("li", {}, h("a", {
    id: "attendance-csv",
    href: `/api/cohorts/${cohortId}/attendance.csv?date_from=${cohort.first_day}&date_to=${to}`,
    download: "",
    text: t("attendance.csv", { from: cohort.first_day, to }),
  })));
  list.append(h("li", {}, h("a", { id: "engagement-link", href: `/cohorts/${cohortId}/engagement`, text: t("eng.open_cohort", { name: cohort.name }) })));
  const days = [...new Set(sessions.map((s) => (s.started_at || s.scheduled_start || "").slice(0, 10)).filter(Boolean))].sort();
  for (const day of days) {
    list.append(h("li", {}, h("a", {
      href: `/cohorts/${cohortId}/attendance/${day}/sheet`, target: "_blank",
      text: t("attendance.sheet_day", { day }),
    })));
  }
  $("#attendance-placeholder").textContent = days.length ? t("attendance.admin_help") : t("cohort.attendance_soon");
}

recordingPolicy(cohortId).catch((err) => showError($("#rec-policy-error"), err));
