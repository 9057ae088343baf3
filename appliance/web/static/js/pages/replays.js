// The replays of a cohort (its learners, trainers, admins): the recorded class sessions, a
// player showing what learners saw (screen or camera as the main view, the other small, the
// sound) and, beside it, the session's chat, questions, polls and pushed documents: choosing a
// line seeks the player there. The recorder writes one file per kind with one time origin, so
// the elements are kept together on one clock (the sound's, else the main view's).
import { api } from "../api.js";
import { $, clear, h } from "../dom.js";
import * as i18n from "../i18n.js";
import { boot, busy, errorText, notify, t } from "../ui.js";

await boot({ title: "rp.title", signedIn: true });

const cohortId = Number(document.body.dataset.cohortId);
const staff = document.body.dataset.capacity !== "learner";
const base = `/api/cohorts/${cohortId}/replays`;
/** Drift between the elements beyond which the followers are moved back in step (s). */
const MAX_DRIFT = 0.25;

const main = /** @type {HTMLVideoElement} */ ($("#rp-main"));
const pip = /** @type {HTMLVideoElement} */ ($("#rp-pip"));
const audio = /** @type {HTMLAudioElement} */ ($("#rp-audio"));
const seek = /** @type {HTMLInputElement} */ ($("#rp-seek"));
const speed = /** @type {HTMLSelectElement} */ ($("#rp-speed"));
const playButton = $("#rp-play");

/**
 * @typedef {{id: number, class_session_id: number, started_at: string, ended_at: string | null, status: string,
 *   duration_s: number, bytes: Record<string, number>, files: Record<string, string>, end_reason: string | null,
 *   failure: string | null}} Replay
 * @typedef {{t: number, kind: "chat" | "question" | "poll" | "document", text: string, author: string,
 *   author_role: string, url: string | null}} TimelineItem
 */

const state = {
  /** @type {Replay[]} */
  replays: [],
  /** @type {Replay | null} */
  current: null,
  /** @type {TimelineItem[]} */
  timeline: [],
  /** @type {Record<string, number[][]>} video kind -> [[from, to], ...] seconds it was live */
  presence: {},
  /** @type {string} the kinds in #rp-main and #rp-pip */
  mainKind: "",
  pipKind: "",
  swapped: false,
  playing: false,
  /** @type {number | null} */
  ticker: null,
};

$("#rp-back").href = staff ? `/cohorts/${cohortId}/console` : `/classroom/${cohortId}`;
if (staff) $("#rp-back").textContent = t("rp.back_console");

/** "1:02:03" / "4:05" */
function clockText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** Every media element in use; the first is the clock. */
function elements() {
  /** @type {HTMLMediaElement[]} */
  const list = [];
  if (audio.src) list.push(audio);
  if (main.src) list.push(main);
  if (pip.src) list.push(pip);
  return list;
}

function master() {
  return elements()[0] || null;
}

function duration() {
  return state.current ? state.current.duration_s : 0;
}

function now() {
  const m = master();
  return m ? m.currentTime : 0;
}

/** Move every element to `time` (seconds from the start of the recording). */
function seekTo(time) {
  const to = Math.max(0, Math.min(time, duration()));
  for (const el of elements()) el.currentTime = Math.min(to, Number.isFinite(el.duration) ? el.duration : to);
  showTime();
}

async function play() {
  state.playing = true;
  playButton.textContent = t("rp.pause");
  const rate = Number(speed.value);
  const t0 = now();
  for (const el of elements()) {
    el.playbackRate = rate;
    if (Math.abs(el.currentTime - t0) > MAX_DRIFT) el.currentTime = t0;
  }
  try {
    await Promise.all(elements().map((el) => el.play()));
  } catch (err) {
    notify(errorText(err), "error");
    pause();
  }
  startTicker();
}

function pause() {
  state.playing = false;
  playButton.textContent = t("rp.play");
  for (const el of elements()) el.pause();
  stopTicker();
  showTime();
}

