// The trainer's console: class start/end, camera/mic/screen, chat with moderation, questions,
// polls, documents, participants, signals and attendance. Usable at 420 px beside a shared screen.
import { api } from "../api.js";
import { $, clear, h } from "../dom.js";
import { loadDocuments, uploadDocument } from "../documents.js";
import * as i18n from "../i18n.js";
import { act, attendanceLinks, ChatPanel, clock, connectionBanner, resultBars, showCohortName } from "../live.js";
import { Classroom } from "../protocol.js";
import { recordingIndicator } from "../recording.js";
import { QuestionList } from "../questions.js";
import { boot, errorText, notify, showError, t } from "../ui.js";

/** @import { TrainerMedia } from "../media.js" */
/** @import { Participant, Poll, PollResults, SessionInfo, SigningWindow } from "../protocol.js" */

await boot({ title: "console.title", signedIn: true });

const cohortId = Number(document.body.dataset.cohortId);
const room = new Classroom(cohortId);
const state = {
  /** @type {SessionInfo | null} */
  session: null,
  /** @type {Map<number, {p: Participant, connected: boolean}>} by user_id */
  people: new Map(),
  /** @type {Set<number>} */
  signed: new Set(),
  /** @type {Map<number, Poll>} */
  polls: new Map(),
  /** @type {Map<number, PollResults>} by poll_id */
  results: new Map(),
  /** @type {Record<string, number>} */
  reactions: { lost: 0, slower: 0, ok: 0 },
  /** @type {SigningWindow | null} */
  signing: null,
  /** @type {Set<number>} */
  muted: new Set(),
  /** @type {TrainerMedia | null} */
  media: null,
  mediaState: "",
  mediaOn: { camera: false, mic: false, screen: false },
  cohortName: "",
};

$("#classroom-link").href = `/classroom/${cohortId}`;
$("#replays-link").href = `/cohorts/${cohortId}/replays`;
recordingIndicator(room, { badge: $("#rec-badge"), notice: $("#rec-notice"), start: $("#rec-start"), stop: $("#rec-stop"), trainer: true });
connectionBanner(room, $("#conn-banner"));
// Class start and end need the socket: not clickable before it is open (nothing would happen).
room.on("status", (s) => {
  for (const id of ["#session-start", "#session-end"]) $(id).disabled = s !== "open";
});
attendanceLinks($("#attendance-links"), cohortId);

const chat = new ChatPanel(room, {
  log: $("#chat-log"), form: $("#chat-form"), input: $("#chat-input"),
  canModerate: true,
  onDelete: (m) => act(room.chatDelete(m.id)),
  onMute: (m) => act((state.muted.has(m.author_id) ? room.chatUnmute(m.author_id) : room.chatMute(m.author_id))),
});

const questions = new QuestionList(room, {
  list: $("#question-list"),
  empty: $("#questions-empty"),
  withTime: true,
  button: (q) => h("button", {
    type: "button", class: "small", text: t("questions.answered"),
    "aria-label": t("questions.answered_named", { name: q.author_name }),
    onclick: () => act(room.questionAnswer(q.id)),
  }),
});

