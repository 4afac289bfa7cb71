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

function studentControls(session, p) {
  const moderate = (name, fields = {}) => session.moderate(name, { participant_id: p.id, ...fields });
  const held = new Set(p.held || []);
  const screen = [...session.tracks.values()].some((tr) => tr.participant_id === p.id && tr.source === "screen");
  return el("div", { className: "controls" }, [
    held.has("microphone")
      ? action("people.allow_microphone", p.name, () => moderate("allow", { source: "microphone" }))
      : action("people.mute", p.name, () => moderate("mute"), p.microphone ? "secondary small" : "secondary small quiet"),
    held.has("camera")
      ? action("people.allow_camera", p.name, () => moderate("allow", { source: "camera" }))
      : action("people.camera_off", p.name, () => moderate("camera_off"), p.camera ? "secondary small" : "secondary small quiet"),
    screen ? action("people.stop_screen", p.name, () => moderate("stop_screen")) : null,
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
  document.getElementById("end-class").addEventListener("click", async () => {
    if (await confirmDialog("room.end_confirm", "room.end")) session.moderate("end");
  });
}

export function renderClassState(state) {
  for (const box of document.querySelectorAll("[data-lock]")) box.checked = state.locks[box.dataset.lock];
  document.getElementById("use-lobby").checked = state.lobby;
  document.getElementById("lock-class").checked = state.locked;
}
