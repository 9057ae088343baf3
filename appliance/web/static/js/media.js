// WebRTC for the classroom: the trainer publishes to the server's relay, learners receive.
// Signalling rides on the classroom socket (protocol.js; docs/protocol.md "Media signalling").
//
//   const trainer = new TrainerMedia(room);          // room: a connected Classroom
//   trainer.on("error", (e) => banner(e.code));      // TrainerMedia is an EventTarget (events.js)
//   await trainer.start({ mic: true, camera: true }); // video.srcObject = trainer.localStream
//   await trainer.shareScreen(true);
//   // Or preview first (nothing sent), publish when the class starts:
//   await trainer.setCamera(true); await trainer.shareScreen(true); ... await trainer.publish();
//
//   const learner = new LearnerMedia(room, {
//     onTracks: ({ camera, screen, audio }) => show(camera, screen, audio), // MediaStreams or null
//     onQuality: ({ level, automatic, reason }) => note(level, reason),
//     onClosed: (reason) => banner(reason),
//   });
//   await learner.start();
//   learner.setQuality("audio");

import { Events } from "./events.js";
import { RequestError } from "./protocol.js";

/** @import { Classroom, LiveTracks, Slot } from "./protocol.js" */

/** @type {Slot[]} */
const SLOTS = ["audio", "camera", "screen"];
/** @type {Record<Slot, "audio" | "video">} */
const KIND = { audio: "audio", camera: "video", screen: "video" };
// What the relay relies on (it cannot receive simulcast): the browser caps its own encodings.
/** @type {Record<Slot, {maxBitrate: number, maxFramerate?: number, maxHeight?: number}>} */
export const ENCODINGS = {
  audio: { maxBitrate: 40_000 },
  camera: { maxBitrate: 700_000, maxFramerate: 20, maxHeight: 480 },
  screen: { maxBitrate: 1_000_000, maxFramerate: 5 },
};
const CAMERA = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 20, max: 30 } };
const MIC = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

/** A refused or failed media request: `code` is the server's (docs/protocol.md) or a local one. */
export class MediaFailure extends RequestError {}

/**
 * Resolve once ICE gathering is complete (no trickle ICE: the SDP carries every candidate).
 * @param {RTCPeerConnection} pc
 * @param {number} [timeoutMs]
 * @returns {Promise<void>}
 */
