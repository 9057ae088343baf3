// The classroom socket client (docs/protocol.md, version 1). Framework-free ES module.
// UI code never builds messages by hand: it calls the helpers (each returns request()'s promise)
// and listens with on() (a Classroom is an EventTarget: events.js).
//
//   import { Classroom } from "/static/js/protocol.js";
//   const room = new Classroom(cohortId);
//   room.on("chat_message", (ev) => show(ev.message));
//   room.on("status", (s) => banner(s));   // "connecting" | "open" | "reconnecting" | "closed"
//   room.on("closed", ({ code }) => ...);   // final: 4401/4404 access, 4409 open in another tab
//   room.connect();
//   await room.chatSend("Bonjour");         // resolves on its ack, rejects with a RequestError

import { Events } from "./events.js";

// ---- messages (docs/protocol.md; appliance/live/protocol.py is the server's side) ------------
// Dates are ISO 8601 strings.
/**
 * @typedef {{user_id: number, display_name: string, role: string,
 *   state: "waiting" | "in_class" | "low_bandwidth", hand_raised: boolean}} Participant
 * @typedef {{class_session_id: number, started_at: string}} SessionInfo
 * @typedef {{id: number, author_id: number, author_name: string, text: string,
 *   question: boolean, created_at: string, votes: number, answered: boolean}} ChatMessageOut
 * @typedef {{id: number, question: string, choices: string[], multiple: boolean,
 *   anonymous: boolean, status: "draft" | "live" | "closed", results_shown: boolean,
 *   class_session_id?: number | null}} Poll
 * @typedef {{poll_id: number, counts: number[], ballots: number, learners: number,
 *   voters?: string[][] | null}} PollResults
 * @typedef {{id: number, half: "morning" | "afternoon", day: string, opened_at: string,
 *   closes_at: string}} SigningWindow
 * @typedef {{id: number, title: string, original_name: string, media_type: string,
 *   size: number, download_url: string, preview_url: string | null}} DocumentNotice
 * @typedef {{audio: boolean, camera: boolean, screen: boolean}} LiveTracks
 * @typedef {"audio" | "camera" | "screen"} Slot
 *
 * @typedef {{type: "welcome", protocol: number, epoch: string, seq: number, resumed: boolean,
 *   you: Participant, cohort_id: number, staff: boolean, session: SessionInfo | null,
 *   participants: Participant[], chat: ChatMessageOut[], questions: ChatMessageOut[],
 *   polls: Poll[], live_poll: Poll | null, results: PollResults | null,
 *   my_ballot: number[] | null, reactions: Record<string, number> | null,
 *   signing: SigningWindow | null, signed: boolean, muted: boolean, cohort_name: string,
 *   heartbeat_s: number | null}} Welcome
 * @typedef {{type: "ack", ref: string}} Ack
 * @typedef {{type: "error", code: string, detail: string, ref?: string | null,
 *   limit?: number | null}} ErrorReply
 * @typedef {{type: "forbidden", message_type: string, detail: string,
 *   ref?: string | null}} Forbidden
 * @typedef {{type: "rate_limited", message_type: string, retry_after: number,
 *   ref?: string | null}} RateLimited
 * @typedef {ErrorReply | Forbidden | RateLimited} Refusal the three ways a message is refused
 *
 * The server's messages by type: what on(type, fn) hands to fn.
 * @typedef {{
 *   welcome: Welcome,
 *   reload: {type: "reload", reason: string},
 *   error: ErrorReply,
 *   forbidden: Forbidden,
 *   rate_limited: RateLimited,
 *   ack: Ack,
 *   pong: {type: "pong", ref?: string | null},
 *   heartbeat: {type: "heartbeat", interval_s: number},
 *   chat_message: {type: "chat_message", seq: number, message: ChatMessageOut},
 *   chat_deleted: {type: "chat_deleted", seq: number, message_id: number},
 *   chat_muted: {type: "chat_muted", seq: number, user_id: number},
 *   chat_unmuted: {type: "chat_unmuted", seq: number, user_id: number},
 *   question_voted: {type: "question_voted", seq: number, message_id: number, votes: number},
 *   question_answered: {type: "question_answered", seq: number, message_id: number},
 *   poll_created: {type: "poll_created", seq: number, poll: Poll},
 *   poll_launched: {type: "poll_launched", seq: number, poll: Poll},
 *   poll_results: {type: "poll_results", seq: number, results: PollResults},
 *   poll_closed: {type: "poll_closed", seq: number, poll: Poll},
 *   hand_raised: {type: "hand_raised", seq: number, user_id: number, display_name: string},
 *   hand_lowered: {type: "hand_lowered", seq: number, user_id: number, by: number},
 *   reactions: {type: "reactions", seq: number, counts: Record<string, number>, window_s: number},
 *   presence: {type: "presence", seq: number, participant: Participant, connected: boolean},
 *   session_started: {type: "session_started", seq: number, session: SessionInfo},
 *   session_ended: {type: "session_ended", seq: number, class_session_id: number, ended_at: string},
 *   signing_opened: {type: "signing_opened", seq: number, window: SigningWindow},
 *   signing_closed: {type: "signing_closed", seq: number, window_id: number},
 *   attendance_signed: {type: "attendance_signed", seq: number, user_id: number, signed_at: string},
 *   document_pushed: {type: "document_pushed", seq: number, document: DocumentNotice},
 *   media_config: {type: "media_config", ice_servers: RTCIceServer[], tracks: LiveTracks},
 *   media_offer: {type: "media_offer", sdp: string, slots: Record<string, Slot>},
 *   media_answer: {type: "media_answer", sdp: string},
 *   media_tracks: {type: "media_tracks", seq: number, tracks: LiveTracks},
 *   media_quality: {type: "media_quality", level: "full" | "camera_half" | "camera_quarter" | "screen" | "audio", automatic: boolean,
 *     reason: string},
 *   media_closed: {type: "media_closed", reason: string},
 *   recording_state: {type: "recording_state", enabled: boolean, notice: string, recording: boolean, started_at: string | null},
 *   recording_changed: {type: "recording_changed", seq: number, recording: boolean, notice: string, started_at: string | null,
 *     reason: string | null, recording_id: number | null},
 * }} ServerMessages
 *
 * What on() also hands out, beside the server's messages: the connection's changes.
 * @typedef {"connecting" | "open" | "reconnecting" | "closed"} Status
 * @typedef {ServerMessages & {status: Status, closed: {code: number, reason: string}}} RoomEvents
 */

