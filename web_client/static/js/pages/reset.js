import { api, bindForm, boot, done } from "../shell.js";

await boot();
// The secret comes after '#', so it never reaches a server log; forget it from the address bar.
const token = location.hash.slice(1);
history.replaceState(null, "", location.pathname);
const form = document.getElementById("reset");
bindForm(form, async (values) => {
  await api("POST", "/api/password/reset", { token, password: values.password });
  done(form, "reset.done");
});
