// The class room: the grid, the toolbar, the panels, the active speaker (as the server hears it),
// the connection quality and the data saver.
import { api, errorText } from "../api.js";
import { browserDiagnostics } from "../diagnostics.js";
import { $, el } from "../dom.js";
import { label, t } from "../i18n.js";
import { openScreen } from "./devices.js";
import { bindClassControls, chatItem, renderClassState, renderLobby, renderPeople, stopScreenButton } from "./panels.js";
import { QualityProbe } from "./quality.js";
import { Grid } from "./tiles.js";

const POOR_MEASURES = 2; // measures in a row (2 s apart) of a bad connection before the data saver is offered
const PANELS = { "open-chat": "panel-chat", "open-people": "panel-people", "open-lobby": "panel-lobby", "open-class": "panel-class" };

/** Minutes and seconds, "9:05", for a countdown. */
function clock(seconds) {
  const whole = Math.ceil(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

export class RoomView {
  constructor(session, { title, classId }) {
    this.session = session;
    this.classId = classId;
    this.grid = new Grid($("stage"), $("grid"), {
      root: $("pager"),
      previous: $("page-previous"),
      next: $("page-next"),
      status: $("page-status"),
      elsewhere: $("page-hands"),
      speaker: $("page-speaker"),
    });
    this.grid.onChange = () => this.render();
    this.grid.onView = () => this.reportView();
    this.poorMeasures = 0;
    this.saverOffered = false;
    this.probe = new QualityProbe();
    this.unread = 0;
    this.lastQuality = null;
    $("room-title").textContent = title;
    this.bindToolbar();
    this.bindChat();
    this.bindReport();
    bindClassControls(session);
    const on = (type, handler) => session.addEventListener(type, handler);
    on("participants", (event) => this.changed(event.detail));
    on("media", () => this.render());
    on("local", () => this.render());
    on("lobby", () => this.renderLobby());
    on("state", () => this.renderState());
    on("chat", (event) => this.addChat(event.detail));
    on("moderated", (event) => this.announce(`moderated.${event.detail.action}`));
    on("tracks", (event) => this.trackChanged(event.detail));
    on("away", (event) => this.away(event.detail));
    on("refused", (event) => this.refused(event.detail));
    on("restarting", () => {
      this.restarting = true;
      this.banner("room.restarting");
    });
    on("reconnecting", () => this.banner(this.restarting ? "room.restarting" : "room.reconnecting"));
    on("joined", (event) => this.joined(event.detail));
    on("videos", () => this.render());
    on("speakers", () => this.render());
    document.addEventListener("classe:language", () => this.render());
    // A hidden tab draws nothing: the server sends it no video until it shows again.
    document.addEventListener("visibilitychange", () => this.reportView());
    this.timers = [setInterval(() => this.poll("measure"), 2000)];
  }

  joined({ again }) {
    const teacher = this.session.me.role === "teacher";
    for (const element of document.querySelectorAll(".teacher-only")) element.hidden = !teacher;
    // Back in: "reconnected" only once media flows again (see measure); the banner stays until then.
    this.awaitingMedia = again;
    if (!again) this.banner(null);
    this.known = new Map([...this.session.participants].map(([id, q]) => [id, { hand: q.hand, held: q.held }]));
    $("messages").replaceChildren(...this.session.chat.map((m) => chatItem(m, this.session.me)));
    this.mayShare = this.session.mayShareScreen();
    this.renderLobby();
    this.renderState();
    this.renderAway();
    this.render();
  }

  /** Back after a lost link or a restart, waiting for a teacher: the room stays, and says so. */
  waiting(reason) {
    this.banner(reason === "lobby" ? "room.rejoin_lobby" : "room.rejoin_not_started");
  }

  stop() {
    for (const timer of this.timers) clearInterval(timer);
    clearInterval(this.awayTimer);
  }

  /** Run a periodic measure unless the previous one still runs; a connection closing under it is no error. */
  async poll(name) {
    if (this.polling?.has(name)) return;
    this.polling ??= new Set();
    this.polling.add(name);
    try {
      await this[name]();
    } catch {
      // the peer connection closed during the measure: the next one starts afresh
    } finally {
      this.polling.delete(name);
    }
  }

  /** Say what needs saying about a participant's change: a raised hand (to teachers), a hold released. */
  changed(message) {
    const p = message.participant;
    const before = p && this.known?.get(p.id);
    const me = this.session.me;
    if (p && before && message.type === "participant_updated") {
      if (p.hand && !before.hand && me.role === "teacher" && p.id !== me.id) this.announce("room.hand_raised", { name: p.name });
      if (p.id === me.id) {
        for (const source of before.held || []) if (!(p.held || []).includes(source)) this.announce(`room.${source}_allowed`);
      }
    }
    this.known = new Map([...this.session.participants].map(([id, q]) => [id, { hand: q.hand, held: q.held }]));
    this.screenPermission();
    this.render();
  }

  /** Tell a student when they may share their screen now (a teacher allowed them, or everyone). */
  screenPermission() {
    const may = this.session.mayShareScreen();
    if (may && this.mayShare === false) this.announce("room.screen_allowed");
    this.mayShare = may;
  }

  /** A teacher learns at once that a student started sharing, with a way to stop it. */
  trackChanged(message) {
    const me = this.session.me;
    const p = this.session.participants.get(message.participant_id);
    if (message.type === "track_published" && message.source === "screen" && me?.role === "teacher" && p?.role === "student") {
      this.announce("room.student_sharing", { name: p.name });
    }
    this.render();
  }

  // The teacher is away: what is left of the lesson

  away(message) {
    if (message.type === "teacher_back") this.announce("room.teacher_back");
    else $("announcer").textContent = t("room.teacher_away", { time: clock(message.ends_in) });
    this.renderAway();
  }

  renderAway() {
    const endsIn = this.session.classState?.teacher_away_ends_in;
    clearInterval(this.awayTimer);
    const banner = $("teacher-away");
    banner.hidden = endsIn === null || endsIn === undefined;
    if (banner.hidden) return;
    const deadline = Date.now() + endsIn * 1000;
    const tick = () => label(banner, "room.teacher_away", { time: clock(Math.max(0, (deadline - Date.now()) / 1000)) });
    tick();
    this.awayTimer = setInterval(tick, 1000);
  }

  // Drawing

  render() {
    const s = this.session;
    if (!s.me) return;
    const me = s.me;
    const entries = [];
    const videos = new Map(); // tile key -> the received MediaStreamTrack
    const received = s.receivedMedia();
    for (const m of received) {
      if (m.kind === "video") videos.set(m.source === "screen" ? `${m.participant_id}:screen` : m.participant_id, m.track);
    }
    const published = new Map(); // tile key -> the server's id of that video
    for (const track of s.tracks.values()) {
      if (track.kind === "video") published.set(track.source === "screen" ? `${track.participant_id}:screen` : track.participant_id, track.track_id);
    }
    // A picture is shown while the server sends it; the data saver shows only screen shares.
    const live = (key, screen) => {
      const id = published.get(key);
      return (screen || !s.audioOnly) && (s.receiving === null || (id !== undefined && s.receiving.has(id)));
    };
    this.renderAudio(received.filter((m) => m.kind === "audio"));
    const people = [...s.participants.values()].sort(
      (a, b) => (b.role === "teacher") - (a.role === "teacher") || (b.id === me.id) - (a.id === me.id) || a.name.localeCompare(b.name),
    );
    let screenKey = null;
    for (const p of people) {
      const mine = p.id === me.id;
      const camera = mine ? (s.wanted.camera && s.local.get("camera")?.track) || null : p.camera ? videos.get(p.id) || null : null;
      const cameraId = !mine && p.camera ? published.get(p.id) || null : null;
      entries.push({ key: p.id, participant: p, track: camera, trackId: cameraId, live: mine || live(p.id, false), screen: false, me: mine });
      const screen = mine ? s.local.get("screen")?.track : videos.get(`${p.id}:screen`);
      if (screen) {
        const key = `${p.id}:screen`;
        entries.push({ key, participant: p, track: screen, trackId: mine ? null : published.get(key) || null, live: mine || live(key, true), screen: true, me: mine });
        if (!mine || !screenKey) screenKey = `${p.id}:screen`;
      }
    }
    // Pinned unless the person chose otherwise: a screen share, else (for students) the teacher.
    const teacher = people.find((p) => p.role === "teacher" && p.id !== me.id);
    this.grid.speaker = s.speaker;
    this.grid.render(entries, screenKey || (me.role === "student" && teacher ? teacher.id : null));
    this.reportView();
    label($("people-count"), "room.count", { count: people.length });
    renderPeople(s, $("people"));
    this.renderScreenNotices();
    this.renderToolbar();
  }

  /** For teachers: each student's screen share, with its stop button, until it ends. */
  renderScreenNotices() {
    const s = this.session;
    const sharing = [];
    if (s.me.role === "teacher") {
      for (const track of s.tracks.values()) {
        const p = s.participants.get(track.participant_id);
        if (track.source === "screen" && p?.role === "student") sharing.push(p);
      }
    }
    const list = $("screen-notices");
    list.hidden = !sharing.length;
    list.replaceChildren(
      ...sharing.map((p) =>
        el("li", { attrs: { "data-participant": p.id } }, [
          el("span", { i18n: "room.student_sharing", vars: { name: p.name } }),
          stopScreenButton(s, p),
        ]),
      ),
    );
  }

  renderAudio(audio) {
    const box = $("audio");
    const wanted = new Set(audio.map((m) => m.mid));
    for (const element of [...box.children]) if (!wanted.has(element.dataset.mid)) element.remove();
    for (const m of audio) {
      let element = box.querySelector(`[data-mid="${CSS.escape(m.mid)}"]`);
      if (!element) {
        element = el("audio", { attrs: { autoplay: true, "data-mid": m.mid } });
        box.append(element);
      }
      if (element.srcObject?.getTracks()[0] !== m.track) {
        element.srcObject = new MediaStream([m.track]);
        element.play().catch(() => {});
      }
    }
  }

  renderToolbar() {
    const s = this.session;
    const me = s.me;
    for (const source of ["microphone", "camera"]) {
      const button = $(`toggle-${source}`);
      const available = s.local.has(source);
      const on = available && s.wanted[source] && me[source];
      button.setAttribute("aria-pressed", String(on));
      button.disabled = !available;
      const held = me.role === "student" && ((me.held || []).includes(source) || s.classState?.locks[source]);
      button.classList.toggle("held", Boolean(held) && !on);
      label(button.querySelector("span"), !available ? `room.no_${source}` : on ? `room.${source}_off` : `room.${source}_on`);
    }
    const sharing = s.local.has("screen");
    const screen = $("toggle-screen");
    screen.setAttribute("aria-pressed", String(sharing));
    screen.hidden = !navigator.mediaDevices?.getDisplayMedia;
    label(screen.querySelector("span"), sharing ? "room.stop_screen" : "room.share_screen");
    // Until a teacher allows it, a student's button says why it does nothing (and stays focusable).
    const closed = !sharing && !s.mayShareScreen();
    screen.setAttribute("aria-disabled", String(closed));
    if (closed) {
      screen.setAttribute("title", t("room.screen_not_allowed"));
      screen.setAttribute("aria-describedby", "screen-hint");
    } else {
      screen.removeAttribute("title");
      screen.removeAttribute("aria-describedby");
    }
    $("toggle-saver").setAttribute("aria-pressed", String(s.audioOnly));
    $("toggle-hand").setAttribute("aria-pressed", String(me.hand));
    label($("toggle-hand").querySelector("span"), me.hand ? "room.lower_hand" : "room.raise_hand");
  }

  renderLobby() {
    renderLobby(this.session, $("lobby-list"));
    const count = this.session.lobby.length;
    const badge = $("open-lobby").querySelector(".badge");
    badge.hidden = !count;
    badge.textContent = String(count);
    if (count > (this.lobbyCount || 0) && this.session.me?.role === "teacher") this.announce("room.someone_waits", { count });
    this.lobbyCount = count;
  }

  renderState() {
    const state = this.session.classState;
    if (!state) return;
    renderClassState(state);
    this.screenPermission();
    const chatLocked = this.session.me.role === "student" && state.locks.chat;
    $("chat-form").hidden = chatLocked;
    $("chat-locked").hidden = !chatLocked;
    this.render();
  }

  // Toolbar

  bindToolbar() {
    const s = this.session;
    for (const source of ["microphone", "camera"]) {
      $(`toggle-${source}`).addEventListener("click", async () => {
        const on = !(s.wanted[source] && s.me[source]);
        const result = await s.setMedia(source, on);
        if (result === "held") this.announce(`room.${source}_held`);
        else if (result === "device") this.announce(`device.${source}_failed`);
        else if (result !== "ok") this.refused({ code: result });
        this.render();
      });
    }
    $("toggle-screen").addEventListener("click", async () => {
      if (s.local.has("screen")) {
        s.dropSource("screen");
        return;
      }
      if (!s.mayShareScreen()) {
        this.announce("room.screen_not_allowed");
        return;
      }
      const { track, error } = await openScreen();
      if (!track) {
        if (error !== "cancelled") this.announce(`screen.${error}`);
        return;
      }
      track.addEventListener("ended", () => s.dropSource("screen")); // the browser's own "stop sharing"
      await s.setSource("screen", track);
    });
    $("toggle-hand").addEventListener("click", () => s.raiseHand(!s.me.hand));
    $("toggle-saver").addEventListener("click", () => this.saveData(!s.audioOnly));
    $("saver-accept").addEventListener("click", () => this.saveData(true));
    $("saver-dismiss").addEventListener("click", () => this.closeSaverOffer());
    for (const [button, panel] of Object.entries(PANELS)) $(button).addEventListener("click", () => this.openPanel(panel));
    $("leave").addEventListener("click", () => s.leave());
  }

  openPanel(id) {
    const open = $(id).hidden;
    for (const [button, panel] of Object.entries(PANELS)) {
      $(panel).hidden = !(open && panel === id);
      $(button).setAttribute("aria-expanded", String(open && panel === id));
    }
    $("side").hidden = !open;
    if (id === "panel-chat" && open) {
      this.unread = 0;
      $("open-chat").querySelector(".badge").hidden = true;
      $("chat-input").focus();
    } else if (open) {
      $(id).querySelector("h2").setAttribute("tabindex", "-1");
      $(id).querySelector("h2").focus();
    }
  }

  // Chat

  bindChat() {
    $("chat-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("chat-input");
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      await this.session.sendChat(text).catch((error) => {
        input.value = text;
        this.refused(error);
      });
    });
  }

  addChat(message) {
    const list = $("messages");
    list.append(chatItem(message, this.session.me));
    list.scrollTop = list.scrollHeight;
    if ($("panel-chat").hidden) {
      this.unread += 1;
      const badge = $("open-chat").querySelector(".badge");
      badge.hidden = false;
      badge.textContent = String(this.unread);
    }
  }

  // What the server refused, and what happens on the page

  refused(message) {
    if (message.code === "locked") this.announce(message.source === "screen" ? "room.screen_not_allowed" : "refused.locked");
    else if (message.code === "rate_limited") this.announce("refused.rate_limited");
    else if (message.code === "too_many_tracks") this.announce("refused.too_many_tracks");
    else if (message.code === "class_full") this.announce("refused.class_full"); // a teacher's admit beyond the limit
  }

  announce(key, vars) {
    $("announcer").textContent = t(key, vars);
    const toast = el("p", { className: "toast", i18n: key, vars, attrs: { "aria-hidden": "true" } });
    document.body.append(toast);
    setTimeout(() => toast.remove(), 5000);
  }

  banner(key, hideAfter) {
    const banner = $("banner");
    clearTimeout(this.bannerTimer);
    banner.hidden = !key;
    if (key) label(banner, key);
    const warning = ["room.reconnecting", "room.restarting", "room.rejoin_lobby", "room.rejoin_not_started", "room.media_stalled"];
    banner.classList.toggle("warning", warning.includes(key));
    if (hideAfter) this.bannerTimer = setTimeout(() => (banner.hidden = true), hideAfter);
  }

  // Measured things

  async measure() {
    if (this.session.status !== "joined" && this.session.status !== "reconnecting") return;
    this.quality = await this.probe.measure(this.session);
    const indicator = $("quality");
    // A connection that stays bad while joined (not one being rebuilt): suggest the data saver.
    const connected = Object.values(this.quality.ice).every((state) => state === "connected");
    const poor = this.quality.level === "bad" && this.session.status === "joined" && connected;
    this.poorMeasures = poor ? this.poorMeasures + 1 : 0;
    if (this.poorMeasures >= POOR_MEASURES) this.offerSaver();
    if (this.awaitingMedia && this.mediaBack()) {
      this.awaitingMedia = this.restarting = false;
      this.banner("room.reconnected", 4000);
    }
    if (this.quality.level === this.lastQuality) return;
    // Video expected that does not arrive is said in words, not only by the bars.
    if (this.quality.level === "stalled") this.banner("room.media_stalled");
    else if ($("banner").dataset.i18n === "room.media_stalled") this.banner(null);
    this.lastQuality = this.quality.level;
    indicator.dataset.level = this.quality.level;
    indicator.dataset.i18nAttr = `aria-label=quality.${this.quality.level},title=quality.${this.quality.level}`;
    indicator.setAttribute("aria-label", t(`quality.${this.quality.level}`));
    indicator.setAttribute("title", t(`quality.${this.quality.level}`));
  }

  /**
   * Whether media flows again after a rejoin: the video expected arrives; or, with none expected,
   * the connections that have something to carry (others' tracks, our own) are up.
   */
  mediaBack() {
    const s = this.session;
    if (s.status !== "joined" || this.quality.media === "waiting" || this.quality.media === "stalled") return false;
    if (this.quality.media === "flowing") return true;
    const others = [...s.tracks.values()].some((track) => track.participant_id !== s.me.id);
    return (!others || s.sub?.connectionState === "connected") && (!s.local.size || s.pub?.connectionState === "connected");
  }

  // What the page shows, told to the server; the data saver

  reportView() {
    const s = this.session;
    // Nothing said before the page has looked: an empty view would pause every video a moment.
    if (!s.me || (!this.grid.measured && !document.hidden)) return;
    s.setView({
      tiles: document.hidden ? [] : this.grid.visible(),
      pinned: this.grid.pinnedParticipant(),
      audio_only: s.audioOnly,
    });
  }

  /**
   * Économiser les données: no incoming video but screen shares (the class is still heard); a
   * student's own camera goes off with it (it can stay off). Turning it off again does not turn
   * the camera back on: that is the person's own click.
   */
  async saveData(on) {
    const s = this.session;
    this.closeSaverOffer();
    s.audioOnly = on;
    this.render();
    let key = on ? "room.saver_on" : "room.saver_off";
    if (on && s.me.role === "student" && s.wanted.camera && s.me.camera && s.local.has("camera")) {
      await s.setMedia("camera", false);
      key = "room.saver_on_camera";
      this.render();
    }
    this.announce(key);
  }

  /** Offer the data saver once per visit, without getting in the way: a note with two buttons. */
  offerSaver() {
    const s = this.session;
    if (this.saverOffered || s.audioOnly) return;
    this.saverOffered = true;
    $("saver-offer").hidden = false;
    $("announcer").textContent = t("room.saver_offer");
  }

  closeSaverOffer() {
    $("saver-offer").hidden = true;
  }

  // Report a problem, with what the page measured

  bindReport() {
    const dialog = $("report-dialog");
    const form = $("report-form");
    $("open-report").addEventListener("click", () => dialog.showModal());
    $("ended-report").addEventListener("click", () => dialog.showModal()); // after "La vidéo ne passe pas"
    form.querySelector("button[value=cancel]").addEventListener("click", () => dialog.close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const alert = form.querySelector("[role=alert]");
      const s = this.session;
      const diagnostics = {
        ...browserDiagnostics(),
        status: s.status,
        quality: this.quality || null,
        participants: s.participants.size,
        received_tracks: s.received.size,
        sending: [...s.local.keys()],
        connection: await s.link.diagnosis(this.quality?.arrival),
      };
      try {
        await api("POST", "/api/reports", {
          text: $("report-text").value,
          kind: $("report-kind").value,
          diagnostics,
          class_id: this.classId,
        });
        dialog.close();
        $("report-text").value = "";
        if ($("room").hidden) {
          $("ended-report").hidden = true; // sent from the end screen: said there, once
          label($("ended-status"), "report.sent");
        } else {
          this.announce("report.sent");
        }
      } catch (error) {
        alert.textContent = errorText(error);
      }
    });
  }
}