export const PROTOCOL_VERSION = 1;

// Close codes after which reconnecting cannot help (4409: the class was opened in another tab;
// coming back is the user's choice, or two tabs would take it from each other forever).
const FINAL_CLOSE = new Set([1008, 1009, 4401, 4403, 4404, 4409]);
export const REPLACED = 4409;

const REFUSALS = new Set(["error", "forbidden", "rate_limited"]);

/**
 * A request that did not succeed. `code`: the server's error code, "forbidden" or
 * "rate_limited" (then `reply` is the server's message), or a local one: "not_connected" (not
 * sent), "connection_lost" (the socket closed before the answer: direct replies are not
 * resent), "timeout".
 */
export class RequestError extends Error {
  /**
   * @param {string} code
   * @param {string} [detail]
   * @param {Refusal | null} [reply]
   */
  constructor(code, detail, reply = null) {
    super(detail || code);
    this.code = code;
    this.detail = detail || code;
    this.reply = reply;
  }
}

/**
 * @typedef {object} Pending
 * @property {(msg: any) => void} resolve
 * @property {(err: RequestError) => void} reject
 * @property {keyof ServerMessages | null} reply the direct reply to keep for resolve()
 * @property {any} got that reply, once seen
 */

/**
 * One cohort's classroom socket. Listen with on(type, fn) (events.js: an EventTarget whose
 * events carry the message): a server message type, "status" or "closed".
 * @extends {Events<RoomEvents>}
 */