room.on("welcome", (w) => {
  state.session = w.session;
  state.cohortName = w.cohort_name;
  state.signing = w.signing;
  state.people = new Map(w.participants.map((p) => [p.user_id, { p, connected: true }]));
  if (!w.resumed) {
    state.polls = new Map(w.polls.map((p) => [p.id, p]));
    if (w.results) state.results.set(w.results.poll_id, w.results);
    if (w.reactions) state.reactions = { lost: 0, slower: 0, ok: 0, ...w.reactions };
  }
  renderAll();
  if (state.session) goLive();
  maybeRestore();
});
room.on("presence", (e) => {
  state.people.set(e.participant.user_id, { p: e.participant, connected: e.connected });
  renderPeople();
  renderHands();
});
room.on("chat_muted", (e) => { state.muted.add(e.user_id); renderPeople(); });
room.on("chat_unmuted", (e) => { state.muted.delete(e.user_id); renderPeople(); });
for (const type of /** @type {const} */ (["poll_created", "poll_launched", "poll_closed"])) {
  room.on(type, (e) => { state.polls.set(e.poll.id, e.poll); renderPolls(); });
}
room.on("poll_results", (e) => { state.results.set(e.results.poll_id, e.results); renderPolls(); });
room.on("hand_raised", (e) => { setHand(e.user_id, true); });
room.on("hand_lowered", (e) => { setHand(e.user_id, false); });
room.on("reactions", (e) => { state.reactions = { lost: 0, slower: 0, ok: 0, ...e.counts }; renderReactions(); });
// Every participant's state follows the session (docs/protocol.md, session_start / session_end).
function allStates(from, to) {
  for (const e of state.people.values()) if (e.p.state === from) e.p.state = to;
  renderPeople();
}
room.on("session_started", (e) => { state.session = e.session; allStates("waiting", "in_class"); renderHead(); goLive(); saveMedia(); });
room.on("session_ended", () => { state.session = null; allStates("in_class", "waiting"); allStates("low_bandwidth", "waiting"); state.signing = null; stopMedia(); renderHead(); renderSigning(); });
room.on("signing_opened", (e) => { state.signing = e.window; renderSigning(); });
room.on("signing_closed", () => { state.signing = null; renderSigning(); });
room.on("attendance_signed", (e) => { state.signed.add(e.user_id); renderPeople(); });

function renderAll() {
  renderHead();
  questions.render();
  renderPolls();
  renderPeople();
  renderHands();
  renderReactions();
  renderSigning();
  renderMediaButtons();
}

function renderHead() {
  const live = Boolean(state.session);
  showCohortName($("#cohort-name"), state.cohortName);
  $("#session-badge").textContent = live ? t("classroom.live_since", { time: clock(state.session.started_at) }) : t("console.not_started");
  $("#session-start").hidden = live;
  $("#session-end").hidden = !live;
  renderMediaButtons();
  renderSigning();
}

function renderPolls() {
  const live = clear($("#poll-live"));
  const list = clear($("#poll-list"));
  const polls = [...state.polls.values()].sort((a, b) => b.id - a.id);
  for (const p of polls) {
    const r = state.results.get(p.id);
    if (p.status === "live") {
      const waiting = r ? Math.max(0, r.learners - r.ballots) : 0;
      live.append(h("div", { class: "live-card poll", id: "poll-live-card" },
        h("h3", { text: p.question }),
        resultBars(p, r),
        h("p", { class: "muted small", id: "poll-waiting", text: t("poll.not_answered", { n: waiting, total: r ? r.learners : 0 }) }),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "primary small", id: "poll-close-show", text: t("poll.close_show"), onclick: () => act(room.pollClose(p.id, { showResults: true })) }),
          h("button", { type: "button", class: "small", id: "poll-close", text: t("poll.close"), onclick: () => act(room.pollClose(p.id)) }))));
      continue;
    }
    const item = h("li", {}, h("span", { text: p.question }));
    const tools = h("span", { class: "actions" });
    if (p.status === "draft") {
      tools.append(h("button", {
        type: "button", class: "small primary", text: t("poll.launch"),
        "aria-label": t("poll.launch_named", { q: p.question }),
        onclick: () => act(room.pollLaunch(p.id)),
      }));
    } else {
      tools.append(h("span", { class: "state", text: p.results_shown ? t("poll.shown") : t("poll.closed") }));
      if (!p.results_shown) {
        tools.append(h("button", { type: "button", class: "small", text: t("poll.show"), onclick: () => act(room.pollShowResults(p.id)) }));
      }
    }
    item.append(tools);
    if (p.status !== "draft" && r) item.append(resultBars(p, r));
    list.append(item);
  }
}

$("#poll-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const question = $("#poll-question").value.trim();
  const choices = $("#poll-choices").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (!question || choices.length < 2) return notify(t("poll.need_choices"), "error");
  act(room.pollCreate(question, choices, { multiple: $("#poll-multiple").checked }), () => {
    $("#poll-question").value = "";
    $("#poll-choices").value = "";
  });
});

const STATE_KEYS = { waiting: "people.waiting", in_class: "people.in_class", low_bandwidth: "people.low_bandwidth" };

