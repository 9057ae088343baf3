// What the classroom and the console share: the connection banner, the chat log with an outbox
// that never drops what was typed, what a refused action says, times. UI only: messages go
// through protocol.js (questions.js and documents.js hold the other shared panels).
import { h, clear } from "./dom.js";
import { t } from "./i18n.js";
import { RequestError } from "./protocol.js";
import { notify } from "./ui.js";

/** @import { Classroom, Refusal, ChatMessageOut, Poll, PollResults } from "./protocol.js" */

/**
 * The translated sentence for a refusal (error, forbidden, rate_limited).
 * @param {Refusal} msg
 */
export function liveError(msg) {
  if (msg.type === "rate_limited") return t("live.err.rate_limited", { seconds: msg.retry_after });
  if (msg.type === "forbidden") return t("live.err.forbidden");
  const key = `live.err.${msg.code}`;
  const text = t(key, { limit: msg.limit ?? "" });
  return text === key ? t("live.err.other", { detail: msg.detail || msg.code }) : text;
}

/**
 * What to tell about a request that failed (protocol.js request()), or null: a lost connection
 * or a timeout says nothing here (the connection banner does).
 * @param {unknown} err
 * @returns {string | null}
 */
export function requestErrorText(err) {
  if (!(err instanceof RequestError)) return t("error.unexpected");
  if (err.reply) return liveError(err.reply);
  return err.code === "not_connected" ? t("live.offline") : null;
}

/**
 * A button's or form's request: `then` runs once the server accepted it (its ack); a refusal,
 * or not being connected, is said in a notice.
 * @template T
 * @param {Promise<T>} request
 * @param {(answer: T) => void} [then]
 * @returns {Promise<boolean>} whether it was accepted
 */
export async function act(request, then) {
  try {
    const answer = await request;
    if (then) then(answer);
    return true;
  } catch (err) {
    const text = requestErrorText(err);
    if (text) notify(text, "error");
    return false;
  }
}

/** @param {string | null | undefined} iso */
export function clock(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString(document.documentElement.lang || undefined, { hour: "2-digit", minute: "2-digit" });
}

/**
 * The cohort's name in the page's head ("Cohort: …"), hidden while unknown.
 * @param {HTMLElement} el
 * @param {string} name
 */
export function showCohortName(el, name) {
  el.textContent = name ? t("console.cohort", { name }) : "";
  el.hidden = !name;
}

/** @param {string} iso */
export function dateTime(iso) {
  return new Date(iso).toLocaleString(document.documentElement.lang || undefined, {
    weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit",
  });
}

/**
 * The banner that says the connection is lost and goes away by itself once it is back.
 * @param {Classroom} room
 * @param {HTMLElement} el
 * @param {{onFinal?: (e: {code: number, reason: string}) => void}} [options]
 */
export function connectionBanner(room, el, { onFinal = undefined } = {}) {
  room.on("status", (s) => {
    if (s === "reconnecting") {
      el.textContent = t("live.reconnecting");
      el.className = "conn-banner warn";
      el.hidden = false;
    } else if (s === "open") {
      el.hidden = true;
    }
  });
  room.on("closed", (e) => {
    el.className = "conn-banner error";
    el.hidden = false;
    clear(el);
    if (e.code === 4409) {
      // Opened in another tab (docs/protocol.md "One session, one socket"): taking it back here
      // connects again, which closes the other tab's socket the same way.
      el.className = "conn-banner warn";
      el.append(
        h("span", { id: "replaced-note", text: t("live.replaced") }),
        " ",
        h("button", {
          type: "button", class: "small primary", id: "take-back", text: t("live.take_back"),
          onclick: () => room.connect(),
        }),
      );
    } else {
      el.append(
        h("span", { text: e.code === 4404 ? t("live.closed_404") : t("live.closed") }),
        " ",
        h("button", { type: "button", class: "small", text: t("live.reload"), onclick: () => location.reload() }),
      );
    }
    if (onFinal) onFinal(e);
  });
}

