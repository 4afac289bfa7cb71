import { api, bindForm, boot } from "../shell.js";

await boot();
const token = location.hash.slice(1);
history.replaceState(null, "", location.pathname);
bindForm(document.getElementById("invitation"), async (values) => {
  await api("POST", "/api/invitation", { token, name: values.name, password: values.password });
  location.assign("/");
});
