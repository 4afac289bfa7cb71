import { api, errorText } from "../api.js";
import { label } from "../i18n.js";
import { boot, linkSecret } from "../shell.js";

await boot();
const token = linkSecret();
const status = document.getElementById("verify-status");
try {
  await api("POST", "/api/verify", { token });
  label(status, "verify.done");
  document.getElementById("verify-next").hidden = false;
} catch (error) {
  delete status.dataset.i18n;
  status.textContent = errorText(error);
  status.classList.add("error");
}
