// A small element builder: dynamic text always goes through a catalogue key or textContent,
// never through HTML, so a name or a chat message cannot inject markup.
import { label } from "./i18n.js";

export function el(tag, options = {}, children = []) {
  const element = document.createElement(tag);
  const { i18n, vars, text, attrs, on, className } = options;
  if (className) element.className = className;
  if (i18n) label(element, i18n, vars);
  if (text !== undefined) element.textContent = text;
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== false && value !== null && value !== undefined) element.setAttribute(name, value === true ? "" : value);
  }
  for (const [event, handler] of Object.entries(on || {})) element.addEventListener(event, handler);
  for (const child of children) if (child) element.append(child);
  return element;
}

export function $(id) {
  return document.getElementById(id);
}

/** Ask before doing something that cannot be undone; resolves true if confirmed. */
export function confirmDialog(messageKey, confirmKey, vars) {
  return new Promise((resolve) => {
    const dialog = el("dialog", { className: "confirm", attrs: { "aria-labelledby": "confirm-text" } }, [
      el("p", { i18n: messageKey, vars, attrs: { id: "confirm-text" } }),
      el("div", { className: "actions" }, [
        el("button", { i18n: "common.cancel", attrs: { type: "button", value: "cancel" }, className: "secondary" }),
        el("button", { i18n: confirmKey, attrs: { type: "button", value: "ok" }, className: "danger" }),
      ]),
    ]);
    dialog.addEventListener("click", (event) => {
      if (event.target.tagName === "BUTTON") dialog.close(event.target.value);
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}
