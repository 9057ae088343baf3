// The learner's classroom: the trainer's video, chat, questions, polls, documents, signals,
// attendance. Protocol messages go through protocol.js; media through media.js (loaded lazily:
// the page works without it).
import { api, leaveFor } from "../api.js";
import { $, clear, h } from "../dom.js";
import { loadDocuments } from "../documents.js";
import * as i18n from "../i18n.js";
import { act, ChatPanel, clock, connectionBanner, dateTime, resultBars, showCohortName } from "../live.js";
import { Classroom } from "../protocol.js";
import { recordingIndicator } from "../recording.js";
import { QuestionList } from "../questions.js";
import { boot, errorText, notify, t } from "../ui.js";
import { showMySummary } from "../engagement-mine.js";

/** @import { LearnerMedia } from "../media.js" */
/** @import { Participant, Poll, PollResults, SessionInfo, SigningWindow, DocumentNotice } from "../protocol.js" */

await boot({ title: "classroom.title", signedIn: true });

const cohortId = Number(document.body.dataset.cohortId);
const isLearner = document.body.dataset.capacity === "learner";
const room = new Classroom(cohortId);

const state = {
  /** @type {Participant | null} */
  you: null,
  /** @type {SessionInfo | null} */
  session: null,
  ended: false,
  /** @type {Set<number>} questions this learner gave +1 */
  voted: new Set(),
  /** @type {Poll | null} */
  poll: null,
  /** @type {PollResults | null} */
  results: null,
  /** @type {number[] | null} */
  ballot: null,
  /** @type {SigningWindow | null} */
  signing: null,
  signed: false,
  joined: false,
  /** @type {string | null | undefined} undefined: not asked yet */
  nextSession: undefined,
  /** @type {DocumentNotice | null} */
  pushed: null,
  /** @type {LearnerMedia | null} */
  media: null,
  mediaNote: "",
  swapped: false,
  /** @type {Partial<Record<"audio" | "camera" | "screen", MediaStream | null>>} */
  tracks: {},
  rejoin: false,
  cohortName: "",
};

$("#replays-link").href = `/cohorts/${cohortId}/replays`;
recordingIndicator(room, { badge: $("#rec-badge"), notice: $("#rec-notice") });
connectionBanner(room, $("#conn-banner"));

const chat = new ChatPanel(room, {
  log: $("#chat-log"),
  form: $("#chat-form"),
  input: $("#chat-input"),
  questionBox: isLearner ? $("#chat-question") : null,
});
if (!isLearner) $("#chat-question").closest("label").hidden = true;

const questions = new QuestionList(room, {
  list: $("#question-list"),
  empty: $("#questions-empty"),
  button: (q) => {
    if (!isLearner || (state.you && q.author_id === state.you.user_id)) return null;
    const voted = state.voted.has(q.id);
    return h("button", {
      type: "button", class: "small", disabled: voted, "aria-pressed": voted ? "true" : "false",
      text: voted ? t("questions.voted") : t("questions.plus_one"),
      "aria-label": voted ? false : t("questions.plus_one_named", { name: q.author_name }),
      onclick: () => act(room.questionVote(q.id), () => { state.voted.add(q.id); questions.render(); }),
    });
  },
});

room.on("welcome", (w) => {
  state.you = w.you;
  state.session = w.session;
  if (w.session) state.ended = false;
  state.signing = w.signing;
  if (!w.resumed) {
    state.poll = w.live_poll;
    state.results = w.results;
    state.ballot = w.my_ballot;
    state.signed = w.signed;
    setMuted(w.muted);
  }
  $("#low-bandwidth").checked = w.you.state === "low_bandwidth";
  showCohort(w.cohort_name);
  renderAll();
  if (state.rejoin && state.session) {
    state.rejoin = false;
    join();
  }
});