/** Keep the followers on the clock's time; show progress; mark the timeline's line. */
function tick() {
  const m = master();
  if (!m) return;
  for (const el of elements().slice(1)) {
    const within = Number.isFinite(el.duration) ? m.currentTime <= el.duration : true;
    if (within && Math.abs(el.currentTime - m.currentTime) > MAX_DRIFT) el.currentTime = m.currentTime;
    if (within && el.paused && !m.paused) el.play().catch(() => {});
  }
  showTime();
  if (m.ended || m.currentTime >= duration()) pause();
}

function startTicker() {
  stopTicker();
  state.ticker = window.setInterval(tick, 250);
}

function stopTicker() {
  if (state.ticker !== null) window.clearInterval(state.ticker);
  state.ticker = null;
}

/** Was `kind` live at `at`? (Without figures: whenever it has a file.) */
function live(kind, at) {
  const spans = state.presence[kind];
  if (!spans) return Boolean(kind);
  return spans.some(([from, to]) => at >= from - 0.5 && at <= to + 0.5);
}

/** As in class: where the main view's source was off, the other one is the main view; a
 * small view whose source was off is hidden. */
function layout(at) {
  const mainOn = live(state.mainKind, at);
  const pipOn = Boolean(state.pipKind) && live(state.pipKind, at);
  const flip = !mainOn && pipOn;
  $("#rp-video-wrap").classList.toggle("rp-flip", flip);
  main.hidden = !state.mainKind || (!mainOn && pipOn);
  pip.hidden = !pipOn;
}

let lastMarked = -1;

function showTime() {
  const at = now();
  seek.max = String(duration());
  if (document.activeElement !== seek) seek.value = String(at);
  $("#rp-time").textContent = `${clockText(at)} / ${clockText(duration())}`;
  layout(at);
  seek.setAttribute("aria-valuetext", clockText(at));
  // The line being watched: the last one at or before now.
  let index = -1;
  for (let i = 0; i < state.timeline.length && state.timeline[i].t <= at; i++) index = i;
  if (index !== lastMarked) {
    const items = $("#rp-timeline").children;
    if (lastMarked >= 0 && items[lastMarked]) items[lastMarked].classList.remove("now");
    if (index >= 0 && items[index]) items[index].classList.add("now");
    lastMarked = index;
  }
}

playButton.addEventListener("click", () => (state.playing ? pause() : play()));
seek.addEventListener("input", () => seekTo(Number(seek.value)));
speed.addEventListener("change", () => {
  for (const el of elements()) el.playbackRate = Number(speed.value);
});
$("#rp-swap").addEventListener("click", () => {
  state.swapped = !state.swapped;
  const at = now();
  const playing = state.playing;
  pause();
  setSources();
  seekWhenReady(at, playing);
});

/** The screen is the main view (what learners saw), the camera small; swapped on request. */
function setSources() {
  const r = state.current;
  if (!r) return;
  const screen = r.files.screen || "";
  const camera = r.files.camera || "";
  let first = screen || camera;
  let second = screen && camera ? camera : "";
  state.mainKind = screen ? "screen" : camera ? "camera" : "";
  state.pipKind = screen && camera ? "camera" : "";
  if (state.swapped && second) {
    [first, second] = [second, first];
    [state.mainKind, state.pipKind] = [state.pipKind, state.mainKind];
  }
  if (main.getAttribute("src") !== first) {
    if (first) main.src = first;
    else main.removeAttribute("src");
  }
  if (pip.getAttribute("src") !== second) {
    if (second) pip.src = second;
    else pip.removeAttribute("src");
  }
  $("#rp-swap").hidden = !(screen && camera);
  $("#rp-nothing").hidden = Boolean(first);
  if (r.files.audio) {
    if (audio.getAttribute("src") !== r.files.audio) audio.src = r.files.audio;
  } else audio.removeAttribute("src");
}

function seekWhenReady(at, resume) {
  const m = master();
  if (!m) return;
  const go = () => {
    seekTo(at);
    if (resume) play();
  };
  if (m.readyState >= 1) go();
  else m.addEventListener("loadedmetadata", go, { once: true });
}

