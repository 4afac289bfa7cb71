// "Mes signalements": a signed-in account's own problem reports, and the team's answers.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { formatDateTime } from "./i18n.js";

function item(report) {
  return el("li", { className: "card" }, [
    el("p", { className: "tags" }, [
      el("span", { className: "tag", i18n: `report.kind.${report.kind}` }),
      el("span", { className: "hint", i18n: "my_reports.sent", vars: { when: formatDateTime(report.created_at) } }),
    ]),
    el("p", { text: report.excerpt }),
    report.answer
      ? el("div", { className: "notice" }, [
          el("p", { className: "answer-label", i18n: "my_reports.answer", vars: { when: formatDateTime(report.handled_at) } }),
          el("p", { className: "paragraphs", text: report.answer }),
        ])
      : el("p", { className: "hint", i18n: "my_reports.new" }),
  ]);
}

/** Fill the page's section (shown only when the account sent reports). */
export async function showMyReports() {
  const { reports } = await api("GET", "/api/my/reports");
  $("my-reports").hidden = reports.length === 0;
  $("my-reports-list").replaceChildren(...reports.map(item));
}
