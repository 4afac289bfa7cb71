import { confirmDialog } from "../dom.js";
import { api, bindForm, boot, done } from "../shell.js";

const { account } = await boot();
if (!account) location.replace(`/login?next=${encodeURIComponent("/account")}`);
else {
  document.getElementById("account-name").textContent = account.name;
  document.getElementById("account-email").textContent = account.email;
}
document.getElementById("logout").addEventListener("click", async () => {
  await api("POST", "/api/logout");
  location.assign("/");
});
const form = document.getElementById("delete-account");
bindForm(form, async (values) => {
  if (!(await confirmDialog("account.delete_confirm", "account.delete"))) return;
  await api("DELETE", "/api/account", { password: values.password });
  done(form, "account.deleted");
});