function kindLabel(kind) {
  return t(`rp.kind.${kind}`);
}

function renderTimeline() {
  const list = clear($("#rp-timeline"));
  lastMarked = -1;
  $("#rp-timeline-empty").hidden = state.timeline.length > 0;
  for (const item of state.timeline) {
    const who = item.author ? item.author : item.kind === "chat" || item.kind === "question" ? t("rp.someone") : "";
    const label = t("rp.seek_to", { time: clockText(item.t) });
    const row = h(
      "li",
      { class: `rp-item rp-${item.kind}` },
      h(
        "button",
        {
          type: "button",
          class: "rp-seek-line",
          dataset: { t: String(item.t) },
          onclick: () => {
            seekTo(item.t);
            if (!state.playing) play();
          },
        },
        h("time", { text: clockText(item.t), "aria-label": label }),
        item.kind !== "chat" ? h("span", { class: "badge", text: kindLabel(item.kind) }) : null,
        who ? h("strong", { class: "rp-author", text: who }) : null,
        h("span", { class: "rp-text", text: item.text }),
      ),
      item.url ? h("a", { href: item.url, class: "small", text: t("rp.open_document") }) : null,
    );
    list.append(row);
  }
}

function title(r) {
  return t("rp.session_of", { when: i18n.formatDateTime(r.started_at), duration: clockText(r.duration_s) });
}

async function open(id) {
  pause();
  const detail = await api("GET", `${base}/${id}`);
  state.current = detail.replay;
  state.timeline = detail.timeline;
  state.presence = detail.presence || {};
  state.swapped = false;
  $("#rp-view").hidden = false;
  $("#rp-view-title").textContent = title(detail.replay);
  $("#rp-delete").hidden = !staff;
  setSources();
  renderTimeline();
  seekWhenReady(0, false);
  showTime();
  for (const li of $("#rp-list").children) {
    const button = li.querySelector("button");
    if (button) button.setAttribute("aria-current", button.dataset.id === String(id) ? "true" : "false");
  }
  history.replaceState(null, "", `#replay-${id}`);
  $("#rp-view-title").focus();
}

function renderList() {
  const list = clear($("#rp-list"));
  $("#rp-empty").hidden = state.replays.length > 0;
  for (const r of state.replays) {
    const ready = r.status === "ready";
    const status = ready ? "" : t(`rp.status.${r.status}`);
    list.append(
      h(
        "li",
        {},
        h("button", {
          type: "button",
          class: "rp-open",
          dataset: { id: String(r.id) },
          disabled: !ready,
          text: title(r),
          onclick: () => open(r.id).catch((err) => notify(errorText(err), "error")),
        }),
        status ? h("span", { class: "muted small", text: ` ${status}` }) : null,
        r.failure ? h("span", { class: "muted small", text: ` — ${r.failure}` }) : null,
      ),
    );
  }
}

async function load() {
  try {
    state.replays = await api("GET", `${base}/`);
  } catch (err) {
    $("#rp-error").textContent = errorText(err);
    return;
  }
  renderList();
  const wanted = Number((location.hash.match(/^#replay-(\d+)$/) || [])[1]);
  const first = state.replays.find((r) => r.id === wanted && r.status === "ready");
  if (first) await open(first.id);
}

$("#rp-delete").addEventListener("click", (ev) => {
  const r = state.current;
  if (!r || !confirm(t("rp.confirm_delete"))) return;
  busy(ev.currentTarget, $("#rp-error"), async () => {
    await api("DELETE", `${base}/${r.id}`);
    pause();
    state.current = null;
    $("#rp-view").hidden = true;
    for (const el of [main, pip, audio]) el.removeAttribute("src");
    notify(t("rp.deleted"));
    await load();
  });
});

i18n.onChange(() => {
  renderList();
  if (state.current) {
    $("#rp-view-title").textContent = title(state.current);
    renderTimeline();
    playButton.textContent = t(state.playing ? "rp.pause" : "rp.play");
  }
});

await load();
