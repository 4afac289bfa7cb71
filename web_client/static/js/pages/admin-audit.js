// The audit log: who did what from the console, on what, and when; latest first.
import { api } from "../api.js";
import { $, el } from "../dom.js";
import { bootConsole, cell, shortDate, showPage } from "../console.js";

let next = null;

const SETTINGS = { teacher_domains: "console.domains", welcome_message: "console.welcome" };

/** What the action was on: an address, a class id, a report (linked), a setting (by its name on screen). */
function target(entry) {
  if (entry.action === "report_answered") {
    const href = `/admin/reports/${encodeURIComponent(entry.target)}`;
    return el("a", { i18n: "console.report_title", vars: { id: entry.target }, attrs: { href } });
  }
  if (entry.action === "setting_changed" && SETTINGS[entry.target]) return el("span", { i18n: SETTINGS[entry.target] });
  return entry.target;
}

function row(entry) {
  return el("tr", {}, [
    cell(shortDate(entry.at)),
    cell(entry.actor),
    cell(el("span", { i18n: `console.action.${entry.action}` })),
    cell(target(entry)),
  ]);
}

async function load(more = false) {
  const answer = await api("GET", `/api/admin/audit${more && next ? `?before=${next}` : ""}`);
  next = answer.next;
  showPage($("audit-rows"), answer.entries.map(row), more, next, $("audit-empty"), $("audit-more"));
}

await bootConsole();
$("audit-more").addEventListener("click", () => load(true));
await load();
