// The 403 / 404 page.
import { $ } from "../dom.js";
import { boot, t } from "../ui.js";
import * as i18n from "../i18n.js";

const status = document.body.dataset.status === "403" ? "403" : "404";
await boot({ title: `error.page.${status}.title` });

function render() {
  $("#error-title").textContent = t(`error.page.${status}.title`);
  $("#error-text").textContent = t(`error.page.${status}.text`);
}
render();
i18n.onChange(render);
