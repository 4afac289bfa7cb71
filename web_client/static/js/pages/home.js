import { api } from "../api.js";
import { el } from "../dom.js";
import { formatDateTime } from "../i18n.js";
import { showMyReports } from "../my-reports.js";
import { boot } from "../shell.js";
import { showWelcome } from "../welcome.js";

const { account } = await boot();
document.getElementById("home-guest").hidden = Boolean(account);
await showWelcome();
if (account) {
  if (account.role !== "student") location.replace("/classes");
  document.getElementById("home-student").hidden = false;
  const { classes } = await api("GET", "/api/my/classes");
  document.getElementById("my-classes-empty").hidden = classes.length > 0;
  document.getElementById("my-classes").replaceChildren(
    ...classes.map((c) =>
      el("li", { className: "card" }, [
        el("h3", { text: c.title }),
        c.starts_at ? el("p", { text: formatDateTime(c.starts_at) }) : null,
        c.live ? el("p", { className: "badge live", i18n: "classes.live" }) : null,
        el("a", { className: "button", i18n: "home.join", attrs: { href: new URL(c.link).pathname } }),
      ]),
    ),
  );
  await showMyReports();
}
