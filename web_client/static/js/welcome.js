// The welcome message the platform's team set in the console (plain text), on the home and sign-in pages.
import { api } from "./api.js";
import { $ } from "./dom.js";

export async function showWelcome() {
  const { message } = await api("GET", "/api/welcome");
  $("welcome").hidden = !message;
  $("welcome-text").textContent = message || "";
}
