import { api, bindForm, boot, done } from "../shell.js";

await boot();
const form = document.getElementById("signup");
bindForm(form, async (values) => {
  await api("POST", "/api/signup", values);
  done(form, "signup.sent", { email: values.email });
});