export class Classroom extends Events {
  /**
   * @param {number} cohortId
   * @param {{base?: string, maxDelayMs?: number}} [options]
   */
  constructor(cohortId, { base = location.origin.replace(/^http/, "ws"), maxDelayMs = 15000 } = {}) {
    super();
    this.url = `${base}/ws/cohorts/${cohortId}`;
    this.maxDelayMs = maxDelayMs;
    /** @type {string | null} */
    this.epoch = null;
    this.lastSeq = 0;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.attempt = 0;
    this.closedByUser = false;
    this.nextRef = 1;
    /** @type {Map<string, Pending>} requests waiting for their answer, by ref */
    this.pending = new Map();
    /** @type {ServerMessages["media_config"] | null} */
    this.mediaConfig = null;
    // The trainer's live tracks as of the last message seen: media_config on connect, then every
    // media_tracks event. A media player created later (a learner who joins after waiting) starts
    // from this, never from the state of the moment the socket opened.
    /** @type {LiveTracks} */
    this.tracks = { audio: false, camera: false, screen: false };
    // Heartbeat (docs/protocol.md "Heartbeat and dead links"): the server says how often it sends
    // one; no frame at all for twice that and the socket is given up for a new one.
    /** @type {number | null} */
    this.heartbeatMs = null;
    this.lastHeard = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.retryTimer = null;
    /** @type {ReturnType<typeof setInterval> | null} */
    this.watchdog = null;
    if (typeof window !== "undefined") {
      // Back online: no need to wait for the backoff.
      window.addEventListener("online", () => {
        if (this.retryTimer !== null) {
          clearTimeout(this.retryTimer);
          this.retryTimer = null;
          this.connect();
        }
      });
    }
  }

  connect() {
    this.closedByUser = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws) return; // already connecting or open
    let url = this.url;
    if (this.epoch !== null) url += `?epoch=${encodeURIComponent(this.epoch)}&last_seq=${this.lastSeq}`;
    this.emit("status", this.attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    this.lastHeard = Date.now();
    ws.onmessage = (e) => {
      this.lastHeard = Date.now();
      this.receive(e.data);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._dropPending();
      if (this.closedByUser || FINAL_CLOSE.has(e.code)) {
        this._stopWatchdog();
        this.emit("status", "closed");
        this.emit("closed", { code: e.code, reason: e.reason });
        return;
      }
      this._retry();
    };
    this._startWatchdog();
  }

