// The server's HTTP API: JSON in and out, the CSRF token sent back on every change.
import { has, t } from "./i18n.js";

let csrf = null;
let current = null;

export class ApiError extends Error {
  constructor(status, code, message, retryAfter, details = {}) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.details = details; // the other fields of the answer: the invalid address, for one
  }
}

/** The signed-in account (or null) and the CSRF token; asked once per page. */
export function session() {
  current ??= fetch("/api/session", { credentials: "same-origin" })
    .then((response) => response.json())
    .then((data) => {
      csrf = data.csrf;
      return data;
    });
  return current;
}

export async function api(method, path, body) {
  const headers = {};
  if (method !== "GET") {
    await session();
    headers["X-CSRF-Token"] = csrf;
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, data.error || "server", data.message, response.headers.get("Retry-After"), data);
  }
  return data;
}

/**
 * What to tell the user about a refusal: our catalogue's words, filled with the answer's fields
 * (the address a roster refused, for one), else the server's words.
 */
export function errorText(error) {
  const key = `error.${error.code}`;
  const text = has(key) ? t(key, { seconds: error.retryAfter || 60, ...error.details }) : null;
  if (text && !/\{\w+\}/.test(text)) return text;
  return error.message || t("error.generic");
}
