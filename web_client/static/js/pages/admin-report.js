// One problem report: who sent it and from where, what they wrote, what the page measured; and
// the answer, which marks it handled (and which its reporter reads, if they were signed in).
import { api, errorText } from "../api.js";
import { $, el } from "../dom.js";
import { label } from "../i18n.js";
import { bindForm } from "../shell.js";
import { bootConsole, shortDate } from "../console.js";

const id = location.pathname.split("/").pop();

function show(report) {
  $("report").hidden = false;
  $("report-when").textContent = shortDate(report.created_at);
  label($("report-kind"), `report.kind.${report.kind}`);
  label($("report-state"), `console.state.${report.state}`);
  $("report-class").textContent = report.class_title || report.class_id || "—";
  if (report.reporter) {
    const { name, email, role } = report.reporter;
    $("report-reporter").replaceChildren(
      el("span", { text: `${name} <${email}>` }),
      " · ",
      el("span", { i18n: `console.role.${role}` }),
    );
  } else {
    label($("report-reporter"), "console.anonymous");
  }
  $("report-text").textContent = report.text;
  $("report-diagnostics").textContent = JSON.stringify(report.diagnostics, null, 2);
  label($("answer-hint"), report.reporter ? "console.answer_hint" : "console.answer_anonymous");
  $("report-handled").hidden = report.state !== "handled";
  if (report.state === "handled") {
    label($("report-handled"), "console.handled_by", { when: shortDate(report.handled_at), who: report.handled_by || "—" });
    $("answer-text").value = report.answer || "";
  }
}

await bootConsole();
label($("report-title"), "console.report_title", { id });
document.title = $("report-title").textContent;
try {
  show(await api("GET", `/api/admin/reports/${encodeURIComponent(id)}`));
} catch (error) {
  $("report-error").textContent = errorText(error);
}
bindForm($("answer-form"), async (values) => {
  show(await api("PUT", `/api/admin/reports/${encodeURIComponent(id)}/answer`, { answer: values.answer }));
  label($("announcer"), "console.answered");
});
