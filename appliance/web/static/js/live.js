// What the classroom and the console share: the connection banner, the chat log with an outbox
// that never drops what was typed, live error messages, times. UI only: messages go through
// protocol.js.
import { h, clear } from "./dom.js";
import { t } from "./i18n.js";

/** The translated sentence for a protocol error code (error, forbidden, rate_limited). */
export function liveError(msg) {
  if (msg.type === "rate_limited") return t("live.err.rate_limited", { seconds: msg.retry_after });
  if (msg.type === "forbidden") return t("live.err.forbidden");
  const key = `live.err.${msg.code}`;
  const text = t(key, { limit: msg.limit ?? "" });
  return text === key ? t("live.err.other", { detail: msg.detail || msg.code }) : text;
}

export function clock(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString(document.documentElement.lang || undefined, { hour: "2-digit", minute: "2-digit" });
}

export function dateTime(iso) {
  return new Date(iso).toLocaleString(document.documentElement.lang || undefined, {
    weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit",
  });
}

/** The banner that says the connection is lost and goes away by itself once it is back. */
export function connectionBanner(room, el, { onFinal } = {}) {
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
 * The chat log and its form. Messages typed while offline or refused stay in the log, marked,
 * with a retry button; they are resent by themselves when the connection comes back.
 */
export class ChatPanel {
  constructor(room, { log, form, input, questionBox = null, error, canModerate = false, onDelete, onMute }) {
    this.room = room;
    this.log = log;
    this.input = input;
    this.questionBox = questionBox;
    this.error = error;
    this.canModerate = canModerate;
    this.onDelete = onDelete;
    this.onMute = onMute;
    this.outbox = new Map(); // ref or local id -> {text, question, el, state}
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
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && input.tagName === "TEXTAREA") {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    room.on("ack", (m) => this.settle(m.ref, null));
    for (const type of ["error", "forbidden", "rate_limited"]) room.on(type, (m) => this.settle(m.ref, m));
    room.on("status", (s) => {
      if (s === "open") this.flush();
      else if (s === "reconnecting") {
        for (const item of this.outbox.values()) if (item.state === "sending") this.mark(item, "waiting");
      }
    });
  }

  queue({ text, question }) {
    const item = { text, question, ref: null, state: "waiting", el: null, id: `local${this.nextLocal++}` };
    item.el = h("li", { class: "msg pending" });
    this.outbox.set(item.id, item);
    this.log.append(item.el);
    this.send(item);
  }

  send(item) {
    try {
      item.ref = this.room.chatSend(item.text, { question: item.question });
      this.mark(item, "sending");
    } catch {
      this.mark(item, "waiting");
    }
  }

  flush() {
    for (const item of this.outbox.values()) if (item.state === "waiting") this.send(item);
  }

  settle(ref, failure) {
    if (!ref) return;
    const item = [...this.outbox.values()].find((i) => i.ref === ref);
    if (!item) return;
    if (!failure) {
      this.outbox.delete(item.id);
      item.el.remove();
    } else {
      item.failure = failure;
      this.mark(item, "failed");
    }
  }

  mark(item, state) {
    item.state = state;
    const status =
      state === "failed" ? t("chat.not_sent", { reason: liveError(item.failure) })
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

  /** Replace the log with `messages` (welcome), keeping what is still in the outbox. */
  reset(messages) {
    const pending = [...this.outbox.values()].map((i) => i.el);
    clear(this.log);
    for (const m of messages) this.add(m, false);
    this.log.append(...pending);
    this.scroll(true);
  }

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

  remove(id) {
    this.log.querySelector(`[data-id="${Number(id)}"]`)?.remove();
  }

  atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
  }

  scroll(force = true) {
    if (force) this.log.scrollTop = this.log.scrollHeight;
  }

  /** Texts still waiting or refused (they are kept across the page's life). */
  unsent() {
    return [...this.outbox.values()];
  }
}

/** Bars of a poll's results; `learners - ballots` have not answered. */
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

function isoDay(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** Links to the attendance CSV (this month so far, or the cohort's dates) and today's sheet. */
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