function gathered(pc, timeoutMs = 5_000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    // With an unreachable TURN server gathering can hang: send what we have after a while.
    const timer = setTimeout(() => { pc.removeEventListener("icegatheringstatechange", done); resolve(); }, timeoutMs);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

/**
 * Pin VP8 (+RTX) or Opus on a transceiver, whatever order the browser prefers.
 * @param {RTCRtpTransceiver} transceiver
 * @param {string} kind "audio" | "video"
 */
function pinCodecs(transceiver, kind) {
  if (!transceiver.setCodecPreferences) return;
  const caps = (RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities(kind))
    || (RTCRtpSender.getCapabilities && RTCRtpSender.getCapabilities(kind));
  if (!caps) return;
  const want = kind === "video" ? ["video/vp8", "video/rtx"] : ["audio/opus"];
  const codecs = caps.codecs.filter((c) => want.includes(c.mimeType.toLowerCase()));
  // RTX only with VP8 present; nothing to pin if the browser has no VP8/Opus at all.
  if (!codecs.some((c) => c.mimeType.toLowerCase() !== "video/rtx")) return;
  try {
    transceiver.setCodecPreferences(codecs);
  } catch (e) {
    console.warn("setCodecPreferences", e);
  }
}

/** The camera goes out with VP8 temporal layers (L1T3) where the browser can: the relay then
 * lowers a weak learner's frame rate (all, half, a quarter) without a keyframe or re-encoding.
 * (Chromium accepts it without listing it in getCapabilities; a browser that refuses it throws,
 * one that does not know it ignores it: either way one layer, as before.)
 * @param {RTCPeerConnection} pc @param {Slot} slot @param {MediaStreamTrack | null} track
 * @returns {RTCRtpTransceiver} */
function addSender(pc, slot, track) {
  /** @type {RTCRtpTransceiverInit} */
  const init = { direction: track ? "sendonly" : "inactive" };
  if (slot === "camera") {
    /** @type {(RTCRtpEncodingParameters & {scalabilityMode: string})[]} (not in TypeScript's DOM types yet) */
    const sendEncodings = [{ scalabilityMode: "L1T3" }];
    try {
      return pc.addTransceiver(track || KIND[slot], { ...init, sendEncodings });
    } catch (e) {
      console.warn("L1T3 refused", e);
    }
  }
  return pc.addTransceiver(track || KIND[slot], init);
}


/** @param {Classroom} room @returns {RTCIceServer[]} */
function iceServers(room) {
  return (room.mediaConfig && room.mediaConfig.ice_servers) || [];
}

// ---- trainer --------------------------------------------------------------------------------

/**
 * What TrainerMedia's listeners get: "error" a RequestError (MediaFailure or the server's
 * refusal), "state" the peer connection's state (or "published", "stopped"), "sources" the
 * tracks held after a source started or stopped.
 * @typedef {{error: RequestError, state: string, sources: Record<Slot, MediaStreamTrack | null>}} TrainerEvents
 */

/** @extends {Events<TrainerEvents>} */
export class TrainerMedia extends Events {
  /** @param {Classroom} room */
  constructor(room) {
    super();
    this.room = room;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {Record<Slot, MediaStreamTrack | null>} */
    this.tracks = { audio: null, camera: null, screen: null };
    this.localStream = new MediaStream(); // mic + camera, for the self-view
    /** @type {Partial<Record<Slot, RTCRtpTransceiver>>} */
    this.transceivers = {};
    this.started = false;
    /** @type {Promise<unknown>} */
    this._queue = Promise.resolve();
    this._lost = false;
    this._offs = [
      room.on("status", (s) => { if (s === "reconnecting") this._lost = true; }),
      // After the socket resumes the server has dropped our connection (or the socket came
      // back on another host, whose relay never had it): publish again, retried while that
      // relay's workers are still starting (media_unavailable).
      room.on("media_config", () => {
        if (this._lost && this.started) {
          this._lost = false;
          this._republish(0);
        }
        this._lost = false;
      }),
      // The relay lost our connection (its media worker restarted): publish again.
      room.on("media_closed", () => { if (this.started) this._republish(0); }),
    ];
  }

  /**
   * Open the camera and/or microphone and publish them.
   * @param {{mic?: boolean, camera?: boolean}} [which]
   */
  async start({ mic = true, camera = true } = {}) {
    if (mic || camera) {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: mic ? MIC : false,
        video: camera ? CAMERA : false,
      });
      this.tracks.audio = stream.getAudioTracks()[0] || null;
      this.tracks.camera = stream.getVideoTracks()[0] || null;
    }
    this._refreshLocal();
    this.started = true;
    await this._serial(() => this._connect());
  }

  /** Publish what is open (previewed before the class started) and every later change. */
  async publish() {
    if (this.started) return;
    this.started = true;
    await this._serial(() => this._connect());
  }

  /** @param {boolean} on */
  async setMic(on) {
    await this._setSource("audio", on, async () => {
      const s = await navigator.mediaDevices.getUserMedia({ audio: MIC });
      return s.getAudioTracks()[0];
    });
  }

  /** @param {boolean} on */
  async setCamera(on) {
    await this._setSource("camera", on, async () => {
      const s = await navigator.mediaDevices.getUserMedia({ video: CAMERA });
      return s.getVideoTracks()[0];
    });
  }

  /** @param {boolean} on */
  async shareScreen(on) {
    await this._setSource("screen", on, async () => {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 5 }, audio: false });
      const track = s.getVideoTracks()[0];
      track.contentHint = "detail";
      // The browser's own "stop sharing" button.
      track.addEventListener("ended", () => { if (this.tracks.screen === track) this.shareScreen(false).catch(() => {}); });
      return track;
    });
  }

  /** Stop publishing: the server is told, devices are released. */
  stop() {
    this.started = false;
    this._offs.forEach((off) => off());
    if (this.pc) {
      this.room.mediaUnpublish().catch(() => { /* socket closed: the server unpublishes */ });
      this.pc.close();
      this.pc = null;
    }
    for (const slot of SLOTS) {
      if (this.tracks[slot]) this.tracks[slot].stop();
      this.tracks[slot] = null;
    }
    this._refreshLocal();
    this.emit("state", "stopped");
  }

  // -- internals --

  /**
   * @param {Slot} slot
   * @param {boolean} on
   * @param {() => Promise<MediaStreamTrack>} open
   */
  async _setSource(slot, on, open) {
    if (on && !this.tracks[slot]) {
      this.tracks[slot] = await open();
    } else if (!on && this.tracks[slot]) {
      this.tracks[slot].stop();
      this.tracks[slot] = null;
    } else {
      return;
    }
    this._refreshLocal();
    this.emit("sources", { ...this.tracks });
    if (!this.started) return; // a preview: published by publish()
    // Renegotiate: learners see media_tracks change (a silent replaceTrack would not tell them).
    await this._serial(async () => {
      if (!this.pc) return this._connect();
      const t = this.transceivers[slot];
      await t.sender.replaceTrack(this.tracks[slot]);
      t.direction = this.tracks[slot] ? "sendonly" : "inactive";
      await this._negotiate();
    });
  }

  _refreshLocal() {
    for (const t of this.localStream.getTracks()) this.localStream.removeTrack(t);
    for (const slot of /** @type {const} */ (["audio", "camera"])) if (this.tracks[slot]) this.localStream.addTrack(this.tracks[slot]);
  }

  /**
   * Run `fn` after whatever runs already (one renegotiation at a time).
   * @template T
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  _serial(fn) {
    const run = this._queue.then(fn, fn);
    this._queue = run.catch(() => {});
    return run;
  }

  /**
   * Say the failure to the listeners ("error"), then throw it on.
   * @param {unknown} e
   * @returns {never}
   */
  _fail(e) {
    throw this._error(e);
  }

  /**
   * Publish again after the relay lost the connection. While the relay's workers are still
   * restarting (media_unavailable) it is tried again 1 s, 2 s... later (5 times); any other
   * failure, or the last one, is told ("error").
   * @param {number} attempt
   */
  _republish(attempt) {
    this._serial(() => this._connect(true)).catch((e) => {
      const restarting = e instanceof RequestError && e.code === "media_unavailable";
      if (restarting && this.started && attempt < 5) {
        setTimeout(() => { if (this.started) this._republish(attempt + 1); }, 1000 * (attempt + 1));
      } else {
        this._error(e);
      }
    });
  }

  /**
   * Say the failure to the listeners ("error") and return it.
   * @param {unknown} e
   * @returns {RequestError | MediaFailure}
   */
  _error(e) {
    const err = e instanceof RequestError ? e : new MediaFailure("failed", String((e instanceof Error && e.message) || e));
    this.emit("error", err);
    return err;
  }

  /**
   * A new peer connection, published. A failure is told ("error") and thrown, or only thrown
   * (``quiet``: the caller decides).
   * @param {boolean} [quiet]
   */
  async _connect(quiet = false) {
    if (this.pc) this.pc.close();
    const pc = new RTCPeerConnection({ iceServers: iceServers(this.room) });
    this.pc = pc;
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc === pc) this.emit("state", pc.connectionState);
    });
    // Always three m-lines in a fixed order (mic, camera, screen): stable mids, explicit slots.
    for (const slot of SLOTS) {
      const track = this.tracks[slot];
      const t = addSender(pc, slot, track);
      pinCodecs(t, KIND[slot]);
      this.transceivers[slot] = t;
    }
    try {
      await this._negotiate();
    } catch (e) {
      if (quiet) throw e;
      this._fail(e);
    }
  }

  async _negotiate() {
    const pc = this.pc;
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    /** @type {Record<string, Slot>} */
    const slots = {};
    for (const slot of SLOTS) slots[this.transceivers[slot].mid] = slot;
    const reply = await this.room.mediaPublish(pc.localDescription.sdp, slots);
    if (this.pc !== pc) return;
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    await this._capEncodings();
    this.emit("state", "published");
  }

  async _capEncodings() {
    for (const slot of SLOTS) {
      const track = this.tracks[slot];
      const sender = this.transceivers[slot].sender;
      if (!track || !sender.getParameters) continue;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) params.encodings = [{}];
      const cap = ENCODINGS[slot];
      for (const enc of params.encodings) {
        enc.maxBitrate = cap.maxBitrate;
        if (cap.maxFramerate) enc.maxFramerate = cap.maxFramerate;
        if (cap.maxHeight) {
          const h = (track.getSettings && track.getSettings().height) || cap.maxHeight;
          enc.scaleResolutionDownBy = Math.max(1, h / cap.maxHeight);
        }
        if (slot === "audio") enc.priority = "high";
      }
      if (slot === "screen") params.degradationPreference = "maintain-resolution";
      try {
        await sender.setParameters(params);
      } catch (e) {
        // Older browsers refuse degradationPreference: keep the bitrate and frame rate caps.
        delete params.degradationPreference;
        await sender.setParameters(params).catch((err) => console.warn("setParameters", slot, err));
      }
    }
  }
}

