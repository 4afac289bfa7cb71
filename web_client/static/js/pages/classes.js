// The teacher's dashboard: classes, their access mode, link and roster.
import { api } from "../api.js";
import { $, confirmDialog, el } from "../dom.js";
import { formatDateTime, label, t } from "../i18n.js";
import { showMyReports } from "../my-reports.js";
import { bindForm, boot } from "../shell.js";

const { account } = await boot();
if (!account) location.replace(`/login?next=${encodeURIComponent("/classes")}`);
else if (account.role === "student") location.replace("/");

let editing = null; // the class being edited, or null for a new one
let rosterOf = null;

function announce(key) {
  $("announcer").textContent = t(key);
}

function lines(text) {
  return text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
}

/** A datetime-local value is local time without a zone; the API keeps UTC. */
function toLocalInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = el("textarea", { text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  announce("classes.link_copied");
}

function card(c) {
  const path = new URL(c.link).pathname;
  const linkId = `link-${c.id}`;
  return el("li", { className: "card class", attrs: { "data-class": c.id } }, [
    el("h2", { text: c.title }),
    el("p", { className: "tags" }, [
      el("span", { className: "tag", i18n: `classes.access.${c.access}` }),
      c.lobby ? el("span", { className: "tag", i18n: "classes.with_lobby" }) : null,
      c.live ? el("span", { className: "tag live", i18n: "classes.live" }) : null,
      c.owner ? null : el("span", { className: "tag", i18n: "classes.co_taught" }),
    ]),
    c.starts_at
      ? el("p", { i18n: "classes.when", vars: { when: formatDateTime(c.starts_at), minutes: c.duration_minutes || "—" } })
      : null,
    el("label", { i18n: "classes.link", attrs: { for: linkId } }),
    el("div", { className: "link-row" }, [
      el("input", { attrs: { id: linkId, type: "text", readonly: true, value: c.link, "data-role": "link" } }),
      el("button", { className: "secondary", i18n: "classes.copy_link", attrs: { type: "button" }, on: { click: () => copy(c.link) } }),
      el("button", {
        className: "secondary",
        i18n: "classes.new_link",
        attrs: { type: "button" },
        on: {
          click: async () => {
            if (!(await confirmDialog("classes.new_link_confirm", "classes.new_link"))) return;
            await api("POST", `/api/classes/${c.id}/link`);
            await refresh();
            announce("classes.link_changed");
          },
        },
      }),
    ]),
    el("p", { className: "hint", i18n: "classes.link_expires", vars: { when: formatDateTime(c.link_expires_at) } }),
    el("div", { className: "actions" }, [
      el("a", { className: "button", i18n: "classes.open", attrs: { href: path } }),
      el("button", { className: "secondary", i18n: "common.edit", attrs: { type: "button" }, on: { click: () => edit(c) } }),
      c.access === "account"
        ? el("button", { className: "secondary", i18n: "classes.students", attrs: { type: "button" }, on: { click: () => roster(c) } })
        : null,
      c.owner
        ? el("button", {
            className: "danger",
            i18n: "common.delete",
            attrs: { type: "button" },
            on: {
              click: async () => {
                if (!(await confirmDialog("classes.delete_confirm", "common.delete", { title: c.title }))) return;
                await api("DELETE", `/api/classes/${c.id}`);
                await refresh();
              },
            },
          })
        : null,
    ]),
  ]);
}

async function refresh() {
  const { classes } = await api("GET", "/api/classes");
  $("classes-empty").hidden = classes.length > 0;
  $("class-list").replaceChildren(...classes.map(card));
}

function edit(c) {
  editing = c;
  const form = $("class-form");
  form.reset();
  form.querySelector("[role=alert]").textContent = "";
  label($("class-dialog-title"), c ? "classes.edit" : "classes.new");
  if (c) {
    $("class-title").value = c.title;
    form.querySelector(`[name=access][value=${c.access}]`).checked = true;
    $("class-lobby").checked = c.lobby;
    $("class-starts").value = toLocalInput(c.starts_at);
    $("class-duration").value = c.duration_minutes || "";
    $("class-co-teachers").value = c.co_teachers.join("\n");
    $("class-co-teachers").disabled = !c.owner;
  } else {
    $("class-co-teachers").disabled = false;
  }
  $("class-dialog").showModal();
}

// New classes: the lobby follows the access mode until the teacher decides.
for (const radio of document.querySelectorAll("[name=access]")) {
  radio.addEventListener("change", () => {
    if (!editing) $("class-lobby").checked = radio.value === "link";
  });
}

bindForm($("class-form"), async (values) => {
  const body = {
    title: values.title.trim(),
    access: values.access,
    lobby: $("class-lobby").checked,
    starts_at: values.starts_at ? new Date(values.starts_at).toISOString() : null,
    duration_minutes: values.duration_minutes ? Number(values.duration_minutes) : null,
    co_teachers: lines(values.co_teachers || ""),
  };
  if (editing) await api("PUT", `/api/classes/${editing.id}`, body);
  else await api("POST", "/api/classes", body);
  $("class-dialog").close();
  await refresh();
  announce(editing ? "classes.saved" : "classes.created");
});

async function roster(c) {
  rosterOf = c;
  const { roster: entries } = await api("GET", `/api/classes/${c.id}/roster`);
  $("roster-emails").value = entries.map((e) => e.email).join("\n");
  $("roster-status").textContent = "";
  $("roster-form").querySelector("[role=alert]").textContent = "";
  $("roster-dialog").showModal();
}

bindForm($("roster-form"), async (values) => {
  const result = await api("PUT", `/api/classes/${rosterOf.id}/roster`, { emails: lines(values.emails) });
  const unsent = result.invitations_unsent;
  $("roster-status").replaceChildren(
    el("span", { i18n: "roster.saved", vars: { count: result.roster.length } }),
    " ",
    unsent ? el("span", { i18n: "roster.unsent", vars: { count: unsent } }) : el("span", { i18n: "roster.sent" }),
  );
});

for (const dialog of [$("class-dialog"), $("roster-dialog")]) {
  dialog.querySelector("button[value=cancel]").addEventListener("click", () => dialog.close());
}
$("new-class").addEventListener("click", () => edit(null));
if (account) await Promise.all([refresh(), showMyReports()]);
