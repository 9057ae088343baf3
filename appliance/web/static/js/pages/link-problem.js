// A learner's join link: joins at once (POST, CSRF-protected), asks first when someone else is
// signed in in this browser, asks for the password when the learner has one, or says why the
// link does not work.
import { api, ApiError, safeNext } from "../api.js";
import { $ } from "../dom.js";
import { boot, showError, t } from "../ui.js";
import * as i18n from "../i18n.js";

await boot({ title: "link.page_title" });

let reason = document.body.dataset.reason || "unknown";
// The join route puts the link's secret in the fragment (never sent to a server).
const secret = location.hash.slice(1);
const validSecret = /^[\w-]+$/.test(secret);
const form = $("#join-form");
const errorEl = $("#join-error");
const passwordField = $("#join-password").closest(".field");
const button = form.querySelector("button[type=submit]");
const asksPassword = () => (reason === "password_required" || reason === "wrong_password") && validSecret;

function render() {
  const key = asksPassword() ? "password_required" : reason;
  $("#problem-title").textContent = t(`link.${key}.title`);
  $("#problem-text").textContent = t(
    asksPassword() || !reason.endsWith("password") ? `link.${key}.text` : "link.password_reopen",
  );
  button.textContent = t(reason === "switch" ? "link.switch_confirm" : "link.join");
}

async function join(body) {
  button.disabled = true;
  try {
    const result = await api("POST", `/join/${secret}`, { json: body, allow401: true });
    location.replace(safeNext(result.next));
  } catch (err) {
    if (err instanceof ApiError && (err.detail === "password_required" || err.detail === "wrong_password")) {
      const wasAsking = asksPassword();
      reason = "password_required";
      showForm(true);
      render();
      if (wasAsking && err.detail === "wrong_password") errorEl.textContent = t("link.wrong_password.text");
      $("#join-password").select();
    } else if (err instanceof ApiError && ["revoked", "expired", "unknown"].includes(err.detail)) {
      location.replace(`/link-problem?reason=${err.detail}`);
    } else showError(errorEl, err);
  } finally {
    button.disabled = false;
  }
}

function showForm(withPassword) {
  form.hidden = false;
  passwordField.hidden = !withPassword;
  $("#join-password").required = withPassword;
  button.disabled = false;
  if (withPassword) $("#join-password").focus();
}

render();
i18n.onChange(render);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!asksPassword()) {
    await join({});
    return;
  }
  const password = $("#join-password").value;
  if (!password) {
    errorEl.textContent = t("link.password_missing");
    return;
  }
  await join({ password });
});

if (validSecret && reason === "join") await join({});
else if (validSecret && reason === "switch") showForm(false);
else if (asksPassword()) showForm(true);