function renderPeople() {
  const list = clear($("#people-list"));
  const people = [...state.people.values()].sort((a, b) =>
    Number(b.connected) - Number(a.connected) || a.p.display_name.localeCompare(b.p.display_name));
  for (const { p, connected } of people) {
    const tags = [connected ? t(STATE_KEYS[p.state] || "people.in_class") : t("people.left")];
    if (p.role !== "learner") tags.push(t(`role.${p.role}`));
    if (p.hand_raised) tags.push(t("people.hand"));
    if (state.signed.has(p.user_id)) tags.push(t("people.signed"));
    if (state.muted.has(p.user_id)) tags.push(t("people.muted"));
    list.append(h("li", { class: connected ? `person ${p.state}` : "person gone", dataset: { id: p.user_id } },
      h("span", { class: "person-name", text: p.display_name }),
      h("span", { class: "muted small", text: tags.join(" · ") })));
  }
}

function setHand(userId, up) {
  const entry = state.people.get(userId);
  if (entry) entry.p.hand_raised = up;
  renderHands();
  renderPeople();
}

function renderHands() {
  const list = clear($("#hand-list"));
  const hands = [...state.people.values()].filter((e) => e.p.hand_raised && e.connected);
  $("#hands-empty").hidden = hands.length > 0;
  for (const { p } of hands) {
    list.append(h("li", {}, h("span", { text: p.display_name }),
      h("button", { type: "button", class: "small", text: t("console.lower"), "aria-label": t("console.lower_named", { name: p.display_name }), onclick: () => act(room.handLower(p.user_id)) })));
  }
}

function renderReactions() {
  const list = clear($("#react-counts"));
  const r = state.reactions;
  const learners = [...state.people.values()].filter((e) => e.connected && e.p.role === "learner").length;
  for (const kind of ["lost", "slower", "ok"]) {
    const n = r[kind] || 0;
    // "I'm lost" stands out once it is more than a stray click: 2 or more, or a fifth of the room.
    const alarm = kind === "lost" && n >= Math.max(2, Math.ceil(learners / 5));
    list.append(h("li", { class: `react-count ${kind}${alarm ? " alarm" : ""}${n ? "" : " zero"}` },
      h("span", { class: "react-n", text: String(n) }),
      h("span", { class: "react-label", text: t(`react.${kind}`) })));
  }
}

function renderSigning() {
  const w = state.signing;
  $("#signing-state").textContent = w
    ? t("attendance.window_open", { half: t(`attendance.the_${w.half}`), time: clock(w.closes_at) })
    : t("attendance.window_closed");
  $("#signing-open").hidden = Boolean(w);
  $("#signing-close").hidden = !w;
  $("#signing-open").disabled = !state.session;
}

$("#session-start").addEventListener("click", () => act(room.sessionStart()));
$("#session-end").addEventListener("click", () => {
  if (window.confirm(t("console.end_confirm"))) act(room.sessionEnd());
});
$("#signing-open").addEventListener("click", () => act(room.signingOpen($("#signing-half").value)));
$("#signing-close").addEventListener("click", () => act(room.signingClose()));
$("#signing-half").value = new Date().getHours() < 13 ? "morning" : "afternoon";

// --- documents -------------------------------------------------------------------------------

function showDocuments() {
  return loadDocuments(cohortId, {
    list: $("#doc-list"),
    onError: (err) => showError($("#doc-error"), err),
    tools: (d, name) => [h("span", { class: "actions" },
      d.published ? h("span", { class: "state state-live", text: t("docs.published") }) : null,
      h("button", {
        type: "button", class: "small", text: t("docs.push"), "aria-label": t("docs.push_named", { name }),
        onclick: async (/** @type {MouseEvent} */ e) => {
          const button = /** @type {HTMLButtonElement} */ (e.target);
          button.disabled = true;
          try {
            await api("POST", `/api/cohorts/${cohortId}/documents/${d.id}/push`);
            notify(t("docs.pushed_done", { name }));
            showDocuments();
          } catch (err) {
            notify(errorText(err), "error");
            button.disabled = false;
          }
        },
      }))],
  });
}

$("#doc-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("#doc-file").files[0];
  if (!file) return;
  const bar = $("#doc-progress");
  const button = $("#doc-upload");
  showError($("#doc-error"), null);
  bar.value = 0;
  bar.hidden = false;
  button.disabled = true;
  try {
    const doc = await uploadDocument(cohortId, file, $("#doc-title").value.trim(), (pct) => { bar.value = pct; });
    notify(t("docs.uploaded", { name: doc.title || doc.original_name }));
    $("#doc-form").reset();
    showDocuments();
  } catch (err) {
    showError($("#doc-error"), err);
  } finally {
    bar.hidden = true;
    button.disabled = false;
  }
});

