// The "recording" indicator of the classroom and the console (docs/protocol.md "Recording"):
// a badge while the class is recorded, the cohort's notice whenever it records classes, a
// message to whoever joins a recorded class; in the console, the trainer's start and stop
// buttons and a note when a recording ended on an error.
import { act } from "./live.js";
import { notify, t } from "./ui.js";

/** @import { Classroom } from "./protocol.js" */

/**
 * @param {Classroom} room
 * @param {{badge: HTMLElement, notice: HTMLElement, start?: HTMLButtonElement | null,
 *   stop?: HTMLButtonElement | null, trainer?: boolean}} els
 */
export function recordingIndicator(room, { badge, notice, start = null, stop = null, trainer = false }) {
  const state = { enabled: false, recording: false, notice: "", session: false };

  function render() {
    badge.hidden = !state.recording;
    badge.textContent = t("rec.badge");
    notice.hidden = !(state.enabled && state.notice);
    notice.textContent = state.notice;
    if (start) start.hidden = !state.enabled || state.recording || !state.session;
    if (stop) stop.hidden = !state.recording;
  }

  room.on("welcome", (w) => { state.session = Boolean(w.session); render(); });
  room.on("session_started", () => { state.session = true; render(); });
  room.on("session_ended", () => { state.session = false; render(); });
  room.on("recording_state", (m) => {
    Object.assign(state, { enabled: m.enabled, recording: m.recording, notice: m.notice });
    render();
    if (m.recording && !trainer) notify(t("rec.on_join"));
  });
  room.on("recording_changed", (m) => {
    const was = state.recording;
    state.recording = m.recording;
    if (m.recording) {
      state.enabled = true;
      if (m.notice) state.notice = m.notice;
    }
    render();
    if (m.recording && !was) notify(t("rec.started"));
    else if (!m.recording && was) {
      const reason = m.reason || "stopped";
      const key = `rec.reason.${reason}`;
      if (trainer && !["stopped", "session_ended"].includes(reason)) {
        notify(t("rec.ended_error", { reason: t(key) === key ? reason : t(key) }), "error");
      } else notify(t("rec.stopped"));
    }
  });
  if (start) start.addEventListener("click", () => act(room.recordingStart()));
  if (stop) stop.addEventListener("click", () => act(room.recordingStop()));
  render();
}
