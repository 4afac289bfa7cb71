import { api, bindForm, boot, done, linkSecret } from "../shell.js";

await boot();
const token = linkSecret();
const form = document.getElementById("reset");
bindForm(form, async (values) => {
  await api("POST", "/api/password/reset", { token, password: values.password });
  done(form, "reset.done");
});
