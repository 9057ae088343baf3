// Admin: trainers, learners and other accounts.
import { api } from "../api.js";
import { $, clear, h, labelCells } from "../dom.js";
import * as i18n from "../i18n.js";
import { boot, busy, currentUser, notify, showError, t } from "../ui.js";

await boot({ title: "people.title", signedIn: true });

const form = $("#person-form");
const errorEl = $("#person-error");
const filter = $("#role-filter");
let people = [];

async function refresh() {
  const query = filter.value ? `?role=${encodeURIComponent(filter.value)}` : "";
  people = await api("GET", `/api/admin/users${query}`);
  render();
}

function render() {
  const body = clear($("#people-table tbody"));
  for (const u of people) {
    // No button to lock oneself out.
    const archive = u.active && u.id !== currentUser()?.id
      ? h("button", {
          type: "button",
          class: "small",
          "aria-label": t("people.deactivate_named", { name: u.display_name }),
          text: t("people.deactivate"),
          onclick: (e) => deactivate(e.currentTarget, u),
        })
      : null;
    body.append(
      h(
        "tr",
        {},
        h("td", { text: u.display_name }),
        h("td", { text: u.email }),
        h("td", { text: t(`role.${u.role}`) }),
        h("td", { text: u.active ? t("people.active") : t("people.inactive") }),
        h("td", { class: "row-actions" }, archive),
      ),
    );
  }
  labelCells($("#people-table"));
}

async function deactivate(button, user) {
  if (!window.confirm(t("people.deactivate_confirm", { name: user.display_name }))) return;
  await busy(button, null, async () => {
    await api("POST", `/api/admin/users/${user.id}/archive`);
    notify(t("people.deactivated", { name: user.display_name }));
    await refresh();
  });
}

filter.addEventListener("change", refresh);
i18n.onChange(render);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = /** @type {Record<string, string>} */ (Object.fromEntries(new FormData(form)));
  data.display_name = data.display_name.trim();
  data.email = data.email.trim();
  if (!data.password) delete data.password;
  if (!data.display_name || !data.email) {
    errorEl.textContent = t("form.required");
    return;
  }
  await busy(form.querySelector("button[type=submit]"), errorEl, async () => {
    const user = await api("POST", "/api/admin/users", { json: data });
    form.reset();
    notify(t("people.created", { name: user.display_name }));
    await refresh();
  });
});

try {
  await refresh();
} catch (err) {
  showError(errorEl, err);
}
