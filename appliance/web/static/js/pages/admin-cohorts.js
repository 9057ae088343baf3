// Admin: the list of cohorts and the form that creates one.
import { api } from "../api.js";
import { $, clear, h, labelCells } from "../dom.js";
import * as i18n from "../i18n.js";
import { boot, busy, notify, showError, t } from "../ui.js";

await boot({ title: "cohorts.title", signedIn: true });

const form = $("#cohort-form");
const errorEl = $("#cohort-error");
const showArchived = $("#show-archived");
let cohorts = [];

async function refresh() {
  cohorts = await api("GET", `/api/admin/cohorts?archived=${showArchived.checked}`);
  render();
}

function render() {
  const body = clear($("#cohort-table tbody"));
  for (const c of cohorts) {
    body.append(
      h(
        "tr",
        {},
        h("td", {}, h("a", { href: `/admin/cohorts/${c.id}`, text: c.name })),
        h("td", { text: t("cohorts.range", { from: i18n.formatDate(c.first_day), to: i18n.formatDate(c.last_day) }) }),
        h("td", { text: c.time_zone }),
        h(
          "td",
          { class: "row-actions" },
          h("a", { class: "button small", href: `/admin/cohorts/${c.id}`, "aria-label": t("cohorts.manage_named", { name: c.name }), text: t("cohorts.manage") }),
        ),
      ),
    );
  }
  labelCells($("#cohort-table"));
  $("#cohort-empty").hidden = cohorts.length > 0;
  $("#cohort-table").hidden = cohorts.length === 0;
}

showArchived.addEventListener("change", refresh);
i18n.onChange(render);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = /** @type {Record<string, string>} */ (Object.fromEntries(new FormData(form)));
  data.name = data.name.trim();
  if (!data.name || !data.first_day || !data.last_day) {
    errorEl.textContent = t("form.required");
    return;
  }
  await busy(form.querySelector("button[type=submit]"), errorEl, async () => {
    const cohort = await api("POST", "/api/admin/cohorts", { json: data });
    form.reset();
    notify(t("cohorts.created", { name: cohort.name }));
    await refresh();
  });
});

try {
  await refresh();
} catch (err) {
  showError(errorEl, err);
}