/**
 * A message typed here, until the server accepts it.
 * @typedef {object} Outgoing
 * @property {string} id local id
 * @property {string} text
 * @property {boolean} question
 * @property {"waiting" | "sending" | "failed"} state
 * @property {HTMLElement} el its place in the log
 * @property {number} attempt which send is the current one (an older one's answer is ignored)
 * @property {RequestError | null} failure why it was refused
 */

/**
 * The chat log and its form, kept from welcome, chat_message and chat_deleted. Messages typed
 * while offline or refused stay in the log, marked, with a retry button; they are resent by
 * themselves when the connection comes back.
 */
export class ChatPanel {
  /**
   * @param {Classroom} room
   * @param {object} where
   * @param {HTMLElement} where.log
   * @param {HTMLFormElement} where.form
   * @param {HTMLInputElement | HTMLTextAreaElement} where.input
   * @param {HTMLInputElement | null} [where.questionBox] "ask as a question"
   * @param {boolean} [where.canModerate] delete and mute buttons on each message
   * @param {(m: ChatMessageOut) => void} [where.onDelete]
   * @param {(m: ChatMessageOut) => void} [where.onMute]
   */
  constructor(room, { log, form, input, questionBox = null, canModerate = false, onDelete = undefined, onMute = undefined }) {
    this.room = room;
    this.log = log;
    this.input = input;
    this.questionBox = questionBox;
    this.canModerate = canModerate;
    this.onDelete = onDelete;
    this.onMute = onMute;
    /** @type {Map<string, Outgoing>} */
    this.outbox = new Map();
    this.nextLocal = 1;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      const question = questionBox ? questionBox.checked : false;
      input.value = "";
      if (questionBox) questionBox.checked = false;
      this.queue({ text, question });
    });
    input.addEventListener("keydown", (/** @type {KeyboardEvent} */ e) => {
      if (e.key === "Enter" && !e.shiftKey && input.tagName === "TEXTAREA") {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    room.on("welcome", (w) => { if (!w.resumed) this.reset(w.chat); });
    room.on("chat_message", (e) => this.add(e.message));
    room.on("chat_deleted", (e) => this.remove(e.message_id));
    room.on("status", (s) => {
      if (s === "open") this.flush();
      else if (s === "reconnecting") {
        for (const item of this.outbox.values()) if (item.state === "sending") this.mark(item, "waiting");
      }
    });
  }

  /** @param {{text: string, question: boolean}} message */
  queue({ text, question }) {
    /** @type {Outgoing} */
    const item = {
      id: `local${this.nextLocal++}`, text, question, state: "waiting", el: h("li", { class: "msg pending" }),
      attempt: 0, failure: null,
    };
    this.outbox.set(item.id, item);
    this.log.append(item.el);
    this.send(item);
  }

  /** @param {Outgoing} item */
  send(item) {
    const attempt = ++item.attempt;
    this.mark(item, "sending");
    this.room.chatSend(item.text, { question: item.question }).then(
      () => {
        if (item.attempt !== attempt) return;
        this.outbox.delete(item.id);
        item.el.remove();
      },
      (err) => {
        if (item.attempt !== attempt || !this.outbox.has(item.id)) return;
        if (err instanceof RequestError && err.reply) {
          item.failure = err;
          this.mark(item, "failed");
        } else if (item.state === "sending") {
          this.mark(item, "waiting"); // not sent, or the answer was lost: sent again once back
        }
      },
    );
  }

  flush() {
    for (const item of this.outbox.values()) if (item.state === "waiting") this.send(item);
  }

  /**
   * @param {Outgoing} item
   * @param {Outgoing["state"]} state
   */
  mark(item, state) {
    item.state = state;
    const status =
      state === "failed" ? t("chat.not_sent", { reason: requestErrorText(item.failure) })
        : state === "waiting" ? t("chat.waiting") : t("chat.sending");
    clear(item.el);
    item.el.className = `msg pending ${state}`;
    item.el.append(
      h("p", { class: "msg-text", text: item.text }),
      h("p", { class: "msg-meta", text: status }),
    );
    if (state === "failed") {
      item.el.append(
        h("div", { class: "msg-tools" },
          h("button", { type: "button", class: "small", text: t("chat.retry"), onclick: () => this.send(item) }),
          h("button", {
            type: "button", class: "small ghost", text: t("chat.discard"),
            onclick: () => { this.outbox.delete(item.id); item.el.remove(); },
          })),
      );
    }
    this.scroll();
  }

  /**
   * Replace the log with `messages` (welcome), keeping what is still in the outbox.
   * @param {ChatMessageOut[]} messages
   */
  reset(messages) {
    const pending = [...this.outbox.values()].map((i) => i.el);
    clear(this.log);
    for (const m of messages) this.add(m, false);
    this.log.append(...pending);
    this.scroll(true);
  }

  /** @param {ChatMessageOut} m @param {boolean} [scroll] */
  add(m, scroll = true) {
    const stick = this.atBottom();
    const meta = `${m.author_name} · ${clock(m.created_at)}${m.question ? ` · ${t("chat.question_tag")}` : ""}`;
    const li = h("li", { class: m.question ? "msg question" : "msg", dataset: { id: m.id, author: m.author_id } },
      h("p", { class: "msg-meta", text: meta }),
      h("p", { class: "msg-text", text: m.text }));
    if (this.canModerate) {
      li.append(h("div", { class: "msg-tools" },
        h("button", {
          type: "button", class: "small ghost", text: t("chat.delete"),
          "aria-label": t("chat.delete_named", { name: m.author_name }),
          onclick: () => this.onDelete(m),
        }),
        h("button", {
          type: "button", class: "small ghost", text: t("chat.mute"),
          "aria-label": t("chat.mute_named", { name: m.author_name }),
          onclick: () => this.onMute(m),
        })));
    }
    const firstPending = this.log.querySelector(".pending");
    this.log.insertBefore(li, firstPending);
    if (scroll) this.scroll(stick);
  }

  /** @param {number} id */
  remove(id) {
    this.log.querySelector(`[data-id="${Number(id)}"]`)?.remove();
  }

  atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
  }

  /** @param {boolean} [force] */
  scroll(force = true) {
    if (force) this.log.scrollTop = this.log.scrollHeight;
  }

  /** Texts still waiting or refused (they are kept across the page's life). */
  unsent() {
    return [...this.outbox.values()];
  }
}

