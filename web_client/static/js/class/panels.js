// The side panels: who is here (with a teacher's controls on each student), the lobby, the chat,
// and the class-wide controls. Each re-renders from the session's state.
import { confirmDialog, el } from "../dom.js";
import { formatTime, t } from "../i18n.js";

function action(key, name, onClick, className = "secondary small") {
  return el("button", {
    className,
    i18n: key,
    attrs: { type: "button", "aria-label": t(`${key}_of`, { name }), "data-i18n-attr": `aria-label=${key}_of` },
    vars: { name },
    on: { click: onClick },
  });
}

/** Stop a student's screen share (which also withdraws their permission to share). */
export function stopScreenButton(session, p) {
  return action("people.stop_screen", p.name, () => session.moderate("stop_screen", { participant_id: p.id }), "danger small");
}

/**
 * Screen sharing for one student: stop a share; while sharing is locked for students, allow this
 * one, or withdraw the permission given.
 */
function screenControl(session, p, sharing) {
  if (sharing) return stopScreenButton(session, p);
  if (!session.classState?.locks.screen) return null; // every student may share
  const moderate = (name, fields = {}) => session.moderate(name, { participant_id: p.id, ...fields });
  return p.screen_allowed
    ? action("people.revoke_screen", p.name, () => moderate("stop_screen"))
    : action("people.allow_screen", p.name, () => moderate("allow", { source: "screen" }));
}

function studentControls(session, p) {
  const moderate = (name, fields = {}) => session.moderate(name, { participant_id: p.id, ...fields });
  const held = new Set(p.held || []);
  const sharing = [...session.tracks.values()].some((tr) => tr.participant_id === p.id && tr.source === "screen");
  return el("div", { className: "controls" }, [
    held.has("microphone")
      ? action("people.allow_microphone", p.name, () => moderate("allow", { source: "microphone" }))
      : action("people.mute", p.name, () => moderate("mute"), p.microphone ? "secondary small" : "secondary small quiet"),
    held.has("camera")
      ? action("people.allow_camera", p.name, () => moderate("allow", { source: "camera" }))
      : action("people.camera_off", p.name, () => moderate("camera_off"), p.camera ? "secondary small" : "secondary small quiet"),
    screenControl(session, p, sharing),
    action("people.to_lobby", p.name, () => moderate("to_lobby")),
    action("people.remove", p.name, async () => {
      if (await confirmDialog("people.remove_confirm", "people.remove", { name: p.name })) moderate("remove");
    }, "danger small"),
  ]);
}

export function renderPeople(session, list) {
  const me = session.me;
  const teacher = me.role === "teacher";
  const people = [...session.participants.values()].sort(
    (a, b) => (b.role === "teacher") - (a.role === "teacher") || b.hand - a.hand || a.name.localeCompare(b.name),
  );
  list.replaceChildren(
    ...people.map((p) =>
      el("li", { attrs: { "data-participant": p.id } }, [
        el("span", { className: "name", i18n: p.id === me.id ? "room.you" : "room.name", vars: { name: p.name } }),
        p.role === "teacher" ? el("span", { className: "role", i18n: "room.teacher_badge" }) : null,
        p.hand ? el("span", { className: "tag hand", i18n: "people.hand_raised" }) : null,
        p.microphone ? null : el("span", { className: "tag", i18n: "people.tag_microphone_off" }),
        p.camera ? null : el("span", { className: "tag", i18n: "people.tag_camera_off" }),
        p.role === "student" && p.screen_allowed && session.classState?.locks.screen
          ? el("span", { className: "tag", i18n: "people.tag_screen_allowed" })
          : null,
        teacher && p.id !== me.id && p.media === false ? el("span", { className: "tag", i18n: "people.tag_no_media" }) : null,
        teacher && p.role === "student" ? studentControls(session, p) : null,
      ]),
    ),
  );
}

export function renderLobby(session, list) {
  document.getElementById("lobby-empty").hidden = session.lobby.length > 0;
  for (const id of ["admit-all", "refuse-all"]) document.getElementById(id).disabled = !session.lobby.length;
  list.replaceChildren(
    ...session.lobby.map((w) =>
      el("li", { attrs: { "data-participant": w.id } }, [
        el("span", { className: "name", text: w.name, attrs: { dir: "auto" } }),
        el("div", { className: "controls" }, [
          action("lobby.admit", w.name, () => session.moderate("admit", { participant_id: w.id }), "small"),
          action("lobby.refuse", w.name, () => session.moderate("refuse", { participant_id: w.id })),
        ]),
      ]),
    ),
  );
}

export function chatItem(message, me) {
  return el("li", { className: message.participant_id === me.id ? "mine" : "" }, [
    el("span", { className: "meta" }, [
      el("b", { text: message.name, attrs: { dir: "auto" } }),
      el("time", { text: formatTime(message.at), attrs: { datetime: new Date(message.at).toISOString() } }),
    ]),
    el("span", { className: "text", text: message.text, attrs: { dir: "auto" } }),
  ]);
}

export function bindClassControls(session) {
  document.getElementById("mute-all").addEventListener("click", () => session.moderate("mute", { all: true }));
  document.getElementById("cameras-off").addEventListener("click", () => session.moderate("camera_off", { all: true }));
  document.getElementById("lower-hands").addEventListener("click", () => session.moderate("lower_hands"));
  for (const box of document.querySelectorAll("[data-lock]")) {
    box.addEventListener("change", () => session.moderate("lock", { locks: { [box.dataset.lock]: box.checked } }));
  }
  document.getElementById("use-lobby").addEventListener("change", (e) => session.moderate("lobby", { value: e.target.checked }));
  document.getElementById("lock-class").addEventListener("change", (e) => session.moderate("lock_class", { value: e.target.checked }));
  document.getElementById("admit-all").addEventListener("click", () => session.moderate("admit", { all: true }));
  document.getElementById("refuse-all").addEventListener("click", () => session.moderate("refuse", { all: true }));
  // A flooded lobby: empty it and keep it shut in one click (refuse all, then lock the lobby).
  document.getElementById("refuse-all-lock").addEventListener("click", () => {
    session.moderate("refuse", { all: true });
    session.moderate("lock_lobby", { value: true });
  });
  document.getElementById("reopen-lobby").addEventListener("click", () => session.moderate("lock_lobby", { value: false }));
  document.getElementById("end-class").addEventListener("click", async () => {
    if (await confirmDialog("room.end_confirm", "room.end")) session.moderate("end");
  });
}

export function renderClassState(state) {
  for (const box of document.querySelectorAll("[data-lock]")) box.checked = state.locks[box.dataset.lock];
  document.getElementById("use-lobby").checked = state.lobby;
  document.getElementById("lock-class").checked = state.locked;
  document.getElementById("lobby-locked").hidden = !state.lobby_locked;
  document.getElementById("refuse-all-lock").hidden = Boolean(state.lobby_locked);
}
