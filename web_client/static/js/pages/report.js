import { browserDiagnostics } from "../diagnostics.js";
import { api, bindForm, boot, done } from "../shell.js";

await boot();
const form = document.getElementById("report");
bindForm(form, async (values) => {
  await api("POST", "/api/reports", { text: values.text, kind: values.kind, diagnostics: browserDiagnostics() });
  done(form, "report.sent");
});