// ---- learner --------------------------------------------------------------------------------

// camera_half / camera_quarter: every slot, the camera at a lower frame rate (the relay drops
// VP8 temporal layers); docs/media.md "The layer ladder".
/** @type {Record<string, Slot[]>} */
const LEVEL_SLOTS = {
  full: SLOTS, camera_half: SLOTS, camera_quarter: SLOTS, screen: ["audio", "screen"], audio: ["audio"],
};
/** The error of media_subscribe while no trainer presents in the class. */
const NO_CLASS_MEDIA = "no_class_media";
const anyLive = (/** @type {LiveTracks | null} */ tracks) => SLOTS.some((slot) => tracks && tracks[slot]);

/**
 * @typedef {Record<Slot, MediaStream | null>} LearnerStreams what the learner may show now
 * @typedef {"full" | "camera_half" | "camera_quarter" | "screen" | "audio"} QualityLevel
 * @typedef {{level: QualityLevel, automatic: boolean, reason: string}} QualityStep
 * @typedef {object} LearnerCallbacks
 * @property {(streams: LearnerStreams) => void} [onTracks] what to show changed
 * @property {(step: QualityStep) => void} [onQuality] the server moved the learner on the ladder
 * @property {(reason: string) => void} [onClosed] the media connection closed (media_closed)
 */

