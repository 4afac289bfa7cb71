// One participant in a live class: what the server says and what the participant does, over the
// links of link.js (the WebSocket, the two peer connections), and reconnection. No DOM here: the
// page listens to the events it dispatches.
//
// Events: waiting, joined, restarting (the server stops: rejoining soon), reconnecting, ended,
// participants, lobby, state, chat, media,
// moderated, tracks (one appeared or went), away (the teacher left, or came back),
// refused (a request was refused: {code, ref}), videos (which videos the server sends now),
// speakers (who speaks, as the server hears it).

import { addSection, applyLayers } from "./encodings.js";
import { MediaLink, SignalingLink } from "./link.js";
import { ViewReporter } from "./view.js";

// Fatal errors after which coming back makes sense: the network or the server failed, not a person.
const RETRY_AFTER = new Set([
  "ice_failed",
  "connection_lost",
  "negotiation_timeout",
  "negotiation_failed",
  "invalid_token",
  "join_timeout",
]);
// Fatal errors that say "ask again where the class is", even before the first join: the class is
// hosted by another node, the node could not tell which, or it stops or drains (the class opens
// elsewhere, or here again after a restart).
const ASK_AGAIN = new Set(["wrong_node", "directory_unavailable", "server_stopping", "server_draining"]);
// A stopping server's `reconnect_in_ms` is followed, within this bound.
const MAX_RESTART_DELAY_MS = 60_000;

export class ClassSession extends EventTarget {
  /**
   * `getGrant()` asks the server for a fresh join token and the address of the node hosting the
   * class (POST /api/join: `{token, ws_url}`): called on every (re)join.
   */
  constructor(getGrant) {
    super();
    this.getGrant = getGrant;
    this.status = "idle"; // idle, connecting, waiting, joined, reconnecting, ended
    this.attempts = 0;
    this.everJoined = false;
    this.me = null;
    this.participants = new Map();
    this.tracks = new Map(); // track_id -> info
    this.received = new Map(); // subscriber mid -> track info
    this.chat = [];
    this.lobby = [];
    this.classState = null;
    this.local = new Map(); // source -> {track, transceiver, kind}
    this.reopen = null; // (source) => a new track for a stopped device, set by the page
    this.wanted = { microphone: true, camera: true };
    this.messages = Promise.resolve();
    this.generation = 0;
    this.receiving = null; // track ids the server sends now (`videos`); null: not told yet, all of them
    this.speaker = null; // the participant the server hears speaking loudest now (`speakers`)
    this.loudest = [];
    this.audioOnly = false; // the data saver: no incoming video but screen shares (kept across rejoins)
    this.signal = new SignalingLink(() => this.lost());
    this.views = new ViewReporter(this.signal, () => this.status === "joined" && this.signal.isOpen());
    this.link = new MediaLink(
      (message) => this.send(message),
      (code) => this.mediaFailed(code),
    );
  }

  /** The round trip of the last ping, in ms (null before one came back). */
  get rtt() {
    return this.signal.rtt;
  }

  /** The publishing and the subscribing peer connections of this (re)join. */
  get pub() {
    return this.link.pub;
  }

