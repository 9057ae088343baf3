// A trainer's cohorts, each leading to its console.
import { api } from "../api.js";
import { $, clear, h } from "../dom.js";
import * as i18n from "../i18n.js";
import { boot, showError, t } from "../ui.js";

await boot({ title: "mycohorts.title", signedIn: true });

let cohorts = [];

function render() {
  const list = clear($("#my-cohorts"));
  for (const c of cohorts) {
    list.append(
      h(
        "li",
        {},
        h("div", {}, h("strong", { text: c.name }), h("p", { class: "muted small", text: t("cohorts.range", { from: i18n.formatDate(c.first_day), to: i18n.formatDate(c.last_day) }) })),
        h("div", { class: "actions" },
          h("a", { class: "button", href: `/cohorts/${c.id}/engagement`, "aria-label": t("eng.open_cohort", { name: c.name }), text: t("eng.open") }),
          h("a", { class: "button primary", href: `/cohorts/${c.id}/console`, "aria-label": t("mycohorts.open_named", { name: c.name }), text: t("mycohorts.open") })),
      ),
    );
  }
  $("#my-cohorts-empty").hidden = cohorts.length > 0;
}

i18n.onChange(render);
try {
  cohorts = await api("GET", "/api/cohorts");
  render();
} catch (err) {
  showError($("#my-cohorts-empty"), err);
  $("#my-cohorts-empty").hidden = false;
}
