// What the administration console's pages share: the section links, short dates, table cells.
import { el } from "./dom.js";
import { language } from "./i18n.js";
import { boot } from "./shell.js";

const SECTIONS = [
  ["/admin", "console.home"],
  ["/admin/reports", "console.reports"],
  ["/admin/accounts", "console.accounts"],
  ["/admin/classes", "console.classes"],
  ["/admin/settings", "console.settings"],
  ["/admin/audit", "console.audit"],
];

function current(href) {
  const here = location.pathname;
  return href === "/admin" ? here === href : here === href || here.startsWith(`${href}/`);
}

/** Boot the page, then the console's own navigation; the server already sent others away. */
export async function bootConsole() {
  const state = await boot();
  if (!state.account) location.replace(`/login?next=${encodeURIComponent(location.pathname)}`);
  else if (state.account.role !== "admin") location.replace("/");
  document.getElementById("console-nav").replaceChildren(
    el(
      "ul",
      {},
      SECTIONS.map(([href, key]) =>
        el("li", {}, [el("a", { i18n: key, attrs: { href, "aria-current": current(href) ? "page" : null } })]),
      ),
    ),
  );
  return state;
}

export function shortDate(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(language, { dateStyle: "short", timeStyle: "short" }).format(new Date(iso));
}

export function cell(...children) {
  return el("td", {}, children);
}

/**
 * A page of a listing: its rows replace the table's, or follow them (`more`); the "none" and
 * "more" notes follow what is shown and whether the server has more (`next`).
 */
export function showPage(body, rows, more, next, empty, further) {
  if (more) body.append(...rows);
  else body.replaceChildren(...rows);
  empty.hidden = body.children.length > 0;
  further.hidden = next === null;
}

/** A status message said once, for screen readers and sighted users alike. */
export function say(element, key, vars) {
  element.hidden = false;
  element.replaceChildren(el("span", { i18n: key, vars }));
}
