// The settings safe to change live: the teacher domain allow-list and the welcome message,
// stored for every server; "back to the configuration file's value" forgets the console's.
import { api } from "../api.js";
import { $ } from "../dom.js";
import { label } from "../i18n.js";
import { bindForm } from "../shell.js";
import { bootConsole, say } from "../console.js";

function show(settings) {
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
bindForm($("settings"), (values) =>
  save({
    teacher_domains: values.teacher_domains.split(/[\s,;]+/).filter(Boolean),
    welcome_message: values.welcome_message,
  }),
);
$("reset-domains").addEventListener("click", () => save({ teacher_domains: null }));
$("reset-welcome").addEventListener("click", () => save({ welcome_message: null }));