export class LearnerMedia {
  /**
   * @param {Classroom} room
   * @param {LearnerCallbacks} [callbacks]
   */
  constructor(room, { onTracks = () => {}, onQuality = () => {}, onClosed = () => {} } = {}) {
    this.room = room;
    this.onTracks = onTracks;
    this.onQuality = onQuality;
    this.onClosed = onClosed;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    this.active = false;
    /** @type {QualityLevel} */
    this.level = "full";
    /** @type {LiveTracks} what the trainer sends now */
    this.live = { audio: false, camera: false, screen: false };
    /** @type {LearnerStreams} what this connection received */
    this.streams = { audio: null, camera: null, screen: null };
    this._lost = false;
    this._waiting = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._retry = undefined;
    this._attempt = 0;
    // The room keeps the live tracks up to date from media_config and every media_tracks event
    // (this player may be created long after the socket opened: a learner who waited).
    this.live = { ...room.tracks };
    this._offs = [
      room.on("media_tracks", () => {
        this.live = { ...room.tracks };
        // The trainer started presenting: the media room exists now, subscribe.
        if (this._waiting && this.active && anyLive(this.live)) this._resubscribe();
        this._report();
      }),
      room.on("media_quality", (m) => {
        this.level = m.level;
        this.onQuality({ level: m.level, automatic: m.automatic, reason: m.reason });
        this._report();
      }),
      room.on("media_closed", (m) => {
        this.onClosed(m.reason);
        this._dropPc();
        this._report();
        // "replaced": the same learner watches elsewhere; taking it back is their choice.
        if (m.reason === "replaced") this.active = false;
        if (this.active) this._later();
      }),
      room.on("status", (s) => { if (s === "reconnecting") this._lost = true; }),
      room.on("media_config", () => {
        this.live = { ...room.tracks };
        if (this._lost && this.active) this._resubscribe();
        this._lost = false;
        this._report();
      }),
    ];
  }

