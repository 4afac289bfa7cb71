// What every page shares: language, header with the account's links, footer, form handling.
import { api, ApiError, errorText, session } from "./api.js";
import { el } from "./dom.js";
import { label, loadLanguage, otherLanguage, setLanguage } from "./i18n.js";

function header(account) {
  const links = [];
  if (account?.role === "teacher" || account?.role === "admin") links.push(["/classes", "nav.classes"]);
  if (account?.role === "admin") links.push(["/admin", "nav.console"]); // only admins see the console
  if (account) links.push(["/account", "nav.account"]);
  else {
    // Back to this page once signed in (a class link, typically).
    const here = ["/", "/login", "/signup"].includes(location.pathname) ? "" : `?next=${encodeURIComponent(location.pathname)}`;
    links.push([`/login${here}`, "nav.login"]);
    // A class page is where pupils land: an invitation to open a teacher's account is not for them.
    if (!location.pathname.startsWith("/c/")) links.push(["/signup", "nav.signup"]);
  }
  links.push(["/help", "nav.help"]);
  const switcher = el("button", {
    className: "link",
    attrs: { type: "button", id: "language" },
    on: { click: () => setLanguage(otherLanguage()) },
  });
  const refresh = () => {
    label(switcher, "nav.other_language");
    switcher.lang = otherLanguage();
  };
  refresh();
  document.addEventListener("classe:language", refresh);
  return el("nav", { attrs: { "aria-label": "Classe" } }, [
    el("a", { className: "brand", i18n: "app.name", attrs: { href: "/" } }),
    el(
      "ul",
      {},
      links.map(([href, key]) => el("li", {}, [el("a", { i18n: key, attrs: { href } })])),
    ),
    switcher,
  ]);
}

function footer() {
  return el("ul", {}, [
    ["/privacy", "nav.privacy"],
    ["/help/faq", "nav.faq"],
    ["/report", "nav.report"],
  ].map(([href, key]) => el("li", {}, [el("a", { i18n: key, attrs: { href } })])));
}

/** Load the language and the session, draw the header and footer; the page's script goes on. */
export async function boot() {
  await loadLanguage();
  const state = await session();
  document.getElementById("shell")?.replaceChildren(header(state.account));
  document.getElementById("footer")?.replaceChildren(footer());
  return state;
}

/**
 * The secret of a mailed link (after '#', so that it never reaches a server log), taken out of
 * the address bar at once.
 */
export function linkSecret() {
  const secret = location.hash.slice(1);
  history.replaceState(null, "", location.pathname);
  return secret;
}

/**
 * Where to go after signing in: a page of this origin only, so that a crafted link cannot send
 * people away. The browser's own parser decides (it reads "/\host" and "/<tab>/host" as
 * "//host"), not a test of the string's first characters.
 */
export function nextPath(fallback) {
  const next = new URLSearchParams(location.search).get("next");
  if (!next) return fallback;
  let target;
  try {
    target = new URL(next, location.origin);
  } catch {
    return fallback;
  }
  if (target.origin !== location.origin) return fallback;
  return target.pathname + target.search + target.hash;
}

/**
 * Submit a form through `action(values)`; its errors go to the form's alert element. The
 * button stays disabled while the request runs, so a double click sends one request.
 */
export function bindForm(form, action) {
  const alert = form.querySelector("[role=alert]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (alert) alert.textContent = "";
    button.disabled = true;
    try {
      await action(Object.fromEntries(new FormData(form)));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (alert) alert.textContent = errorText(error);
      form.querySelector("[aria-invalid=true], input, textarea")?.focus();
    } finally {
      button.disabled = false;
    }
  });
}

/** Swap a form for a message once it has done its work; focus moves to the message for screen readers. */
export function done(form, key, vars) {
  const message = el("p", { className: "notice", i18n: key, vars, attrs: { role: "status", tabindex: "-1" } });
  form.replaceWith(message);
  message.focus();
}

export { api };
