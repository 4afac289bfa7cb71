// The help pages and the privacy page: sections from the catalogue, so that they follow the language.
import { el } from "../dom.js";
import { entry, t } from "../i18n.js";
import { boot } from "../shell.js";

const article = document.getElementById("doc");
const name = article.dataset.doc;
const vars = article.dataset.vars ? JSON.parse(article.dataset.vars) : {};

function fill(text) {
  return text.replace(/\{(\w+)\}/g, (match, key) => (key in vars ? String(vars[key]) : match));
}

function render() {
  document.title = `${t(`${name}.title`)} · Classe`;
  const parts = [el("h1", { i18n: `${name}.title` })];
  for (const section of entry(name)) {
    if (section.q) {
      parts.push(el("details", {}, [el("summary", { text: section.q }), el("p", { text: fill(section.a) })]));
      continue;
    }
    if (section.title) parts.push(el("h2", { text: section.title }));
    for (const text of section.text || []) parts.push(el("p", { text: fill(text) }));
    if (section.list) parts.push(el("ul", {}, section.list.map((text) => el("li", { text: fill(text) }))));
  }
  article.replaceChildren(...parts);
}

await boot();
render();
document.addEventListener("classe:language", render);