room.on("chat_muted", (e) => { if (state.you && e.user_id === state.you.user_id) setMuted(true); });
room.on("chat_unmuted", (e) => { if (state.you && e.user_id === state.you.user_id) setMuted(false); });
room.on("poll_launched", (e) => {
  state.poll = e.poll;
  state.results = null;
  state.ballot = null;
  renderCards();
});
room.on("poll_closed", (e) => {
  if (!state.poll || state.poll.id === e.poll.id) state.poll = e.poll;
  renderCards();
});
room.on("poll_results", (e) => {
  if (state.poll && e.results.poll_id === state.poll.id) state.results = e.results;
  renderCards();
});
room.on("hand_raised", (e) => { if (state.you && e.user_id === state.you.user_id) setHand(true); });
room.on("hand_lowered", (e) => { if (state.you && e.user_id === state.you.user_id) setHand(false); });
room.on("session_started", (e) => {
  state.session = e.session;
  state.ended = false;
  renderAll();
});
room.on("session_ended", () => {
  state.session = null;
  state.ended = true;
  state.signing = null;
  stopMedia();
  renderAll();
});
room.on("signing_opened", (e) => {
  state.signing = e.window;
  state.signed = false;
  renderCards();
});
room.on("signing_closed", () => {
  state.signing = null;
  renderCards();
});
room.on("document_pushed", (e) => {
  state.pushed = e.document;
  renderCards();
  showDocuments();
});
room.on("closed", (e) => {
  // Opened in another tab (4409): the video moves there; taken back here, it comes back.
  if (e.code === 4409) state.rejoin = state.rejoin || state.joined;
  stopMedia();
  // 4401: this session no longer lets the learner in (link revoked or replaced, account
  // deactivated): the page that says why and what to do. The server has already dropped the
  // session, so the reason comes from the close code, not from a later request.
  // A refused handshake says nothing precise: "/" asks the server, which knows the link's state.
  const why = e.reason || "";
  if (e.code === 4401) {
    leaveFor(/expired/.test(why) ? "/link-problem?reason=expired" : /revoked|deactivated/.test(why) ? "/link-problem?reason=revoked" : "/");
  }
});

// --- rendering ---------------------------------------------------------------------------

function showCohort(name) {
  if (name !== undefined) state.cohortName = name;
  showCohortName($("#cohort-name"), state.cohortName);
}

// A trainer (or admin) looking at the learners' view: one click back to the console.
if (!isLearner) {
  $("#console-link").href = `/cohorts/${cohortId}/console`;
  $("#console-link").hidden = false;
}

function renderAll() {
  showCohort();
  renderStage();
  questions.render();
  renderCards();
  setHand(Boolean(state.you && state.you.hand_raised));
}

async function nextSession() {
  if (state.nextSession !== undefined) return state.nextSession;
  try {
    const sessions = await api("GET", `/api/cohorts/${cohortId}/sessions`);
    const now = Date.now();
    state.nextSession = sessions
      .filter((s) => s.scheduled_start && !s.ended_at && Date.parse(s.scheduled_end || s.scheduled_start) > now)
      .map((s) => s.scheduled_start)
      .sort()[0] || null;
  } catch {
    state.nextSession = null;
  }
  return state.nextSession;
}

async function renderStage() {
  const box = clear($("#stage-state"));
  const badge = $("#session-badge");
  const live = Boolean(state.session);
  badge.hidden = !live;
  badge.textContent = live ? t("classroom.live_since", { time: clock(state.session.started_at) }) : "";
  $("#video-wrap").hidden = !live || !state.joined;
  $("#join-class").hidden = !live || state.joined;
  $("#swap-video").hidden = !live || !state.joined || !(state.tracks.camera && state.tracks.screen);
  for (const b of document.querySelectorAll(".toolbar button")) /** @type {HTMLButtonElement} */ (b).disabled = !live || !isLearner;
  if (live) {
    if (!state.joined) box.append(h("p", { text: state.mediaNote || t("classroom.ready") }));
    else if (state.mediaNote) box.append(h("p", { text: state.mediaNote }));
    return;
  }
  if (state.ended) {
    box.append(h("h2", { text: t("classroom.ended") }), h("p", { text: t("classroom.ended_text") }));
  } else {
    box.append(h("h2", { text: t("classroom.waiting") }));
    const when = await nextSession();
    if (state.session) return; // the class started meanwhile
    box.append(h("p", { text: when ? t("classroom.next", { when: dateTime(when) }) : t("classroom.no_next") }));
  }
}

