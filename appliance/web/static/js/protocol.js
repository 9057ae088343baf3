// The classroom socket client (docs/protocol.md, version 1). Framework-free ES module.
// UI code never builds messages by hand: it calls the send helpers and listens with on().
//
//   import { Classroom } from "/static/js/protocol.js";
//   const room = new Classroom(cohortId);
//   room.on("chat_message", (ev) => show(ev.message));
//   room.on("status", (s) => banner(s));   // "connecting" | "open" | "reconnecting" | "closed"
//   room.on("closed", ({ code }) => ...);   // final: 4401/4404 access, 4409 open in another tab
//   room.connect();
//   room.chatSend("Bonjour");

export const PROTOCOL_VERSION = 1;

// Close codes after which reconnecting cannot help (4409: the class was opened in another tab;
// coming back is the user's choice, or two tabs would take it from each other forever).
const FINAL_CLOSE = new Set([1008, 1009, 4401, 4403, 4404, 4409]);
export const REPLACED = 4409;

export class Classroom {
  constructor(cohortId, { base = location.origin.replace(/^http/, "ws"), maxDelayMs = 15000 } = {}) {
    this.url = `${base}/ws/cohorts/${cohortId}`;
    this.maxDelayMs = maxDelayMs;
    this.epoch = null;
    this.lastSeq = 0;
    this.handlers = new Map();
    this.ws = null;
    this.attempt = 0;
    this.closedByUser = false;
    this.nextRef = 1;
    this.mediaConfig = null;
    // The trainer's live tracks as of the last message seen: media_config on connect, then every
    // media_tracks event. A media player created later (a learner who joins after waiting) starts
    // from this, never from the state of the moment the socket opened.
    this.tracks = { audio: false, camera: false, screen: false };
    // Heartbeat (docs/protocol.md "Heartbeat and dead links"): the server says how often it sends
    // one; no frame at all for twice that and the socket is given up for a new one.
    this.heartbeatMs = null;
    this.lastHeard = 0;
    this.retryTimer = null;
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

  /** Listen to a message type ("*" for all, "status" for connection changes). */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  emit(type, payload) {
    for (const key of [type, "*"]) {
      for (const fn of this.handlers.get(key) || []) fn(payload);
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
    this._retry();
  }

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
    this.emit(msg.type, msg);
  }

  /** Send one message; returns its ref (echoed by ack / error / forbidden / rate_limited). */
  send(type, fields = {}) {
    const ref = `c${this.nextRef++}`;
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new Error("not connected");
    this.ws.send(JSON.stringify({ type, ref, ...fields }));
    return ref;
  }

  // One helper per client message of docs/protocol.md.
  ping() { return this.send("ping"); }
  heartbeat() { return this.send("heartbeat"); }
  chatSend(text, { question = false } = {}) { return this.send("chat_send", { text, question }); }
  chatDelete(messageId) { return this.send("chat_delete", { message_id: messageId }); }
  chatMute(userId) { return this.send("chat_mute", { user_id: userId }); }
  chatUnmute(userId) { return this.send("chat_unmute", { user_id: userId }); }
  questionVote(messageId) { return this.send("question_vote", { message_id: messageId }); }
  questionAnswer(messageId) { return this.send("question_answer", { message_id: messageId }); }
  pollCreate(question, choices, { multiple = false, anonymous = true } = {}) {
    return this.send("poll_create", { question, choices, multiple, anonymous });
  }
  pollLaunch(pollId) { return this.send("poll_launch", { poll_id: pollId }); }
  pollVote(pollId, choices) { return this.send("poll_vote", { poll_id: pollId, choices }); }
  pollChangeVote(pollId, choices) { return this.send("poll_change_vote", { poll_id: pollId, choices }); }
  pollClose(pollId, { showResults = false } = {}) {
    return this.send("poll_close", { poll_id: pollId, show_results: showResults });
  }
  pollShowResults(pollId) { return this.send("poll_show_results", { poll_id: pollId }); }
  handRaise() { return this.send("hand_raise"); }
  handLower(userId = null) { return this.send("hand_lower", userId === null ? {} : { user_id: userId }); }
  reaction(kind) { return this.send("reaction", { kind }); }
  setLowBandwidth(on) { return this.send("set_low_bandwidth", { on }); }
  sessionStart() { return this.send("session_start"); }
  sessionEnd() { return this.send("session_end"); }
  signingOpen(half, minutes = null) {
    return this.send("signing_open", minutes === null ? { half } : { half, minutes });
  }
  signingClose() { return this.send("signing_close"); }
  attendanceSign() { return this.send("attendance_sign"); }

  // Media signalling (media.js drives these; docs/protocol.md "Media signalling").
  mediaPublish(sdp, slots = null) {
    return this.send("media_publish", slots === null ? { sdp } : { sdp, slots });
  }
  mediaUnpublish() { return this.send("media_unpublish"); }
  mediaSubscribe() { return this.send("media_subscribe"); }
  mediaAnswer(sdp) { return this.send("media_answer", { sdp }); }
  mediaQuality(level) { return this.send("media_quality", { level }); }
}
