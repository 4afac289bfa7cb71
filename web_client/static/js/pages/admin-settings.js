// The settings safe to change live: the teacher domain allow-list and the welcome message,
// stored for every server; "back to the configuration file's value" forgets the console's.
import { api, ApiError, errorText } from "../api.js";
import { $ } from "../dom.js";
import { label } from "../i18n.js";
import { bindForm } from "../shell.js";
import { bootConsole, say } from "../console.js";

let shown = null; // the values in force, as last answered

function show(settings) {
  shown = settings;
  $("setting-domains").value = settings.teacher_domains.join("\n");
  $("setting-welcome").value = settings.welcome_message;
  const { teacher_domains: domains, welcome_message: welcome } = settings.defaults;
  label($("domains-default"), "console.default", { value: domains.join(", ") || "—" });
  label($("welcome-default"), "console.default", { value: welcome || "—" });
}

async function save(body) {
  show(await api("PUT", "/api/admin/settings", body));
  say($("announcer"), "console.settings_saved");
}

await bootConsole();
show(await api("GET", "/api/admin/settings"));
/** Only what was changed is sent: a setting left as it was keeps following the configuration file. */
bindForm($("settings"), (values) => {
  const body = {};
  const domains = values.teacher_domains.split(/[\s,;]+/).filter(Boolean);
  if (domains.join("\n") !== shown.teacher_domains.join("\n")) body.teacher_domains = domains;
  if (values.welcome_message !== shown.welcome_message) body.welcome_message = values.welcome_message;
  return save(body);
});
/** Back to the configuration file's value; a refusal is said where the form says its own. */
async function reset(body) {
  const alert = $("settings").querySelector("[role=alert]");
  alert.textContent = "";
  try {
    await save(body);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    alert.textContent = errorText(error);
  }
}

$("reset-domains").addEventListener("click", () => reset({ teacher_domains: null }));
$("reset-welcome").addEventListener("click", () => reset({ welcome_message: null }));