  close() {
    this.closedByUser = true;
    this._stopWatchdog();
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws) this.ws.close(1000);
  }

  _retry() {
    this.attempt += 1;
    this.emit("status", "reconnecting");
    const delay = Math.min(this.maxDelayMs, 250 * 2 ** Math.min(this.attempt, 6));
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay * (0.5 + Math.random() / 2));
  }

  _startWatchdog() {
    if (this.watchdog !== null) return;
    this.watchdog = setInterval(() => this._check(), 1000);
  }

  _stopWatchdog() {
    clearInterval(this.watchdog);
    this.watchdog = null;
  }

  /** A socket that says nothing for two heartbeats is dead even if the browser thinks not. */
  _check() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.heartbeatMs) return;
    if (Date.now() - this.lastHeard <= 2 * this.heartbeatMs) return;
    ws.onmessage = null;
    ws.onclose = null;
    try { ws.close(4000, "no heartbeat"); } catch { /* already closing */ }
    this.ws = null;
    this._dropPending();
    this._retry();
  }

  /** The socket is gone: answers to what it carried will never come (direct replies are not
   * replayed on resume), so every request waiting for one fails now. */
  _dropPending() {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(new RequestError("connection_lost", "the connection was lost before the answer"));
  }

  /**
   * Settle the request a reply belongs to: its `ack`, its refusal (same ref), or the direct
   * reply without a ref it asked to keep (media_answer, media_offer: they come before the ack).
   * @param {any} msg
   */
  _settle(msg) {
    const p = msg.ref ? this.pending.get(msg.ref) : undefined;
    if (p && (msg.type === "ack" || msg.type === "pong")) {
      this.pending.delete(msg.ref);
      if (msg.type === "pong") p.got = msg; // ping's answer (no ack follows it)
      if (p.reply && p.got === undefined) p.reject(new RequestError("no_reply", `no ${p.reply} before the ack`));
      else p.resolve(p.reply ? p.got : msg);
    } else if (p && REFUSALS.has(msg.type)) {
      this.pending.delete(msg.ref);
      p.reject(new RequestError(msg.code || msg.type, msg.detail, msg));
    } else if (!msg.ref) {
      for (const q of this.pending.values()) {
        if (q.reply === msg.type && q.got === undefined) {
          q.got = msg;
          break;
        }
      }
    }
  }

  /** @param {string} data one frame */
  receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type === "media_config") {
      this.mediaConfig = msg; // media.js reads it (ICE servers)
      this.tracks = { ...this.tracks, ...msg.tracks };
    }
    if (msg.type === "heartbeat") {
      try { this.heartbeat(); } catch { /* closing */ }
    }
    if (msg.type === "welcome") {
      if (msg.heartbeat_s) this.heartbeatMs = msg.heartbeat_s * 1000;
      this.epoch = msg.epoch;
      this.lastSeq = msg.seq;
      this.attempt = 0;
      this.emit("status", "open");
    } else if (typeof msg.seq === "number" && msg.seq > 0) {
      if (msg.seq <= this.lastSeq) return; // already seen: never apply twice
      this.lastSeq = msg.seq;
    }
    if (msg.type === "media_tracks") this.tracks = { ...this.tracks, ...msg.tracks };
    this._settle(msg);
    this.emit(msg.type, msg);
  }

  /**
   * Send one message without waiting for anything; returns its ref. Throws when not connected.
   * @param {string} type
   * @param {object} [fields]
   * @returns {string}
   */
  send(type, fields = {}) {
    const ref = `c${this.nextRef++}`;
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new Error("not connected");
    this.ws.send(JSON.stringify({ type, ref, ...fields }));
    return ref;
  }

  /**
   * Send one message and wait for the server's answer to it (docs/protocol.md "Client
   * messages": the reply carries the message's ref). Resolves with the `ack`, or with `reply`'s
   * message when one is named (media_publish -> media_answer, media_subscribe -> media_offer:
   * the server sends it just before the ack). Rejects with a RequestError: the refusal
   * (`error`, `forbidden`, `rate_limited`), "not_connected", "connection_lost" or "timeout".
   * @template {keyof ServerMessages} [R="ack"]
   * @param {string} type
   * @param {object} [fields]
   * @param {{reply?: R, timeoutMs?: number}} [options]
   * @returns {Promise<ServerMessages[R]>}
   */
  request(type, fields = {}, { reply = undefined, timeoutMs = 20_000 } = {}) {
    return new Promise((resolve, reject) => {
      let ref;
      try {
        ref = this.send(type, fields);
      } catch (e) {
        reject(new RequestError("not_connected", String(e.message || e)));
        return;
      }
      const timer = setTimeout(() => {
        if (this.pending.delete(ref)) reject(new RequestError("timeout", "the server did not answer"));
      }, timeoutMs);
      this.pending.set(ref, {
        resolve: (msg) => { clearTimeout(timer); resolve(msg); },
        reject: (err) => { clearTimeout(timer); reject(err); },
        reply: reply || null,
        got: undefined,
      });
    });
  }

  // One helper per client message of docs/protocol.md (heartbeat has no answer: send only).
  ping() { return this.request("ping", {}, { reply: "pong" }); }
  heartbeat() { return this.send("heartbeat"); }
  /** @param {string} text @param {{question?: boolean}} [options] */
  chatSend(text, { question = false } = {}) { return this.request("chat_send", { text, question }); }
  /** @param {number} messageId */
  chatDelete(messageId) { return this.request("chat_delete", { message_id: messageId }); }
  /** @param {number} userId */
  chatMute(userId) { return this.request("chat_mute", { user_id: userId }); }
  /** @param {number} userId */
  chatUnmute(userId) { return this.request("chat_unmute", { user_id: userId }); }
  /** @param {number} messageId */
  questionVote(messageId) { return this.request("question_vote", { message_id: messageId }); }
  /** @param {number} messageId */
  questionAnswer(messageId) { return this.request("question_answer", { message_id: messageId }); }
  /**
   * @param {string} question
   * @param {string[]} choices
   * @param {{multiple?: boolean, anonymous?: boolean}} [options]
   */
  pollCreate(question, choices, { multiple = false, anonymous = true } = {}) {
    return this.request("poll_create", { question, choices, multiple, anonymous });
  }
  /** @param {number} pollId */
  pollLaunch(pollId) { return this.request("poll_launch", { poll_id: pollId }); }
  /** @param {number} pollId @param {number[]} choices */
  pollVote(pollId, choices) { return this.request("poll_vote", { poll_id: pollId, choices }); }
  /** @param {number} pollId @param {number[]} choices */
  pollChangeVote(pollId, choices) { return this.request("poll_change_vote", { poll_id: pollId, choices }); }
  /** @param {number} pollId @param {{showResults?: boolean}} [options] */
  pollClose(pollId, { showResults = false } = {}) {
    return this.request("poll_close", { poll_id: pollId, show_results: showResults });
  }
  /** @param {number} pollId */
  pollShowResults(pollId) { return this.request("poll_show_results", { poll_id: pollId }); }
  handRaise() { return this.request("hand_raise"); }
  /** @param {number | null} [userId] someone else's hand (trainers); null: one's own */
  handLower(userId = null) { return this.request("hand_lower", userId === null ? {} : { user_id: userId }); }
  /** @param {"lost" | "slower" | "ok"} kind */
  reaction(kind) { return this.request("reaction", { kind }); }
  /** @param {boolean} on */
  setLowBandwidth(on) { return this.request("set_low_bandwidth", { on }); }
  sessionStart() { return this.request("session_start"); }
  sessionEnd() { return this.request("session_end"); }
  /** @param {"morning" | "afternoon"} half @param {number | null} [minutes] */
  signingOpen(half, minutes = null) {
    return this.request("signing_open", minutes === null ? { half } : { half, minutes });
  }
  signingClose() { return this.request("signing_close"); }
  attendanceSign() { return this.request("attendance_sign"); }

  // Media signalling (media.js drives these; docs/protocol.md "Media signalling").
  /** @param {string} sdp @param {Record<string, Slot> | null} [slots] mid -> slot */
  mediaPublish(sdp, slots = null) {
    return this.request("media_publish", slots === null ? { sdp } : { sdp, slots }, { reply: "media_answer" });
  }
  mediaUnpublish() { return this.request("media_unpublish"); }
  mediaSubscribe() { return this.request("media_subscribe", {}, { reply: "media_offer" }); }
  /** @param {string} sdp */
  mediaAnswer(sdp) { return this.request("media_answer", { sdp }); }
  /** @param {"full" | "camera_half" | "camera_quarter" | "screen" | "audio"} level */
  mediaQuality(level) { return this.request("media_quality", { level }); }

  // Recording (docs/protocol.md "Recording"; replays: docs/replays.md).
  recordingStart() { return this.request("recording_start"); }
  recordingStop() { return this.request("recording_stop"); }
}