// --- media -----------------------------------------------------------------------------------
// Camera, microphone and screen can be turned on before the class: a local preview (nothing is
// sent). Starting the class publishes what is on. What is on during a class is kept in this
// tab's sessionStorage, so a reloaded console turns camera and microphone back on by itself and
// offers one click for the screen (browsers only share a screen after a click).

const SAVED_KEY = `estrade.console.${cohortId}.media`;
const saved = (() => {
  try {
    return JSON.parse(sessionStorage.getItem(SAVED_KEY) || "null");
  } catch {
    return null;
  }
})();
let restoreChecked = false;

function anyOn(on = state.mediaOn) {
  return Boolean(on.camera || on.mic || on.screen);
}

function saveMedia() {
  try {
    if (state.session && anyOn()) {
      sessionStorage.setItem(SAVED_KEY, JSON.stringify({ session: state.session.class_session_id, ...state.mediaOn }));
    } else {
      sessionStorage.removeItem(SAVED_KEY);
    }
  } catch { /* storage refused: nothing to restore later */ }
}

function renderMediaButtons() {
  const live = Boolean(state.session);
  const on = state.mediaOn;
  for (const [kind, id] of [["camera", "#media-camera"], ["mic", "#media-mic"], ["screen", "#media-screen"]]) {
    const b = $(id);
    b.setAttribute("aria-pressed", on[kind] ? "true" : "false");
    b.textContent = t(`media.${kind}_${on[kind] ? "off" : "on"}`);
  }
  $("#media-preview").hidden = live || !anyOn();
  if (!live && !anyOn()) $("#media-status").textContent = t("media.start_first");
  renderNothingSent();
}

/** Whenever the class is live and nothing goes out, the trainer is told, in the console's head. */
function renderNothingSent() {
  const el = $("#nothing-sent");
  const failed = state.media && ["failed", "closed"].includes(state.mediaState);
  const silent = Boolean(state.session) && (!anyOn() || failed);
  el.hidden = !silent;
  el.textContent = silent ? t("console.nothing_sent") : "";
}

async function ensureMedia() {
  if (state.media) return state.media;
  let mod = null;
  try {
    mod = await import("../media.js");
  } catch {
    mod = null;
  }
  if (!mod || !mod.TrainerMedia) {
    $("#media-status").textContent = t("media.unavailable");
    return null;
  }
  const media = new mod.TrainerMedia(room);
  media.on("error", (err) => {
    const code = (err && (err.code || err.name)) || "";
    $("#media-status").textContent =
      code === "NotAllowedError" ? t("media.refused") : code === "NotFoundError" ? t("media.no_device") : t("media.failed_detail", { detail: (err && err.message) || code });
  });
  media.on("state", (s) => {
    state.mediaState = String(s);
    const label = t(`media.pc.${s}`); // the connection's state, in words of the page's language
    $("#media-status").textContent = t("media.state", { state: label.startsWith("media.pc.") ? String(s) : label });
    renderNothingSent();
  });
  // A source can stop by itself (the browser's own "stop sharing" button).
  media.on("sources", () => syncMedia());
  state.media = media;
  // Kept on the element for diagnostics, as the classroom does: media.pc.getStats() (tests).
  $("#console").estradeMedia = media;
  return media;
}

/** The buttons, previews and saved state follow the tracks media.js really holds. */
function syncMedia() {
  const tracks = state.media ? state.media.tracks : {};
  state.mediaOn = { camera: Boolean(tracks.camera), mic: Boolean(tracks.audio), screen: Boolean(tracks.screen) };
  saveMedia();
  renderMediaButtons();
  showSelf();
}

function showSelf() {
  const v = $("#self-view");
  const media = state.media;
  const camera = media && media.tracks.camera;
  if (!camera) v.srcObject = null;
  else if (!v.srcObject || v.srcObject.getVideoTracks()[0] !== camera) v.srcObject = new MediaStream([camera]);
  v.hidden = !camera;
  const sv = $("#screen-view");
  const screen = media && media.tracks.screen;
  if (!screen) sv.srcObject = null;
  else if (!sv.srcObject || sv.srcObject.getVideoTracks()[0] !== screen) sv.srcObject = new MediaStream([screen]);
  sv.hidden = !screen;
}

