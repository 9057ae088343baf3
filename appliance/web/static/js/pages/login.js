// Staff sign-in.
import { api, ApiError, safeNext } from "../api.js";
import { $ } from "../dom.js";
import { boot, busy, showError, t } from "../ui.js";

await boot({ title: "login.title" });

const form = $("#login-form");
const errorEl = $("#login-error");
// Enabled only now: a form sent before this module listens would not go through the API.
form.querySelector("button[type=submit]").disabled = false;
$("#email").focus();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const email = $("#email").value.trim();
  const password = $("#password").value;
  if (!email || !password) {
    errorEl.textContent = t("login.missing");
    (email ? $("#password") : $("#email")).focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  await busy(button, null, async () => {
    try {
      await api("POST", "/api/auth/login", { json: { email, password }, allow401: true });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) errorEl.textContent = t("login.wrong");
      else if (err instanceof ApiError && err.status === 403) errorEl.textContent = t("login.learner");
      else showError(errorEl, err);
      $("#password").select();
      return;
    }
    const next = new URLSearchParams(location.search).get("next");
    location.assign(safeNext(next));
  });
});
