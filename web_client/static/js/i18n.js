// Message catalogues: French by default, English on request. The markup holds no text: elements
// name a key (data-i18n, data-i18n-attr) and are filled here, so a language switch re-fills them.
const LANGUAGES = ["fr", "en"];
const STORAGE_KEY = "classe.lang";
let catalogue = {};
export let language = "fr";

/**
 * The text of a key before its placeholders are filled. An entry with plural forms
 * ({"one": …, "other": …}) is chosen by the language's rules for `vars.count` (in French 0 and
 * 1 are singular, in English only 1); a form the catalogue lacks falls back to "other".
 */
function template(key, vars) {
  if (!Object.hasOwn(catalogue, key)) return key;
  const entry = catalogue[key];
  if (typeof entry === "string") return entry;
  const form = new Intl.PluralRules(language).select(Number(vars.count));
  return entry[form] ?? entry.other;
}

export function t(key, vars = {}) {
  return template(key, vars).replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
}

/**
 * Fill an element with a key's text; each value put in is a <bdi>, so that a name written
 * right to left (or carrying a direction override) cannot reorder the sentence around it.
 */
function fill(element, key, vars) {
  const parts = template(key, vars).split(/(\{\w+\})/);
  element.replaceChildren(
    ...parts.filter(Boolean).map((part) => {
      const name = /^\{(\w+)\}$/.exec(part)?.[1];
      if (!name || !(name in vars)) return part;
      const isolated = document.createElement("bdi");
      isolated.textContent = String(vars[name]);
      return isolated;
    }),
  );
}

/** A structured entry of the catalogue (the help pages' sections), as it is. */
export function entry(key) {
  return catalogue[key];
}

export function has(key) {
  return Object.hasOwn(catalogue, key);
}

function varsOf(element) {
  return element.dataset.i18nVars ? JSON.parse(element.dataset.i18nVars) : {};
}

export function translate(root = document) {
  const scope = root.querySelectorAll ? root : document;
  const elements = [...scope.querySelectorAll("[data-i18n], [data-i18n-attr]")];
  if (root instanceof Element) elements.push(root);
  for (const element of elements) {
    if (element.dataset.i18n) fill(element, element.dataset.i18n, varsOf(element));
    if (element.dataset.i18nAttr) {
      for (const pair of element.dataset.i18nAttr.split(",")) {
        const [attribute, key] = pair.split("=").map((s) => s.trim());
        element.setAttribute(attribute, t(key, varsOf(element)));
      }
    }
  }
}

/** Set an element's text by key; kept on the element so that a language switch updates it. */
export function label(element, key, vars) {
  element.dataset.i18n = key;
  if (vars) element.dataset.i18nVars = JSON.stringify(vars);
  else delete element.dataset.i18nVars;
  fill(element, key, vars || {});
  return element;
}

async function load(wanted) {
  const response = await fetch(`/static/i18n/${wanted}.json`);
  catalogue = await response.json();
  language = wanted;
  document.documentElement.lang = wanted;
  translate();
  document.documentElement.classList.add("i18n-ready");
}

export async function loadLanguage() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (LANGUAGES.includes(asked)) localStorage.setItem(STORAGE_KEY, asked);
  const stored = localStorage.getItem(STORAGE_KEY);
  await load(LANGUAGES.includes(stored) ? stored : "fr");
}

export async function setLanguage(wanted) {
  localStorage.setItem(STORAGE_KEY, wanted);
  await load(wanted);
  document.dispatchEvent(new Event("classe:language"));
}

export function otherLanguage() {
  return language === "fr" ? "en" : "fr";
}

export function formatTime(ms) {
  return new Intl.DateTimeFormat(language, { hour: "2-digit", minute: "2-digit" }).format(new Date(ms));
}

export function formatDateTime(iso) {
  return new Intl.DateTimeFormat(language, { dateStyle: "full", timeStyle: "short" }).format(new Date(iso));
}
