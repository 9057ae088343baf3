// Why a join link did not work; for a learner whose link needs a password, the form.
import { api, ApiError, safeNext } from "../api.js";
import { $ } from "../dom.js";
import { boot, showError, t } from "../ui.js";
import * as i18n from "../i18n.js";

await boot({ title: "link.page_title" });

const reason = document.body.dataset.reason || "unknown";
// The join route puts the link's secret in the fragment (never sent to a server).
const secret = location.hash.slice(1);
const form = $("#join-form");
const errorEl = $("#join-error");
const canAskPassword = (reason === "password_required" || reason === "wrong_password") && /^[\w-]+$/.test(secret);

function render() {
  const key = canAskPassword ? "password_required" : reason;
  $("#problem-title").textContent = t(`link.${key}.title`);
  $("#problem-text").textContent = t(
    canAskPassword || !reason.endsWith("password") ? `link.${key}.text` : "link.password_reopen",
  );
}

render();
i18n.onChange(render);

if (canAskPassword) {
  form.hidden = false;
  form.querySelector("button[type=submit]").disabled = false;
  $("#join-password").focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = $("#join-password").value;
    if (!password) {
      errorEl.textContent = t("link.password_missing");
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const result = await api("POST", `/join/${secret}`, { json: { password }, allow401: true });
      location.replace(safeNext(result.next));
    } catch (err) {
      if (err instanceof ApiError && err.detail === "wrong_password") {
        errorEl.textContent = t("link.wrong_password.text");
      } else if (err instanceof ApiError && ["revoked", "expired", "unknown"].includes(err.detail)) {
        location.replace(`/link-problem?reason=${err.detail}`);
      } else showError(errorEl, err);
      $("#join-password").select();
    } finally {
      button.disabled = false;
    }
  });
}
