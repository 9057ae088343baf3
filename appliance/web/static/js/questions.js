// The open questions of a class, as the classroom and the console both show them: kept from
// welcome and the chat_* / question_* events, sorted by +1s then age. Each page adds its own
// button to a question (+1 for learners, "answered" for the trainer).
import { h, clear } from "./dom.js";
import { t } from "./i18n.js";
import { clock } from "./live.js";

/** @import { Classroom, ChatMessageOut } from "./protocol.js" */

export class QuestionList {
  /**
   * @param {Classroom} room
   * @param {object} where
   * @param {HTMLElement} where.list the <ul>
   * @param {HTMLElement} where.empty shown while no question is open
   * @param {boolean} [where.withTime] show when each was asked
   * @param {(q: ChatMessageOut) => Node | null} where.button the page's action on a question
   */
  constructor(room, { list, empty, withTime = false, button }) {
    this.list = list;
    this.empty = empty;
    this.withTime = withTime;
    this.button = button;
    /** @type {Map<number, ChatMessageOut>} */
    this.open = new Map();
    room.on("welcome", (w) => {
      if (!w.resumed) this.open = new Map(w.questions.map((q) => [q.id, q]));
      this.render();
    });
    room.on("chat_message", (e) => {
      if (!e.message.question || e.message.answered) return;
      this.open.set(e.message.id, e.message);
      this.render();
    });
    room.on("chat_deleted", (e) => this.drop(e.message_id));
    room.on("question_answered", (e) => this.drop(e.message_id));
    room.on("question_voted", (e) => {
      const q = this.open.get(e.message_id);
      if (q) q.votes = e.votes;
      this.render();
    });
  }

  /** @param {number} id */
  drop(id) {
    this.open.delete(id);
    this.render();
  }

  render() {
    const list = clear(this.list);
    const open = [...this.open.values()].sort(
      (a, b) => b.votes - a.votes || a.created_at.localeCompare(b.created_at),
    );
    this.empty.hidden = open.length > 0;
    for (const q of open) {
      const when = this.withTime ? ` · ${clock(q.created_at)}` : "";
      list.append(h("li", { class: "q", dataset: { id: q.id } },
        h("p", { class: "msg-text", text: q.text }),
        h("p", { class: "msg-meta", text: `${q.author_name}${when} · ${t("questions.votes", { n: q.votes })}` }),
        this.button(q)));
    }
  }
}