  /** Subscribe and answer the relay's offer; resolves once the answer is accepted, or at once
   * when the trainer is not presenting yet (it subscribes when their media_tracks arrive). */
  async start() {
    this.active = true;
    if (!anyLive(this.live)) {
      this._waiting = true;
      this._report(); // the page says the trainer is not sending yet
      return;
    }
    await this._subscribe();
  }

  /**
   * The learner's choice (the automatic ladder never goes above it; shown in presence);
   * resolves on the server's ack.
   * @param {QualityLevel} level
   */
  setQuality(level) {
    this.level = level;
    return this.room.mediaQuality(level);
  }

  stop() {
    this.active = false;
    clearTimeout(this._retry);
    this._offs.forEach((off) => off());
    this._dropPc();
    this.streams = { audio: null, camera: null, screen: null };
  }

  // -- internals --

  _resubscribe() {
    this._subscribe().catch((e) => {
      if (e.code === NO_CLASS_MEDIA) return; // waiting for the trainer: media_tracks will tell
      this.onClosed(e.code || "failed");
      this._later();
    });
  }

  _later() {
    clearTimeout(this._retry);
    this._attempt += 1;
    const delay = Math.min(15_000, 500 * 2 ** Math.min(this._attempt, 5));
    this._retry = setTimeout(() => { if (this.active) this._resubscribe(); }, delay);
  }

  _dropPc() {
    if (this.pc) this.pc.close();
    this.pc = null;
  }

  async _subscribe() {
    this._dropPc();
    this._waiting = false;
    let offer;
    try {
      offer = await this.room.mediaSubscribe();
    } catch (e) {
      // The trainer is not presenting (no media room): wait for their media_tracks.
      if (e.code === NO_CLASS_MEDIA) this._waiting = true;
      throw e;
    }
    const pc = new RTCPeerConnection({ iceServers: iceServers(this.room) });
    this.pc = pc;
    this.streams = { audio: null, camera: null, screen: null };
    pc.addEventListener("track", (ev) => {
      const slot = offer.slots[ev.transceiver.mid];
      if (!slot) return;
      this.streams[slot] = new MediaStream([ev.track]);
      this._report();
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected") this._attempt = 0;
    });
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    for (const t of pc.getTransceivers()) {
      t.direction = "recvonly"; // learners never send
      pinCodecs(t, t.receiver.track.kind);
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    await this.room.mediaAnswer(pc.localDescription.sdp);
  }

  _report() {
    const allowed = LEVEL_SLOTS[this.level] || SLOTS;
    /** @type {LearnerStreams} */
    const out = { audio: null, camera: null, screen: null };
    for (const slot of SLOTS) {
      out[slot] = this.live[slot] && allowed.includes(slot) ? this.streams[slot] : null;
    }
    this.onTracks(out);
  }
}
