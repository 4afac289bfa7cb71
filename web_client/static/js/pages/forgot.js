import { api, bindForm, boot, done } from "../shell.js";

await boot();
const form = document.getElementById("forgot");
bindForm(form, async (values) => {
  await api("POST", "/api/password/forgot", values);
  done(form, "forgot.sent");
});
