// Before joining: see oneself, hear the microphone move, choose devices, choose what starts on.
import { el } from "../dom.js";
import { LevelMeter, list, open } from "./devices.js";

const SOURCES = ["camera", "microphone"];

export class PreJoin {
  constructor() {
    this.tracks = { camera: null, microphone: null };
    this.errors = { camera: null, microphone: null };
    this.opening = {};
    this.preview = document.getElementById("preview");
    this.meter = document.getElementById("meter");
    this.selects = { camera: document.getElementById("camera-select"), microphone: document.getElementById("microphone-select") };
    this.switches = { camera: document.getElementById("join-camera"), microphone: document.getElementById("join-microphone") };
    for (const source of SOURCES) {
      this.selects[source].addEventListener("change", () => this.use(source, this.selects[source].value));
      this.switches[source].addEventListener("change", () => this.showPreview());
    }
    navigator.mediaDevices?.addEventListener?.("devicechange", () => this.fillSelects());
  }

  async start() {
    await Promise.all(SOURCES.map((source) => this.use(source, localStorage.getItem(`classe.${source}`))));
  }

  use(source, deviceId) {
    // Remembered so that joining waits for a device still opening.
    this.opening[source] = (this.opening[source] || Promise.resolve()).then(() => this.open(source, deviceId));
    return this.opening[source];
  }

  async open(source, deviceId) {
    this.tracks[source]?.stop();
    const { track, error } = await open(source, deviceId);
    this.tracks[source] = track || null;
    this.errors[source] = error || null;
    if (track && deviceId) localStorage.setItem(`classe.${source}`, deviceId);
    this.switches[source].disabled = !track;
    if (!track) this.switches[source].checked = false;
    if (source === "microphone") this.startMeter();
    this.showPreview();
    this.showMessages();
    await this.fillSelects();
  }

  startMeter() {
    this.level?.stop();
    this.level = null;
    const bar = this.meter.firstElementChild;
    bar.style.width = "0";
    if (!this.tracks.microphone) return;
    this.level = new LevelMeter(this.tracks.microphone, (level) => {
      const percent = Math.round(level * 100);
      bar.style.width = `${percent}%`;
      this.meter.setAttribute("aria-valuenow", String(percent));
    });
  }

  showPreview() {
    const on = Boolean(this.tracks.camera) && this.switches.camera.checked;
    this.preview.srcObject = on ? new MediaStream([this.tracks.camera]) : null;
    this.preview.hidden = !on;
    document.getElementById("preview-off").hidden = on;
  }

  showMessages() {
    const messages = SOURCES.filter((s) => this.errors[s]).map((s) =>
      el("li", { className: "warning", i18n: `device.${s}_${this.errors[s]}` }),
    );
    document.getElementById("device-messages").replaceChildren(...messages);
  }

  async fillSelects() {
    const devices = await list();
    for (const source of SOURCES) {
      const select = this.selects[source];
      const current = this.tracks[source]?.getSettings().deviceId;
      const options = devices[source].map((device, index) =>
        el("option", {
          text: device.label || `${source} ${index + 1}`,
          attrs: { value: device.deviceId, selected: device.deviceId === current },
        }),
      );
      if (!options.length) options.push(el("option", { i18n: `prejoin.no_${source}`, attrs: { value: "" } }));
      select.replaceChildren(...options);
      select.disabled = !devices[source].length;
    }
  }

  /** What to join with: the tracks, and whether each starts on. The pre-join page lets go of them. */
  async choices() {
    await Promise.all(Object.values(this.opening));
    this.level?.stop();
    this.preview.srcObject = null;
    return {
      tracks: { ...this.tracks },
      enabled: { camera: this.switches.camera.checked, microphone: this.switches.microphone.checked },
    };
  }
}