  get sub() {
    return this.link.sub;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  start() {
    this.status = "connecting";
    this.connect();
  }

  async connect() {
    let grant;
    try {
      grant = await this.getGrant();
    } catch (error) {
      // The link was withdrawn, the class deleted, the account removed: say so. Otherwise retry.
      if (error.status >= 400 && error.status < 500 && error.status !== 429) this.finish(error.code, error);
      else this.lost();
      return;
    }
    if (this.status === "ended") return;
    this.status = "connecting";
    const generation = this.generation;
    this.signal.open(grant.token, (message) => {
      if (message.type === "error" && message.fatal) {
        // At once, not behind a negotiation in progress: the socket closes right after it.
        this.refused(message, this.signal.replies.get(message.ref));
        return;
      }
      // In order (offers and answers must not cross), on this connection's own chain.
      this.messages = this.messages
        .then(() => generation === this.generation && this.handle(message))
        .catch((error) => this.broken(error));
    }, grant.ws_url);
  }

  send(message) {
    this.signal.send(message);
  }

  /** Send a message with an id; resolves with the reply that names it, rejects on its error. */
  request(message, timeoutMs = 10_000) {
    return this.signal.request(message, timeoutMs);
  }

  async handle(message) {
    const replies = this.signal.replies;
    const reply = message.ref !== undefined ? replies.get(message.ref) : undefined;
    switch (message.type) {
      case "waiting": {
        // On a rejoin (not a teacher's `to_lobby`): the page may keep the room while it waits.
        const rejoin = this.everJoined && this.status !== "joined";
        this.status = "waiting";
        this.link.close();
        this.emit("waiting", { ...message, rejoin });
        break;
      }
      case "joined":
        await this.joined(message);
        break;
      case "publish_answer":
        reply?.resolve(message);
        break;
      case "subscribe_offer":
        await this.answer(message);
        break;
      case "participant_joined":
      case "participant_updated":
        this.participants.set(message.participant.id, message.participant);
        if (message.participant.id === this.me?.id) this.me = message.participant;
        this.emit("participants", message);
        break;
      case "participant_left":
        this.participants.delete(message.participant_id);
        this.emit("participants", message);
        break;
      case "chat":
        this.chat.push(message);
        this.emit("chat", message);
        break;
      case "lobby":
        this.lobby = message.waiting;
        this.emit("lobby");
        break;
      case "class_state":
        this.classState = message.state;
        this.emit("state");
        break;
      case "moderated":
        if (message.action === "mute") this.wanted.microphone = false;
        if (message.action === "camera_off") this.wanted.camera = false;
        if (message.action === "stop_screen") this.dropSource("screen");
        this.syncLocalTracks();
        this.emit("moderated", message);
        break;
      case "track_published":
        this.tracks.set(message.track_id, message);
        this.emit("tracks", message);
        break;
      case "track_unpublished":
        this.tracks.delete(message.track_id);
        this.emit("tracks", message);
        break;
      case "teacher_away":
      case "teacher_back":
        // The lesson ends without a teacher: the state keeps the deadline for a later render.
        if (this.classState) this.classState.teacher_away_ends_in = message.type === "teacher_away" ? message.ends_in : null;
        this.emit("away", message);
        break;
      case "videos":
        this.receiving = new Set(message.receiving);
        this.emit("videos", message);
        break;
      case "layers":
        this.applyLayers(message);
        break;
      case "speakers":
        this.speaker = message.active ?? null;
        this.loudest = message.loudest || [];
        this.emit("speakers", message);
        break;
      case "server_stopping":
        this.serverStopping(message.reconnect_in_ms);
        break;
      case "pong":
        break; // its round trip is the link's
      case "error":
        if (!this.views.refused(message)) this.refused(message, reply);
        break;
      default:
        break; // fields and messages of later versions are ignored
    }
    if (reply && message.type !== "error" && message.type !== "pong") replies.delete(message.ref);
  }

  refused(message, reply) {
    if (reply) {
      this.signal.replies.delete(message.ref);
      reply.reject(Object.assign(new Error(message.message), { code: message.code }));
    }
    if (message.fatal) {
      if (message.code === "ice_failed" && this.everJoined) this.mediaFailed(message.code);
      else if (ASK_AGAIN.has(message.code) || (RETRY_AFTER.has(message.code) && this.everJoined)) this.lost();
      else this.finish(message.code);
      return;
    }
    // The refusal of a request is explained once, by the code that made it; others by the page.
    if (!reply) this.emit("refused", message);
  }

  async joined(message) {
    const again = this.everJoined;
    this.status = "joined";
    this.everJoined = true;
    this.attempts = 0;
    this.me = message.participant;
    this.participants = new Map(message.participants.map((p) => [p.id, p]));
    this.participants.set(this.me.id, this.me);
    this.tracks = new Map(message.tracks.map((t) => [t.track_id, t]));
    this.classState = message.state;
    this.chat = message.chat;
    this.lobby = message.lobby || [];
    this.received = new Map();
    this.receiving = null;
    this.speaker = null;
    this.loudest = [];
    this.views.forget();
    this.link.open(message.ice_servers);
    for (const entry of this.local.values()) entry.transceiver = null;
    this.publishing = null; // a negotiation left on the closed connection never settles
    this.emit("joined", { again, message });
    // Say the wanted state of microphone and camera before any packet flows; what a teacher
    // holds or locks for this student stays off.
    for (const source of ["microphone", "camera"]) {
      const refused = (this.me.held || []).includes(source) || (this.me.role === "student" && this.classState.locks[source]);
      if (refused) this.wanted[source] = false;
      if (this.me[source] !== this.wanted[source]) this.send({ type: "media", source, enabled: this.wanted[source] });
    }
    this.syncLocalTracks();
    this.views.send();
    if (this.local.size) this.republish();
  }

  /** What the page shows (see view.js): the server chooses the videos it sends from it. */
  setView(view) {
    this.views.set(view);
  }

  async answer(message) {
    const pc = this.sub;
    if (!pc) return;
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    // At once, without waiting for the candidates: they follow, one by one (trickle ICE).
    this.send({ type: "subscribe_answer", sdp: pc.localDescription.sdp });
    this.link.described("subscribe");
    // A section may carry another participant's track after a renegotiation: map by mid, anew.
    this.received = new Map(message.tracks.map((t) => [t.mid, t]));
    this.emit("media");
  }

  /** What is being received: one entry per active section, with its MediaStreamTrack. */
  receivedMedia() {
    const media = [];
    for (const transceiver of this.sub?.getTransceivers() || []) {
      const info = this.received.get(transceiver.mid);
      if (info) media.push({ ...info, track: transceiver.receiver.track, receiver: transceiver.receiver });
    }
    return media;
  }

  /**
   * The video sections the server should be sending now: in `videos.receiving` (all of them until
   * told), and a camera only while its owner has it on. Audio is left out: the server forwards
   * only the loudest microphones, so silence says nothing.
   */
  expectedVideos() {
    return this.receivedMedia().filter(
      (m) =>
        m.kind === "video" &&
        (this.receiving === null || this.receiving.has(m.track_id)) &&
        (m.source === "screen" || this.participants.get(m.participant_id)?.camera !== false),
    );
  }

  /** Whether this participant may share their screen now: a teacher, or a student the lock or a teacher lets. */
  mayShareScreen() {
    if (!this.me || this.me.role === "teacher") return true;
    return !this.classState?.locks.screen || Boolean(this.me.screen_allowed);
  }

  // Publishing

  /** Use `track` for `source` (camera, microphone, screen); a device change replaces the track in place. */
  async setSource(source, track) {
    const entry = this.local.get(source);
    if (entry?.transceiver) {
      entry.track = track;
      await entry.transceiver.sender.replaceTrack(track);
      this.syncLocalTracks();
      return;
    }
    this.local.set(source, { track, transceiver: null, kind: track.kind });
    this.syncLocalTracks();
    if (this.status === "joined") await this.republish();
  }

  /** Stop sending a source for good (a screen share that ended). */
  dropSource(source) {
    const entry = this.local.get(source);
    if (!entry) return;
    this.local.delete(source);
    entry.track?.stop();
    if (entry.transceiver) {
      this.send({ type: "unpublish", mid: entry.transceiver.mid });
      entry.transceiver.sender.replaceTrack(null);
    }
    this.emit("local");
  }

  /** Dynacast: the server says which layers of one of our sections anyone receives. */
  applyLayers(message) {
    for (const entry of this.local.values()) {
      if (entry.transceiver?.mid === message.mid) {
        applyLayers(entry.transceiver, message.active).catch(() => {}); // a section being replaced
      }
    }
  }

  republish() {
    this.publishing = (this.publishing || Promise.resolve()).then(() => this.negotiate()).catch((error) => {
      if (error.code === "locked" || error.code === "too_many_tracks") {
        this.dropSource("screen");
        this.emit("refused", { code: error.code, source: "screen" });
      } else if (this.status === "joined") {
        this.broken(error);
      }
    });
    return this.publishing;
  }

  async negotiate() {
    const pc = this.pub;
    const fresh = [];
    for (const [source, entry] of this.local) {
      if (!entry.transceiver) {
        // A stopped camera still gets its section, so that turning it on needs no renegotiation.
        entry.transceiver = addSection(pc, source, entry.track || entry.kind);
        fresh.push(source);
      }
    }
    if (!fresh.length) return;
    await pc.setLocalDescription(await pc.createOffer());
    const tracks = [...this.local].map(([source, entry]) => ({ mid: entry.transceiver.mid, source }));
    const answered = this.request({ type: "publish", sdp: pc.localDescription.sdp, tracks });
    this.link.described("publish");
    const answer = await answered;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  /**
   * Match the local tracks to the wanted state. A microphone that is off sends silence (the
   * server drops it anyway); a camera that is off is stopped, so that its light goes out.
   */
  syncLocalTracks() {
    for (const source of ["microphone", "camera"]) {
      const entry = this.local.get(source);
      if (!entry?.track) continue;
      if (source === "camera" && !this.wanted.camera && this.reopen) {
        entry.track.stop();
        entry.track = null;
        entry.transceiver?.sender.replaceTrack(null);
      } else {
        entry.track.enabled = this.wanted[source];
      }
    }
    this.emit("local");
  }

  /** Open again a device that was stopped; false if it cannot be. */
  async restore(source) {
    const entry = this.local.get(source);
    if (!entry || entry.track) return Boolean(entry);
    const track = this.reopen && (await this.reopen(source));
    if (!track) return false;
    entry.track = track;
    if (entry.transceiver) await entry.transceiver.sender.replaceTrack(track);
    return true;
  }

  /**
   * Turn one's microphone or camera on or off. Resolves "ok", "held" (a teacher's lock or hold
   * refuses it), "device" (the device would not open again) or the code of another refusal
   * (rate_limited); the source is then off.
   */
  async setMedia(source, enabled) {
    this.wanted[source] = enabled;
    if (!enabled) this.syncLocalTracks(); // silence at once, before the server hears of it
    if (this.status === "joined") {
      try {
        await Promise.race([
          this.request({ type: "media", source, enabled }),
          new Promise((resolve) => setTimeout(resolve, 1500)), // success has no reply of its own
        ]);
      } catch (error) {
        this.wanted[source] = false;
        this.syncLocalTracks();
        return error.code === "locked" ? "held" : error.code;
      }
    }
    if (enabled && !(await this.restore(source))) {
      this.wanted[source] = false;
      if (this.status === "joined") this.send({ type: "media", source, enabled: false });
      this.syncLocalTracks();
      return "device";
    }
    this.syncLocalTracks();
    return "ok";
  }

  // Class actions

  sendChat(text) {
    return this.request({ type: "chat", text }, 3000).catch((error) => {
      if (error.code !== "timeout") throw error; // the chat broadcast is the answer; it has no ref
    });
  }

  raiseHand(raised) {
    this.send({ type: "hand", raised });
  }

  moderate(action, fields = {}) {
    this.send({ type: "moderate", action, id: this.signal.id(), ...fields });
  }

  // Life and death

  /** Close the socket (its close event is then ignored) and both peer connections. */
  disconnect() {
    this.signal.close();
    this.link.close();
  }

  broken(error) {
    console.error("class session", error);
    this.lost();
  }

  /**
   * The server stops (a restart, or its classes moving to another): the media flows on until the
   * delay it gave (spread over its participants), then this page rejoins as after a lost link,
   * with a fresh token from POST /api/join, retrying while the server cannot be reached.
   */
  serverStopping(delayMs) {
    if (this.status === "ended" || this.retryTimer) return;
    this.emit("restarting");
    const delay = Math.min(Math.max(Number(delayMs) || 0, 0), MAX_RESTART_DELAY_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.lost(0);
    }, delay);
  }

  /**
   * The link broke (network, server restart): come back with a fresh token, keeping local tracks,
   * after `delay` ms (by default, longer at each failed attempt).
   */
  lost(delay) {
    if (this.status === "ended" || this.retryTimer) return;
    this.disconnect();
    // A closed peer connection never settles what was pending on it: start a fresh chain.
    this.generation += 1;
    this.messages = Promise.resolve();
    this.signal.rejectAll("lost");
    this.status = "reconnecting";
    this.received = new Map();
    this.receiving = null;
    this.speaker = null;
    this.emit("media"); // the tiles show names, not the last frame, until media flows again
    this.emit("reconnecting", { attempt: this.attempts });
    delay ??= Math.min(1000 * 2 ** this.attempts, 10_000) * (0.75 + Math.random() / 2);
    this.attempts += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.status !== "reconnecting") return;
      if (navigator.onLine) this.connect();
      else window.addEventListener("online", () => this.connect(), { once: true });
    }, delay);
  }

  /**
   * The media connection failed. Had it worked in this visit, the network changed: join again.
   * Otherwise try the relay alone once (when there is one), then say plainly that this network
   * seems to block the video, instead of "reconnected" every 30 seconds with nothing arriving.
   */
  mediaFailed(code) {
    if (this.status === "ended" || this.retryTimer) return;
    if (this.link.failed(code) === "blocked") {
      this.finish("network_blocked", { relay: this.link.turnOffered, relayOnly: this.link.relayOnly });
    } else {
      this.lost();
    }
  }

  /** The end of this visit: left, removed, refused, class ended... `code` says which. */
  finish(code, detail) {
    if (this.status === "ended") return;
    this.status = "ended";
    this.signal.stop();
    clearTimeout(this.retryTimer);
    this.disconnect();
    for (const entry of this.local.values()) entry.track?.stop();
    this.emit("ended", { code, detail });
  }

  leave() {
    this.send({ type: "leave" });
    this.finish("left");
  }
}
