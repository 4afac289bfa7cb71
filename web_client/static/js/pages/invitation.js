import { api, bindForm, boot, linkSecret } from "../shell.js";

await boot();
const token = linkSecret();
bindForm(document.getElementById("invitation"), async (values) => {
  await api("POST", "/api/invitation", { token, name: values.name, password: values.password });
  location.assign("/");
});
