// Admin: a cohort's recording policy (docs/replays.md): record classes or not, the notice,
// the names shown in the replays' chat, the retention and the storage quota.
import { api } from "./api.js";
import { $ } from "./dom.js";
import * as i18n from "./i18n.js";
import { busy, notify, t } from "./ui.js";

const GB = 1e9;

/** @param {number} cohortId */
export async function recordingPolicy(cohortId) {
  const url = `/api/admin/cohorts/${cohortId}/recording`;
  const form = $("#rec-policy-form");
  $("#rec-replays-link").href = `/cohorts/${cohortId}/replays`;
  /** @type {any} */
  let policy = null;

  const size = (/** @type {number} */ bytes) => `${(bytes / GB).toLocaleString(i18n.language(), { maximumFractionDigits: 2 })} GB`;

  function show() {
    if (!policy) return;
    $("#rec-enabled").checked = policy.enabled;
    $("#rec-notice-text").value = policy.notice;
    $("#rec-chat-names").value = policy.chat_names;
    $("#rec-retention").value = String(policy.retention_days);
    $("#rec-quota").value = String(Math.round((policy.quota_bytes / GB) * 10) / 10);
    $("#rec-usage").textContent = t("rec.policy_usage", {
      used: size(policy.used_bytes), quota: size(policy.quota_bytes), date: i18n.formatDate(policy.expires_on),
    });
  }

  form.addEventListener("submit", (/** @type {SubmitEvent} */ ev) => {
    ev.preventDefault();
    busy(form.querySelector("button[type=submit]"), $("#rec-policy-error"), async () => {
      policy = await api("PUT", url, {
        json: {
          enabled: $("#rec-enabled").checked,
          notice: $("#rec-notice-text").value,
          chat_names: $("#rec-chat-names").value,
          retention_days: Number($("#rec-retention").value),
          quota_bytes: Math.round(Number($("#rec-quota").value) * GB),
        },
      });
      show();
      notify(t("rec.policy_saved"));
    });
  });
  i18n.onChange(show);
  policy = await api("GET", url);
  show();
}
