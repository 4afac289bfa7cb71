// Problem reports: filtered by state, subject and dates (kept in the address, to share or come
// back to), latest first, a page at a time.
import { api } from "../api.js";
import { $, el } from "../dom.js";
import { bindForm } from "../shell.js";
import { bootConsole, cell, shortDate, showPage } from "../console.js";

const FIELDS = ["state", "kind", "since", "until"];
let filter = {};
let next = null;

function row(report) {
  const reporter = report.reporter
    ? el("span", { text: `${report.reporter.name} <${report.reporter.email}>` })
    : el("span", { i18n: "console.anonymous" });
  return el("tr", { attrs: { "data-report": report.id } }, [
    cell(shortDate(report.created_at)),
    cell(el("span", { i18n: `report.kind.${report.kind}` })),
    cell(el("span", { className: `tag state-${report.state}`, i18n: `console.state.${report.state}` })),
    cell(report.class_title || report.class_id || "—"),
    cell(reporter),
    cell(
      el("span", { text: report.excerpt }),
      " ",
      el("a", { i18n: "console.read", vars: { id: report.id }, attrs: { href: `/admin/reports/${report.id}` } }),
    ),
  ]);
}

async function load(more = false) {
  const query = new URLSearchParams(Object.entries(filter).filter(([, value]) => value));
  if (more && next) query.set("before", next);
  const answer = await api("GET", `/api/admin/reports?${query}`);
  next = answer.next;
  showPage($("report-rows"), answer.reports.map(row), more, next, $("reports-empty"), $("reports-more"));
}

await bootConsole();
const form = $("report-filter");
const asked = new URLSearchParams(location.search);
for (const name of FIELDS) {
  form.elements[name].value = asked.get(name) || "";
  filter[name] = form.elements[name].value;
}
bindForm(form, async (values) => {
  filter = Object.fromEntries(FIELDS.map((name) => [name, values[name] || ""]));
  const query = new URLSearchParams(Object.entries(filter).filter(([, value]) => value));
  const search = query.toString();
  history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}`);
  await load();
});
$("reports-more").addEventListener("click", () => load(true));
await load();