function mediaError(err) {
  const name = err && err.name;
  $("#media-status").textContent = name === "NotAllowedError" ? t("media.refused") : name === "NotFoundError" ? t("media.no_device") : t("media.failed_detail", { detail: (err && (err.code || err.message)) || "" });
}

// One media change at a time: a second click while the first renegotiation runs waits its turn
// (two concurrent start() calls would open two connections).
let mediaQueue = Promise.resolve();
function queueMedia(fn) {
  mediaQueue = mediaQueue.then(fn, fn);
  return mediaQueue;
}

function toggle(kind) {
  return queueMedia(() => applyToggle(kind));
}

async function applyToggle(kind) {
  const want = !state.mediaOn[kind];
  const media = await ensureMedia();
  if (!media) return;
  try {
    if (kind === "camera") await media.setCamera(want);
    else if (kind === "mic") await media.setMic(want);
    else await media.shareScreen(want);
    if (state.session) await media.publish();
    $("#media-status").textContent = "";
  } catch (err) {
    mediaError(err);
  }
  syncMedia();
}

/** The class is live: publish what the trainer previewed (nothing if nothing is on). */
function goLive() {
  return queueMedia(async () => {
    if (!state.media || !anyOn() || state.media.started) return;
    try {
      await state.media.publish();
    } catch (err) {
      mediaError(err);
    }
    syncMedia();
  });
}

/** Turn back on what was on before the reload; `which` is the saved {camera, mic, screen}. */
function restore(which) {
  return queueMedia(async () => {
    const media = await ensureMedia();
    if (!media) return;
    try {
      if (which.camera && !media.tracks.camera) await media.setCamera(true);
      if (which.mic && !media.tracks.audio) await media.setMic(true);
      if (which.screen && !media.tracks.screen) await media.shareScreen(true);
      if (state.session) await media.publish();
      if (which.camera || which.mic) notify(t("console.restored"));
    } catch (err) {
      mediaError(err);
      // One click for everything still off (a screen offer already shown included).
      const all = { ...which };
      if (restoreOffer) for (const k of ["camera", "mic", "screen"]) all[k] = all[k] || restoreOffer[k];
      offerRestore(all, "console.restore");
    }
    syncMedia();
  });
}

let restoreOffer = null;
function offerRestore(which, label) {
  restoreOffer = which;
  const b = $("#media-restore");
  b.dataset.label = label;
  b.textContent = t(label);
  b.onclick = () => {
    $("#restore-row").hidden = true;
    restoreOffer = null;
    restore(which);
  };
  $("#restore-row").hidden = false;
}

/** After a reload mid-class: camera and microphone come back by themselves, the screen on a click. */
function maybeRestore() {
  if (restoreChecked) return;
  restoreChecked = true;
  if (!saved || !state.session || saved.session !== state.session.class_session_id) return;
  if (saved.camera || saved.mic) restore({ camera: saved.camera, mic: saved.mic, screen: false });
  if (saved.screen) offerRestore({ camera: false, mic: false, screen: true }, "console.restore_screen");
}

function stopMedia() {
  if (state.media) state.media.stop();
  state.media = null;
  state.mediaState = "";
  state.mediaOn = { camera: false, mic: false, screen: false };
  $("#restore-row").hidden = true;
  restoreOffer = null;
  saveMedia();
  showSelf();
  renderMediaButtons();
}

$("#media-camera").addEventListener("click", () => toggle("camera"));
$("#media-mic").addEventListener("click", () => toggle("mic"));
$("#media-screen").addEventListener("click", () => toggle("screen"));

i18n.onChange(() => {
  renderAll();
  if ($("#media-restore").dataset.label) $("#media-restore").textContent = t($("#media-restore").dataset.label);
  showDocuments();
  attendanceLinks($("#attendance-links"), cohortId);
});

window.addEventListener("beforeunload", (e) => {
  if (chat.unsent().length || state.mediaOn.camera || state.mediaOn.screen) e.preventDefault();
});

showDocuments();
room.connect();