/**
 * Bars of a poll's results; `learners - ballots` have not answered.
 * @param {Poll} poll
 * @param {PollResults | null | undefined} results
 */
export function resultBars(poll, results) {
  const total = Math.max(1, results ? results.ballots : 0);
  const list = h("ul", { class: "bars" });
  poll.choices.forEach((choice, i) => {
    const n = results ? results.counts[i] || 0 : 0;
    const pct = Math.round((100 * n) / total);
    const bar = h("span", { class: "bar-fill" });
    bar.style.width = `${pct}%`;
    list.append(h("li", {},
      h("span", { class: "bar-label", text: choice }),
      h("span", { class: "bar-track", "aria-hidden": "true" }, bar),
      h("span", { class: "bar-count", text: t("poll.count", { n, pct }) })));
  });
  return list;
}

/** @param {Date} d */
function isoDay(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/**
 * Links to the attendance CSV (this month so far, or the cohort's dates) and today's sheet.
 * @param {HTMLElement} list
 * @param {number} cohortId
 * @param {{from?: string | null, to?: string | null}} [range] ISO days
 */
export function attendanceLinks(list, cohortId, { from = null, to = null } = {}) {
  const today = new Date();
  const day = isoDay(today);
  const start = from || isoDay(new Date(today.getFullYear(), today.getMonth(), 1));
  const end = to || day;
  clear(list);
  list.append(
    h("li", {}, h("a", {
      id: "attendance-csv", href: `/api/cohorts/${cohortId}/attendance.csv?date_from=${start}&date_to=${end}`,
      download: "", text: t("attendance.csv", { from: start, to: end }),
    })),
    h("li", {}, h("a", {
      // "today" in the cohort's time zone, which the server knows (the browser may be elsewhere).
      id: "attendance-sheet", href: `/cohorts/${cohortId}/attendance/today/sheet`, target: "_blank",
      text: t("attendance.sheet_today"),
    })),
  );
}
