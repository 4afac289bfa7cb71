// The class page (/c/<code>): before joining, waiting, the room, and why it ended.
import { api, ApiError, errorText } from "../api.js";
import { $ } from "../dom.js";
import { has, label } from "../i18n.js";
import { open } from "../class/devices.js";
import { ClassSession } from "../class/session.js";
import { PreJoin } from "../class/prejoin.js";
import { RoomView } from "../class/room.js";
import { boot } from "../shell.js";

const SCREENS = ["loading", "prejoin", "waiting", "room", "ended"];
const code = decodeURIComponent(location.pathname.split("/").pop());
const prejoin = new PreJoin();

function showScreen(name) {
  for (const screen of SCREENS) $(screen).hidden = screen !== name;
  document.body.classList.toggle("in-room", name === "room");
  const heading = $(name).querySelector("h1[tabindex]");
  heading?.focus();
}

/** Why the visit ended; a teacher reads words of their own where a pupil's would not fit. */
function ended(code, detail, role) {
  const known = [
    "left",
    "class_ended",
    "no_teacher",
    "removed",
    "refused",
    "lobby_locked",
    "lobby_full",
    "class_locked",
    "class_full",
    "replaced",
    "join_timeout",
    "unknown_link",
    "not_on_roster",
    "sign_in_required",
    "class_suspended",
    "network_blocked",
  ];
  const key = known.includes(code) ? code : "other";
  label($("ended-title"), `ended.${key}.title`);
  if (detail instanceof ApiError && key === "other") {
    delete $("ended-text").dataset.i18n;
    $("ended-text").textContent = errorText(detail);
  } else {
    label($("ended-text"), role === "teacher" && has(`ended.${key}.text_teacher`) ? `ended.${key}.text_teacher` : `ended.${key}.text`);
  }
  $("rejoin").hidden = !["left", "replaced", "join_timeout", "lobby_full", "network_blocked", "other"].includes(key);
  // A blocked network is reported from here, with what the page learnt of the connection.
  $("ended-report").hidden = key !== "network_blocked";
  $("ended-report-page").hidden = key === "network_blocked";
  showScreen("ended");
}

const { account } = await boot();
$("rejoin").addEventListener("click", () => location.reload());
const info = await api("GET", `/api/join/${encodeURIComponent(code)}`).catch((error) => {
  ended(error.code, error);
  return null;
});
if (info) showPrejoin(info);

function showPrejoin(info) {
  document.title = `${info.title} · Classe`;
  $("prejoin-title").textContent = info.title;
  label($("prejoin-access"), info.access === "account" ? "prejoin.account_mode" : "prejoin.link_mode");
  $("join-name").value = localStorage.getItem("classe.name") || account?.name || "";
  if (account && account.role !== "student") {
    // A teacher joins under the account's name: the pupils' hint ("as your teacher knows them") is not for them.
    $("join-name").value = account.name;
    $("join-name").readOnly = true;
    label($("join-name-hint"), "prejoin.name_hint_teacher");
  }
  if (info.access === "account" && !account) {
    $("signin-needed").hidden = false;
    $("signin-link").href = `/login?next=${encodeURIComponent(location.pathname)}`;
    $("join-form").hidden = true;
  }
  showScreen("prejoin");
  prejoin.start();
}

$("join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const alert = $("join-form").querySelector("[role=alert]");
  const nameInput = $("join-name");
  const name = nameInput.value.trim();
  alert.textContent = "";
  let first;
  try {
    first = await api("POST", "/api/join", { code, name: name || null });
  } catch (error) {
    alert.textContent = errorText(error);
    nameInput.focus();
    return;
  }
  if (name) localStorage.setItem("classe.name", name);
  await join(first);
});

async function join(first) {
  const { tracks, enabled } = await prejoin.choices();
  let token = first;
  // The first token came with the click; each rejoin asks for a fresh one (they live two minutes),
  // and where the class is now: a class whose node stopped opens on another.
  const session = new ClassSession(async () => {
    const grant = token || (await api("POST", "/api/join", { code, name: first.name }));
    token = null;
    return grant;
  });
  session.wanted = { ...enabled };
  for (const source of ["microphone", "camera"]) {
    if (tracks[source]) session.local.set(source, { track: tracks[source], transceiver: null, kind: tracks[source].kind });
  }
  session.reopen = async (source) => (await open(source, localStorage.getItem(`classe.${source}`))).track;
  const room = new RoomView(session, { title: first.title, classId: first.class_id });
  session.addEventListener("waiting", (event) => {
    // Back after a lost link or a restart: the pupil stays in the room while a teacher comes back or lets them in.
    if (event.detail.rejoin && !$("room").hidden) {
      room.waiting(event.detail.reason);
      return;
    }
    const reason = event.detail.reason === "lobby" ? "lobby" : "not_started";
    label($("waiting-title"), `waiting.${reason}.title`);
    label($("waiting-text"), `waiting.${reason}.text`);
    showScreen("waiting");
  });
  session.addEventListener("joined", (event) => {
    if (!event.detail.again || $("room").hidden) showScreen("room");
  });
  session.addEventListener("ended", (event) => {
    room.stop();
    ended(event.detail.code, event.detail.detail, session.me?.role || first.role);
  });
  $("waiting-leave").addEventListener("click", () => session.leave());
  window.addEventListener("pagehide", () => session.leave());
  session.start();
}