function renderCards() {
  const box = clear($("#live-cards"));
  if (state.signing && isLearner) {
    const half = t(`attendance.this_${state.signing.half}`);
    const card = h("section", { class: "live-card sign", "aria-label": t("attendance.title") });
    if (state.signed) card.append(h("p", { class: "summary ok", text: t("attendance.signed", { half }) }));
    else {
      card.append(
        h("p", { text: t("attendance.open", { half, time: clock(state.signing.closes_at) }) }),
        h("button", {
          type: "button", class: "primary", id: "sign-attendance", text: t("attendance.confirm"),
          onclick: () => act(room.attendanceSign(), () => { state.signed = true; renderCards(); }),
        }),
      );
    }
    box.append(card);
  }
  if (state.poll && (state.poll.status === "live" || state.poll.results_shown)) box.append(pollCard());
  if (state.pushed) {
    const d = state.pushed;
    box.append(h("section", { class: "live-card doc", "aria-label": t("docs.pushed_title") },
      h("p", { text: t("docs.pushed") }),
      h("a", { class: "button primary", href: d.download_url, download: "", id: "pushed-download", text: t("docs.download_named", { name: d.title }) }),
      h("button", { type: "button", class: "ghost small", text: t("common.close"), onclick: () => { state.pushed = null; renderCards(); } })));
  }
}

function pollCard() {
  const p = state.poll;
  const card = h("section", { class: "live-card poll", id: "poll-card", "aria-labelledby": "poll-q" },
    h("h2", { id: "poll-q", text: p.question }));
  if (p.status !== "live") {
    card.append(h("p", { class: "muted", text: t("poll.closed") }));
    if (state.results) card.append(resultBars(p, state.results));
    return card;
  }
  if (!isLearner) {
    card.append(h("p", { class: "muted", text: t("poll.live") }));
    return card;
  }
  const form = h("form", { class: "poll-form" });
  const type = p.multiple ? "checkbox" : "radio";
  const fs = h("fieldset", {}, h("legend", { class: "visually-hidden", text: p.question }));
  p.choices.forEach((c, i) => {
    fs.append(h("label", { class: "check choice" },
      h("input", { type, name: "choice", value: String(i), checked: state.ballot ? state.ballot.includes(i) : false }),
      h("span", { text: c })));
  });
  form.append(fs);
  if (state.ballot) form.append(h("p", { class: "summary ok", text: t("poll.recorded") }));
  form.append(h("button", { type: "submit", class: "primary", text: state.ballot ? t("poll.change") : t("poll.vote") }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const choices = [...form.querySelectorAll("input:checked")].map((x) => Number(/** @type {HTMLInputElement} */ (x).value));
    if (!choices.length) return notify(t("poll.pick"), "error");
    act(
      state.ballot ? room.pollChangeVote(p.id, choices) : room.pollVote(p.id, choices),
      () => { state.ballot = choices; renderCards(); },
    );
  });
  card.append(form);
  return card;
}

function setMuted(muted) {
  $("#chat-input").disabled = muted;
  $("#chat-send").disabled = muted;
  $("#chat-error").textContent = muted ? t("chat.muted") : "";
}

function setHand(up) {
  if (state.you) state.you.hand_raised = up;
  const b = $("#hand");
  b.setAttribute("aria-pressed", up ? "true" : "false");
  b.textContent = up ? t("classroom.hand_lower") : t("classroom.hand");
}

// --- documents -------------------------------------------------------------------------------

function showDocuments() {
  const empty = $("#doc-empty");
  return loadDocuments(cohortId, {
    list: $("#doc-list"),
    empty,
    onError: (err) => {
      empty.hidden = false;
      empty.textContent = errorText(err);
    },
    tools: (d, name) => [h("a", {
      class: "button small", href: d.download_url, download: "", text: t("docs.download"),
      "aria-label": t("docs.download_named", { name }),
    })],
  });
}

