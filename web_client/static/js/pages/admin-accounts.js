// Accounts: found by name or address; suspended, restored, sent a new confirmation link, made
// administrator or deleted, each action confirmed first and written to the audit log.
import { api, ApiError, errorText } from "../api.js";
import { $, confirmDialog, el } from "../dom.js";
import { bindForm } from "../shell.js";
import { bootConsole, cell, say, shortDate } from "../console.js";

let search = { q: "", role: "" };
let me = null;

function state(account) {
  if (account.disabled) return el("span", { className: "tag", i18n: "console.disabled" });
  if (!account.verified) return el("span", { className: "tag", i18n: "console.unverified" });
  return el("span", { i18n: "console.active" });
}

/** One action button; `confirm` names the question to ask first, and its confirming button. */
function action(account, key, route, done, confirm, danger = false) {
  const name = account.name;
  return el("button", {
    className: danger ? "danger small" : "secondary small",
    i18n: key,
    vars: { name },
    attrs: { type: "button" },
    on: {
      click: async () => {
        if (confirm && !(await confirmDialog(confirm[0], confirm[1], { name }))) return;
        const [method, path] = route;
        try {
          await api(method, path);
        } catch (error) {
          if (!(error instanceof ApiError)) throw error;
          $("announcer").hidden = false;
          $("announcer").textContent = errorText(error);
          return;
        }
        await find();
        say($("announcer"), `console.done.${done}`);
      },
    },
  });
}

function actions(account) {
  if (account.id === me.id) return [];
  const base = `/api/admin/accounts/${account.id}`;
  return [
    account.disabled
      ? action(account, "console.enable", ["POST", `${base}/enable`], "account_enabled")
      : action(account, "console.disable", ["POST", `${base}/disable`], "account_disabled", [
          "console.disable_confirm",
          "console.disable_short",
        ]),
    account.verified ? null : action(account, "console.resend", ["POST", `${base}/verification`], "verification_resent"),
    account.role === "admin"
      ? null
      : action(account, "console.promote", ["POST", `${base}/promote`], "account_promoted", [
          "console.promote_confirm",
          "console.promote_short",
        ]),
    action(account, "console.delete", ["DELETE", base], "account_deleted", ["console.delete_confirm", "common.delete"], true),
  ];
}

function row(account) {
  return el("tr", { attrs: { "data-account": account.id } }, [
    cell(account.name),
    cell(account.email),
    cell(el("span", { i18n: `console.role.${account.role}` })),
    cell(state(account)),
    cell(shortDate(account.last_active_at)),
    el("td", { className: "row-actions" }, actions(account)),
  ]);
}

async function find() {
  const query = new URLSearchParams(Object.entries(search).filter(([, value]) => value));
  const answer = await api("GET", `/api/admin/accounts?${query}`);
  $("account-rows").replaceChildren(...answer.accounts.map(row));
  $("accounts-empty").hidden = answer.accounts.length > 0;
  $("accounts-more").hidden = !answer.more;
}

({ account: me } = await bootConsole());
bindForm($("account-search"), async (values) => {
  search = { q: values.q.trim(), role: values.role };
  $("announcer").hidden = true;
  await find();
});
await find();
