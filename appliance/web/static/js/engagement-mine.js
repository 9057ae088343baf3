// A learner's own attendance and participation, in the classroom (GET .../engagement/me).
// Nothing about other learners; shown only to learners. Drawn after the documents.
import { api } from "./api.js";
import { $, clear, h } from "./dom.js";
import * as i18n from "./i18n.js";

const { t } = i18n;
/**
 * GET /api/cohorts/{id}/engagement/me (docs/engagement.md).
 * @type {{class_days: number, attendance_rate: number | null, half_days_signed: number,
 *   half_days: number, messages: number, questions: number, polls_answered: number,
 *   polls: number} | null}
 */
let summary = null;

function render() {
  const box = $("#my-engagement");
  if (!box || !summary) return;
  const body = clear($("#my-engagement-text"));
  $("#my-engagement-title").textContent = t("eng.mine.title");
  if (!summary.class_days) {
    body.textContent = t("eng.mine.none");
    return;
  }
  const rate = summary.attendance_rate === null ? "—" : `${Math.round(100 * summary.attendance_rate)} %`;
  body.textContent = t("eng.mine.text", {
    rate,
    signed: summary.half_days_signed,
    n: summary.half_days,
    messages: summary.messages + summary.questions,
    polls: summary.polls_answered,
    asked: summary.polls,
  });
}

/**
 * Add the learner's summary to the classroom (learners only; silent on any error).
 * @param {number} cohortId
 */
export async function showMySummary(cohortId) {
  if (document.body.dataset.capacity !== "learner") return;
  const anchor = $("#docs-title") && $("#docs-title").closest("section");
  if (!anchor || $("#my-engagement")) return;
  anchor.after(
    h("section", { class: "my-engagement", id: "my-engagement", "aria-labelledby": "my-engagement-title" },
      h("h2", { id: "my-engagement-title" }),
      h("p", { class: "muted", id: "my-engagement-text" })),
  );
  i18n.onChange(render);
  try {
    summary = await api("GET", `/api/cohorts/${cohortId}/engagement/me`);
  } catch {
    $("#my-engagement").remove();
    return;
  }
  render();
}