// --- signals ---------------------------------------------------------------------------------

$("#hand").addEventListener("click", () => act(state.you && state.you.hand_raised ? room.handLower() : room.handRaise()));
for (const b of document.querySelectorAll(".react")) {
  const kind = /** @type {"lost" | "slower" | "ok"} */ (/** @type {HTMLElement} */ (b).dataset.kind);
  b.addEventListener("click", () => act(room.reaction(kind), () => notify(t("react.sent"))));
}
$("#low-bandwidth").addEventListener("change", (e) => {
  const on = /** @type {HTMLInputElement} */ (e.target).checked;
  act(room.setLowBandwidth(on));
  if (state.media) act(state.media.setQuality(on ? "screen" : "full"));
});

// --- media -----------------------------------------------------------------------------------

async function loadMedia() {
  try {
    return await import("../media.js");
  } catch {
    return null;
  }
}

function attach(el, track) {
  if (!track) {
    el.srcObject = null;
    return;
  }
  el.srcObject = track instanceof MediaStream ? track : new MediaStream([track]);
  el.play().catch(() => {});
}

function showTracks() {
  const { camera, screen, audio } = state.tracks;
  const main = state.swapped ? camera || screen : screen || camera;
  const pip = main === screen ? camera : screen;
  attach($("#main-video"), main || null);
  attach($("#pip-video"), pip || null);
  $("#pip-video").hidden = !pip;
  attach($("#class-audio"), audio || null);
  const note = $("#video-note");
  note.hidden = Boolean(main);
  note.textContent = main ? "" : audio ? t("media.audio_only") : t("media.no_video");
  renderStage();
}

async function join() {
  state.joined = true;
  state.mediaNote = "";
  // The click unlocks audio: play the (empty) element now, inside the gesture.
  $("#class-audio").play().catch(() => {});
  renderStage();
  const mod = await loadMedia();
  if (!mod || !mod.LearnerMedia) {
    state.mediaNote = t("media.unavailable");
    renderStage();
    return;
  }
  state.media = new mod.LearnerMedia(room, {
    onTracks: (tracks) => { state.tracks = tracks || {}; showTracks(); },
    // media.js passes one object (docs/protocol.md, media_quality): the server's automatic steps
    // are said to the learner; their own choice shows on the low-bandwidth switch.
    onQuality: ({ level, automatic }) => {
      state.mediaNote = automatic ? t(`media.quality.${level}`) : "";
      renderStage();
    },
    onClosed: (reason) => {
      if (reason === "replaced" && state.media) state.media.stop(); // watching elsewhere now
      state.media = null;
      state.joined = false;
      state.mediaNote = reason === "room_full" ? t("media.room_full")
        : reason === "replaced" ? t("media.replaced") : t("media.closed");
      notify(state.mediaNote, "error");
      renderStage();
    },
  });
  try {
    await state.media.start();
    // Kept on the element for diagnostics: the connection's getStats() (and the browser tests).
    $("#classroom").estradeMedia = state.media;
    if ($("#low-bandwidth").checked) act(state.media.setQuality("screen"));
  } catch (err) {
    state.media = null;
    state.joined = false;
    const code = err && err.code;
    notify(code === "room_full" ? t("media.room_full") : t("media.failed"), "error");
    renderStage();
  }
}

function stopMedia() {
  if (state.media) state.media.stop();
  state.media = null;
  state.joined = false;
  state.tracks = {};
}

$("#join-class").addEventListener("click", join);
$("#swap-video").addEventListener("click", () => { state.swapped = !state.swapped; showTracks(); });

i18n.onChange(() => {
  renderAll();
  showDocuments();
});

// Nothing typed is lost by leaving: warn when messages are still unsent.
window.addEventListener("beforeunload", (e) => {
  if (chat.unsent().length) e.preventDefault();
});

showDocuments();
room.connect();
showMySummary(cohortId); // the learner's own attendance and participation (engagement)
