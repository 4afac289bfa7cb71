import { api, bindForm, boot, nextPath } from "../shell.js";
import { showWelcome } from "../welcome.js";

const state = await boot();
if (state.account) location.replace(nextPath(state.account.role === "student" ? "/" : "/classes"));
bindForm(document.getElementById("login"), async (values) => {
  const { account } = await api("POST", "/api/login", values);
  location.assign(nextPath(account.role === "student" ? "/" : "/classes"));
});
await showWelcome();
